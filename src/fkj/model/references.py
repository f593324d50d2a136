"""Finding and classifying the references inside a resource."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: relative reference ``Type/id`` or ``Type/id/_history/vid``
RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(?:/_history/([A-Za-z0-9\-\.]{1,64}))?$")


def iter_references(value: Any, path: str) -> Iterator[tuple[str, dict]]:
    """Yield ``(fhirpath, reference_object)`` for every Reference-shaped object.

    >>> [p for p, _ in iter_references({"subject": {"reference": "Patient/1"}}, "Observation")]
    ['Observation.subject']
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, dict):
            ref = v.get("reference")
            if isinstance(ref, str):
                yield p, v
            for k, x in v.items():
                if isinstance(x, (dict, list)) and k != "contained":
                    stack.append((x, f"{p}.{k}"))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                if isinstance(x, (dict, list)):
                    stack.append((x, f"{p}[{i}]"))


def split_relative(ref: str) -> tuple[str, str, str | None] | None:
    m = RELATIVE.match(ref)
    return (m.group(1), m.group(2), m.group(3)) if m else None
