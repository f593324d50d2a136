"""``_summary`` and ``_elements``: return only part of each resource, marked SUBSETTED."""

from __future__ import annotations

import functools

import orjson

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "Resource encoded in summary mode"}
ALWAYS = ("resourceType", "id", "meta")


@functools.cache
def summary_elements(rtype: str) -> frozenset[str]:
    """Top-level elements marked isSummary in the R4 definition of ``rtype``."""
    from fkj.model.elements import summary_elements as _summary
    return frozenset(_summary(rtype))


def shape(content: str, summary: str | None, elements: list[str] | None) -> str:
    if not summary and not elements:
        return content
    res = orjson.loads(content)
    rtype = res.get("resourceType", "")
    if summary == "text":
        keep = set(ALWAYS) | {"text"} | _mandatory(rtype)
    elif summary == "data":
        keep = set(res) - {"text"}
    elif summary == "true":
        keep = set(ALWAYS) | set(summary_elements(rtype))
    else:
        keep = set(ALWAYS) | set(elements or [])
    out = {k: v for k, v in res.items() if k in keep}
    meta = dict(out.get("meta") or {})
    meta["tag"] = list(meta.get("tag", [])) + [SUBSETTED]
    out["meta"] = meta
    return orjson.dumps(out).decode()


def _mandatory(rtype: str) -> set[str]:
    from fkj.model.elements import required_top_level
    return set(required_top_level(rtype))
