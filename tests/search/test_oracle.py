"""The fast extractor selects exactly the element values fhirpathpy selects."""

from __future__ import annotations

import copy

import pytest

from fkj.search.extract import composite_values, values
from fkj.search.registry import default_registry

from search_oracle import canon, fp_component_values, fp_values
from search_resources import ALL

REG = default_registry()


def _cases():
    for res in ALL:
        for code, p in sorted(REG.for_type(res["resourceType"]).items()):
            if p.expression and p.type != "special":
                yield pytest.param(res, code, id=f"{res['resourceType']}/{res['id']}-{code}")


@pytest.mark.parametrize("resource,code", list(_cases()))
def test_values_match_fhirpathpy(resource, code):
    res = copy.deepcopy(resource)
    p = REG.get(res["resourceType"], code)
    fast = values(res, code)
    assert res == resource, "extraction must not modify the resource"
    assert canon(fast) == canon(fp_values(copy.deepcopy(resource), p))


@pytest.mark.parametrize("resource,code", [
    c for c in _cases() if REG.get(c.values[0]["resourceType"], c.values[1]).type == "composite"])
def test_composite_components_match_fhirpathpy(resource, code):
    p = REG.get(resource["resourceType"], code)
    for source, node, comps in composite_values(resource, code):
        for (url, expr), got in zip(p.components, comps):
            want = fp_component_values(resource, source, node, expr)
            assert canon(got) == canon(want), (source, expr)


def test_resources_cover_many_types():
    assert len({r["resourceType"] for r in ALL}) >= 25
    assert len(ALL) >= 30
