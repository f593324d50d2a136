"""Synthetic-population generator (see :mod:`fkj.seed.generator`)."""

from fkj.seed.generator import HLR_STORY_PATIENT_INDEX, ROLE_SYSTEM, demo_people, generate  # noqa: F401
