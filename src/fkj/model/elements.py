"""Top-level elements of each R4 resource type that are in the summary (``isSummary``) or
required (``min >= 1``), as JSON keys (choice elements expanded, ``value[x]`` →
``valueQuantity`` …). Data: ``fkj/data/fhir/summary-elements.json`` (see MODEL-DATA.md)."""

from __future__ import annotations

import functools
import json
from importlib import resources


@functools.cache
def _data() -> dict[str, dict[str, list[str]]]:
    raw = resources.files("fkj.data").joinpath("fhir/summary-elements.json").read_bytes()
    return json.loads(raw)


def _keys(rtype: str, kind: str) -> list[str]:
    got = _data().get(rtype) or _data().get("Resource", {})
    names = got.get(kind, [])
    # a primitive's extensions travel in "_name"
    return [*names, *("_" + n for n in names)]


def summary_elements(rtype: str) -> list[str]:
    """JSON keys of the top-level summary elements of ``rtype``."""
    return _keys(rtype, "summary")


def required_top_level(rtype: str) -> list[str]:
    """JSON keys of the top-level elements ``rtype`` requires (min >= 1)."""
    return _keys(rtype, "required")
