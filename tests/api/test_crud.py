"""read, vread, create, update, delete, versioning and Prefer, end to end over HTTP."""

from __future__ import annotations

import pytest

from tests.api.helpers import FHIR, create, patient


def test_create_assigns_id_version_and_location(client):
    r = client.post(f"{client.base}/Patient", json=patient(id="client-chosen"), headers=FHIR)
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"].endswith(f"{client.base}/Patient/{body['id']}/_history/1")


def test_read_returns_what_was_stored(client):
    p = create(client, patient("Hansen"))
    r = client.get(f"{client.base}/Patient/{p['id']}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.json() == p


def test_update_creates_new_version_and_vread_sees_both(client):
    p = create(client, patient("Berg"))
    p["active"] = True
    r = client.put(f"{client.base}/Patient/{p['id']}", json=p, headers=FHIR)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    v1 = client.get(f"{client.base}/Patient/{p['id']}/_history/1").json()
    v2 = client.get(f"{client.base}/Patient/{p['id']}/_history/2").json()
    assert "active" not in v1 and v2["active"] is True
    assert client.get(f"{client.base}/Patient/{p['id']}/_history/3").status_code == 404


def test_update_with_client_assigned_id_creates(client):
    r = client.put(f"{client.base}/Patient/my-id-1", json=patient(id="my-id-1"), headers=FHIR)
    assert r.status_code == 201
    assert client.get(f"{client.base}/Patient/my-id-1").json()["id"] == "my-id-1"


def test_stale_if_match_is_412_and_current_if_match_wins(client):
    p = create(client, patient())
    url = f"{client.base}/Patient/{p['id']}"
    ok = client.put(url, json=p, headers={**FHIR, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    stale = client.put(url, json=p, headers={**FHIR, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).json()["meta"]["versionId"] == "2"


def test_delete_then_read_is_410_and_history_keeps_versions(client):
    p = create(client, patient())
    url = f"{client.base}/Patient/{p['id']}"
    assert client.delete(url).status_code == 200
    assert client.get(url).status_code == 410
    assert client.get(f"{url}/_history/1").status_code == 200
    hist = client.get(f"{url}/_history").json()
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "POST"]
    # a new update brings it back as a new version
    r = client.put(url, json=p, headers=FHIR)
    assert r.status_code == 201 and r.json()["meta"]["versionId"] == "3"


def test_delete_unknown_is_404(client):
    assert client.delete(f"{client.base}/Patient/nope").status_code == 404


@pytest.mark.parametrize("prefer,expect_body", [
    ("return=minimal", None), ("return=representation", "Patient"),
    ("return=OperationOutcome", "OperationOutcome")])
def test_prefer_return(client, prefer, expect_body):
    r = client.post(f"{client.base}/Patient", json=patient(), headers={**FHIR, "Prefer": prefer})
    assert r.status_code == 201
    assert r.headers["Location"]
    if expect_body is None:
        assert r.content == b""
    else:
        assert r.json()["resourceType"] == expect_body


def test_json_patch(client):
    p = create(client, patient("Lie"))
    r = client.patch(f"{client.base}/Patient/{p['id']}",
                     json=[{"op": "replace", "path": "/name/0/family", "value": "Lien"}],
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["name"][0]["family"] == "Lien" and r.json()["meta"]["versionId"] == "2"
    bad = client.patch(f"{client.base}/Patient/{p['id']}",
                       json=[{"op": "replace", "path": "/name/0/family", "value": 123}],
                       headers={"Content-Type": "application/json-patch+json"})
    assert bad.status_code == 400
    assert client.get(f"{client.base}/Patient/{p['id']}").json()["meta"]["versionId"] == "2"


def test_if_none_match_gives_304(client):
    p = create(client, patient())
    r = client.get(f"{client.base}/Patient/{p['id']}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304
