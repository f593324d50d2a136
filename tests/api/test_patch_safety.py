"""PATCH (issue 30, item 11): a failing patch never quotes the stored resource (a caller may
hold update but not read rights), and concurrent patches without If-Match are each applied
exactly once — the server serialises them instead of answering 412."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.testclient import TestClient

from tests.api.builders import JSON_PATCH, fnr
from tests.conftest import BASE_URL, auth_headers

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
SECRET_PHONE = "90011223"


@pytest.fixture
def stored(client):
    """A Patient holding a name, a fødselsnummer and a phone number."""
    number = fnr()
    r = client.post(f"{client.base}/Patient", json={
        "resourceType": "Patient", "name": [{"family": "Hemmeligsen", "given": ["Hilde"]}],
        "identifier": [{"system": FNR, "value": number}],
        "telecom": [{"system": "phone", "value": SECRET_PHONE}]})
    assert r.status_code == 201, r.text
    return r.json(), ("Hemmeligsen", "Hilde", number, SECRET_PHONE)


def update_only(asgi_app, fkj_app, tenant) -> TestClient:
    c = TestClient(asgi_app, base_url=BASE_URL)
    c.headers.update(auth_headers(fkj_app, tenant, scope="system/Patient.u"))
    c.base = f"/fhir/{tenant}"  # type: ignore[attr-defined]
    return c


FAILING = [
    [{"op": "replace", "path": "/nope/x", "value": 1}],             # path not there
    [{"op": "test", "path": "/name/0/family", "value": "Olsen"}],    # test fails
    [{"op": "test", "path": "/identifier", "value": 1}],
    [{"op": "remove", "path": "/telecom/5"}],
    [{"op": "copy", "from": "/identifier/0", "path": "/name/0/family/x"}],
    [{"op": "move", "from": "/zz", "path": "/a"}],
    [{"op": "replace", "path": "/name/0/family/0", "value": 1}],
    [{"op": "add", "path": "/telecom/0/system", "value": "not-a-system"}],  # invalid result
    [{"op": "add", "path": "/generalPractitioner", "value": [{"reference": "Nope/x y"}]}],
]


@pytest.mark.parametrize("ops", FAILING, ids=range(len(FAILING)))
def test_a_failing_patch_does_not_quote_the_stored_resource(asgi_app, fkj_app, tenant, stored,
                                                            ops):
    body, secrets = stored
    c = update_only(asgi_app, fkj_app, tenant)
    assert c.get(f"{c.base}/Patient/{body['id']}").status_code == 403  # no read scope
    r = c.patch(f"{c.base}/Patient/{body['id']}", json=ops, headers=JSON_PATCH)
    assert r.status_code in (400, 422), r.text
    issue = r.json()["issue"][0]
    assert issue["diagnostics"] and issue.get("expression"), r.text
    for s in secrets:
        assert s not in r.text, (s, r.text)


def test_the_patched_resource_is_not_shown_to_a_caller_who_may_not_read_it(
        asgi_app, fkj_app, tenant, stored):
    body, secrets = stored
    c = update_only(asgi_app, fkj_app, tenant)
    r = c.patch(f"{c.base}/Patient/{body['id']}", headers=JSON_PATCH,
                json=[{"op": "add", "path": "/gender", "value": "female"}])
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and r.headers["ETag"] == 'W/"2"'
    for s in secrets:
        assert s not in r.text


def test_a_reader_still_gets_the_details(client, stored):
    body, _ = stored
    r = client.patch(f"{client.base}/Patient/{body['id']}", headers=JSON_PATCH,
                     json=[{"op": "test", "path": "/name/0/family", "value": "Olsen"}])
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Patient.name[0].family"]
    r = client.patch(f"{client.base}/Patient/{body['id']}", headers=JSON_PATCH,
                     json=[{"op": "add", "path": "/gender", "value": "female"}])
    assert r.status_code == 200 and r.json()["gender"] == "female"


# ------------------------------------------------------------------------------ concurrency
THREADS, PER_THREAD = 8, 4


def _client(live_server, fkj_app, tenant):
    return httpx.Client(base_url=f"{live_server.url}/fhir/{tenant}",
                        headers={"Content-Type": "application/fhir+json",
                                 **auth_headers(fkj_app, tenant)}, timeout=60)


def test_concurrent_patches_without_if_match_are_each_applied_once(live_server, fkj_app,
                                                                   tenant):
    with _client(live_server, fkj_app, tenant) as c:
        p = c.post("/Patient", json={"resourceType": "Patient", "identifier": [
            {"system": "urn:test:patch", "value": "first"}]}).json()
    url = f"/Patient/{p['id']}"

    def worker(i):
        codes = []
        with _client(live_server, fkj_app, tenant) as c:
            for n in range(PER_THREAD):
                ops = [{"op": "add", "path": "/identifier/-",
                        "value": {"system": "urn:test:patch", "value": f"t{i}-{n}"}}]
                codes.append(c.patch(url, json=ops, headers=JSON_PATCH).status_code)
        return codes

    with ThreadPoolExecutor(THREADS) as pool:
        codes = [code for got in pool.map(worker, range(THREADS)) for code in got]
    assert codes == [200] * (THREADS * PER_THREAD), codes
    with _client(live_server, fkj_app, tenant) as c:
        final = c.get(url).json()
    got = sorted(i["value"] for i in final["identifier"])
    assert got == sorted(["first"] + [f"t{i}-{n}" for i in range(THREADS)
                                      for n in range(PER_THREAD)])
    assert final["meta"]["versionId"] == str(1 + THREADS * PER_THREAD)


def test_concurrent_patches_with_if_match_conflict_for_real(live_server, fkj_app, tenant):
    with _client(live_server, fkj_app, tenant) as c:
        p = c.post("/Patient", json={"resourceType": "Patient", "identifier": [
            {"system": "urn:test:patch", "value": "first"}]}).json()
    url = f"/Patient/{p['id']}"

    def attempt(i):
        with _client(live_server, fkj_app, tenant) as c:
            ops = [{"op": "add", "path": "/identifier/-",
                    "value": {"system": "urn:test:patch", "value": f"t{i}"}}]
            return c.patch(url, json=ops, headers={**JSON_PATCH, "If-Match": 'W/"1"'}
                           ).status_code

    with ThreadPoolExecutor(THREADS) as pool:
        codes = list(pool.map(attempt, range(THREADS)))
    assert sorted(codes) == [200] + [412] * (THREADS - 1), codes
