"""history at instance, type and tenant level: order, deleted versions, paging, _since and
parameter errors."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.api.builders import expressions_of, follow, history, outcome, pasient
from tests.api.helpers import FHIR, create


def _put(client, resource: dict, **changes) -> dict:
    body = {**resource, **changes}
    body.pop("meta", None)
    r = client.put(f"{client.base}/{resource['resourceType']}/{resource['id']}", json=body,
                   headers=FHIR)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _observation(patient_id: str) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}


def _version(entry: dict) -> int:
    return int(entry["response"]["etag"].removeprefix('W/"').rstrip('"'))


def _instant(entry: dict) -> datetime:
    return datetime.fromisoformat(entry["response"]["lastModified"])


def test_instance_history_newest_first_with_deletion(client):
    p = create(client, pasient("Historikk"))
    _put(client, p, active=True)
    _put(client, p, active=False)
    assert client.delete(f"{client.base}/Patient/{p['id']}").status_code == 200
    h = history(client, f"Patient/{p['id']}")
    assert h["total"] == 4
    entries = h["entry"]
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "PUT", "POST"]
    assert [_version(e) for e in entries] == [4, 3, 2, 1]
    assert "resource" not in entries[0]
    assert entries[0]["request"]["url"] == f"Patient/{p['id']}"
    for e in entries[1:]:
        assert e["resource"]["id"] == p["id"]
        assert e["resource"]["meta"]["versionId"] == str(_version(e))
    assert entries[1]["resource"]["active"] is False
    assert entries[2]["resource"]["active"] is True
    assert "active" not in entries[3]["resource"]
    times = [_instant(e) for e in entries]
    assert times == sorted(times, reverse=True)


def test_type_history_holds_only_that_type(client):
    a = create(client, pasient("A"))
    b = create(client, pasient("B"))
    obs = create(client, _observation(a["id"]))
    _put(client, b, active=True)
    h = history(client, "Patient")
    assert h["total"] == 3
    assert [(e["resource"]["id"], _version(e)) for e in h["entry"]] == [
        (b["id"], 2), (b["id"], 1), (a["id"], 1)]
    assert all(e["resource"]["resourceType"] == "Patient" for e in h["entry"])
    oh = history(client, "Observation")
    assert oh["total"] == 1 and oh["entry"][0]["resource"]["id"] == obs["id"]


def test_tenant_history_holds_all_types_newest_first(client):
    a = create(client, pasient("A"))
    obs = create(client, _observation(a["id"]))
    _put(client, a, active=True)
    assert client.delete(f"{client.base}/Observation/{obs['id']}").status_code == 200
    h = history(client)
    assert h["total"] == 4
    got = [(e["request"]["method"], e["fullUrl"].rsplit("/", 2)[-2], _version(e))
           for e in h["entry"]]
    assert got == [("DELETE", "Observation", 2), ("PUT", "Patient", 2),
                   ("POST", "Observation", 1), ("POST", "Patient", 1)]
    assert "resource" not in h["entry"][0]
    assert h["entry"][0]["fullUrl"].endswith(f"/Observation/{obs['id']}")


def test_instance_history_paging_visits_every_version_once(client):
    p = create(client, pasient("Side"))
    for i in range(22):
        p = _put(client, p, birthDate=f"19{50 + i}-01-01")
    assert p["meta"]["versionId"] == "23"
    first = history(client, f"Patient/{p['id']}", {"_count": "5"})
    assert first["total"] == 23
    pages = follow(client, first)
    assert [len(pg.get("entry", [])) for pg in pages] == [5, 5, 5, 5, 3]
    versions = [_version(e) for pg in pages for e in pg["entry"]]
    assert versions == list(range(23, 0, -1))


def test_tenant_history_paging_visits_every_version_once(client):
    made = []
    for i in range(8):
        p = create(client, pasient(f"P{i}"))
        made.append(("Patient", p["id"], 1))
        o = create(client, _observation(p["id"]))
        made.append(("Observation", o["id"], 1))
    for _, rid, _v in made[:7:2]:
        _put(client, {"resourceType": "Patient", "id": rid, "name": [{"family": "Ny"}]})
        made.append(("Patient", rid, 2))
    assert len(made) == 20
    pages = follow(client, history(client, "", {"_count": "3"}))
    seen = [(e["fullUrl"].rsplit("/", 2)[-2], e["fullUrl"].rsplit("/", 1)[-1], _version(e))
            for pg in pages for e in pg.get("entry", [])]
    assert len(seen) == len(set(seen)) == 20
    assert set(seen) == set(made)
    assert len(pages) == 7
    times = [_instant(e) for pg in pages for e in pg["entry"]]
    assert times == sorted(times, reverse=True)


def test_type_history_paging_with_since_keeps_the_filter(client):
    old = create(client, pasient("Gammel"))
    time.sleep(0.02)
    cut = datetime.now(UTC)
    time.sleep(0.02)
    new = [create(client, pasient(f"Ny{i}")) for i in range(7)]
    first = history(client, "Patient", {"_count": "2", "_since": cut.isoformat()})
    assert first["total"] == 7
    pages = follow(client, first)
    ids = [e["resource"]["id"] for pg in pages for e in pg.get("entry", [])]
    assert ids == [p["id"] for p in reversed(new)]
    assert old["id"] not in ids


@pytest.mark.parametrize("level", ["instance", "type", "tenant"])
def test_since_filters_versions(client, level):
    p = create(client, pasient("Før"))
    time.sleep(0.02)
    v1_time = p["meta"]["lastUpdated"]
    cut = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    time.sleep(0.02)
    p2 = _put(client, p, active=True)
    p3 = _put(client, p, active=False)
    assert v1_time < cut < p2["meta"]["lastUpdated"]
    path = {"instance": f"Patient/{p['id']}", "type": "Patient", "tenant": ""}[level]
    h = history(client, path, {"_since": cut})
    assert h["total"] == 2
    assert [_version(e) for e in h["entry"]] == [3, 2]
    assert h["entry"][0]["resource"] == p3
    everything = history(client, path, {"_since": "2000-01-01T00:00:00Z"})
    assert everything["total"] == 3
    future = history(client, path, {"_since": "2999-01-01T00:00:00Z"})
    assert future["total"] == 0 and not future.get("entry")


def test_since_is_inclusive(client):
    """R4: _since includes versions created *at or after* the instant."""
    p = create(client, pasient("Grense"))
    time.sleep(0.02)
    p2 = _put(client, p, active=True)
    h = history(client, f"Patient/{p['id']}", {"_since": p2["meta"]["lastUpdated"]})
    assert [_version(e) for e in h["entry"]] == [2]


def test_count_zero_gives_total_only(client):
    p = create(client, pasient("Null"))
    _put(client, p, active=True)
    r = client.get(f"{client.base}/Patient/{p['id']}/_history", params={"_count": "0"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 2 and not r.json().get("entry")


def test_history_of_unknown_resource_is_404(client):
    create(client, pasient("Finnes"))
    r = client.get(f"{client.base}/Patient/finnes-ikke/_history")
    assert r.status_code == 404, r.text
    outcome(r)


def test_history_of_unknown_type_is_404(client):
    r = client.get(f"{client.base}/Pasient/_history")
    assert r.status_code == 404, r.text
    outcome(r)


def test_history_of_deleted_resource_is_still_served(client):
    p = create(client, pasient("Borte"))
    assert client.delete(f"{client.base}/Patient/{p['id']}").status_code == 200
    h = history(client, f"Patient/{p['id']}")
    assert h["total"] == 2 and h["entry"][1]["resource"] == p


@pytest.mark.parametrize("level", ["instance", "type", "tenant"])
@pytest.mark.parametrize("param,value", [
    ("_count", "abc"), ("_count", "-1"), ("_count", "2.5"),
    ("_since", "i-går"), ("_since", "2023-13-45"), ("_since", "2023-02-30T10:00:00Z"),
], ids=["count-text", "count-negative", "count-decimal", "since-text", "since-bad-month",
        "since-bad-day"])
def test_invalid_history_parameters_are_400(client, level, param, value):
    p = create(client, pasient("Param"))
    path = {"instance": f"Patient/{p['id']}", "type": "Patient", "tenant": ""}[level]
    suffix = f"{path}/_history" if path else "_history"
    r = client.get(f"{client.base}/{suffix}", params={param: value})
    assert r.status_code == 400, r.text
    assert expressions_of(outcome(r)) == [param]
