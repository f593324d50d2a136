"""Oracle helpers: evaluate search-parameter expressions with fhirpathpy for comparison."""

from __future__ import annotations

import re
from decimal import Decimal

import fhirpathpy
import orjson
from fhirpathpy.models import models

from fkj.search import _compile as C
from fkj.search.registry import SearchParam

MODEL = models["r4"]


def _plain(v):
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return str(v)


def canon(values) -> set:
    return {orjson.dumps(_plain(v), option=orjson.OPT_SORT_KEYS) for v in values}


def fp_values(resource: dict, param: SearchParam) -> list:
    rtype = resource["resourceType"]
    parts = [p for p in C.split_top(param.expression)
             if C.part_base(p) in (rtype, "Resource", "DomainResource")]
    if not parts:
        return []
    expr = C.rewrite_for_fhirpathpy(" | ".join(parts), rtype)
    return C.fhirpath_compiled(expr)(resource)


def fp_component_values(resource: dict, context_source: str, node, expr: str) -> list:
    base = C.context_of(context_source, resource["resourceType"]) or context_source
    base = re.sub(r"^(?:DomainResource|Resource)\b", resource["resourceType"], base)
    return fhirpathpy.evaluate(
        node, {"base": base, "expression": C.rewrite_for_fhirpathpy(expr)},
        {"resource": resource}, MODEL)
