"""No existence oracle (issue 30, item 11): personnel without a care relation to a patient get
the same answer for the patient's resources as for resources that do not exist — status,
OperationOutcome and headers — on every instance-level path: read, vread, history, PATCH,
PUT, DELETE, instance operations and Bundle entries. What the policy is *meant* to tell a
clinician who has a relation (a sperring hides something) stays a 403."""

from __future__ import annotations

import pytest

from tests.policy.conftest import put, sperring

PATCH = {"Content-Type": "application/json-patch+json"}
HIDDEN, ABSENT = "c-other", "c-absent"  # c-other: of a patient outside the care relation
SKIP_HEADERS = {"date", "content-length", "x-request-id", "server"}


def answer(r, rid: str) -> tuple:
    """What the caller learns: status, body (with the id asked for masked) and headers."""
    headers = {k: v for k, v in r.headers.items() if k.lower() not in SKIP_HEADERS}
    return r.status_code, r.text.replace(rid, "<id>"), headers


def same(call) -> tuple:
    hidden, absent = call(HIDDEN), call(ABSENT)
    assert answer(hidden, HIDDEN) == answer(absent, ABSENT)
    return answer(hidden, HIDDEN)


def test_read_vread_history(w):
    _, n = w
    base = f"{n.base}/Condition"
    status, body, _ = same(lambda i: n.get(f"{base}/{i}"))
    assert status == 404 and "tjenstlig behov" in body and "$akuttilgang" in body
    assert same(lambda i: n.get(f"{base}/{i}/_history/1"))[0] == 404
    assert same(lambda i: n.get(f"{base}/{i}/_history"))[0] == 404
    assert same(lambda i: n.get(f"{base}/{i}/_history",
                                params={"_since": "2100-01-01T00:00:00Z"}))[0] == 404
    assert same(lambda i: n.head(f"{base}/{i}"))[0] == 404
    assert same(lambda i: n.get(f"{base}/{i}", headers={"If-None-Match": 'W/"1"'}))[0] == 404


def test_patch_put_delete(w):
    _, n = w
    base = f"{n.base}/Condition"
    ops = [{"op": "replace", "path": "/code/text", "value": "x"}]
    assert same(lambda i: n.patch(f"{base}/{i}", json=ops, headers=PATCH))[0] == 404
    assert same(lambda i: n.patch(f"{base}/{i}", json=ops,
                                  headers={**PATCH, "If-Match": 'W/"7"'}))[0] == 404
    # a failing patch is not looked at before the resource is
    bad = [{"op": "test", "path": "/code/coding/0/code", "value": "code-other"}]
    assert same(lambda i: n.patch(f"{base}/{i}", json=bad, headers=PATCH))[0] == 404
    assert same(lambda i: n.delete(f"{base}/{i}"))[0] == 404
    assert same(lambda i: n.delete(f"{base}/{i}", headers={"If-Match": 'W/"7"'}))[0] == 404

    def put_(i, **h):
        body = {"resourceType": "Condition", "id": i, "subject": {"reference": "Patient/mine"}}
        return n.put(f"{base}/{i}", json=body, headers=h)
    # with If-Match: "does not exist" for both (a version conflict would confirm it exists)
    assert same(lambda i: put_(i, **{"If-Match": 'W/"7"'}))[0] == 412
    # without: update-as-create makes a new resource of an id nobody holds; an id held by
    # a resource the caller may not know of is refused as unknown (docs/policy.md)
    r = put_(HIDDEN)
    assert r.status_code == 404 and "code-other" not in r.text


def test_instance_operations(w):
    _, n = w
    for op in ("$everything", "$oversikt"):
        hidden = n.get(f"{n.base}/Patient/other/{op}")
        absent = n.get(f"{n.base}/Patient/absent/{op}")
        assert hidden.status_code == absent.status_code == 404, (op, hidden.text)
        assert answer(hidden, "other") == answer(absent, "absent")
        assert "Famother" not in hidden.text


def test_bundle_entries(w):
    _, n = w

    def batch(i):
        return n.post(n.base, json={"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"Condition/{i}"}},
            {"request": {"method": "GET", "url": f"Condition/{i}/_history/1"}},
            {"request": {"method": "DELETE", "url": f"Condition/{i}"}},
            {"request": {"method": "PATCH", "url": f"Condition/{i}"}, "resource": {
                "resourceType": "Binary", "contentType": "application/json-patch+json",
                "data": "W3sib3AiOiAicmVtb3ZlIiwgInBhdGgiOiAiL2NvZGUifV0="}}]})
    status, body, _ = same(batch)
    assert status == 200 and body.count('"status":"404"') == 4, body
    tx = same(lambda i: n.post(n.base, json={"resourceType": "Bundle", "type": "transaction",
                                              "entry": [{"request": {"method": "DELETE",
                                                                     "url": f"Condition/{i}"}}]}))
    assert tx[0] == 404


def test_a_related_clinician_still_learns_that_something_is_blocked(w):
    c, n = w
    put(c, sperring("sp-mine", "mine", data=[{"meaning": "instance",
                                              "reference": {"reference": "Condition/c-mine"}}]))
    r = n.get(f"{n.base}/Condition/c-mine")
    assert r.status_code == 403 and "sperret" in r.text and "code-mine" not in r.text
    assert n.get(f"{n.base}/Condition/c-psy").status_code == 403  # sensitive, related


@pytest.mark.parametrize("path", ["Condition/c-other", "Patient/other"])
def test_citizens_too(w, asgi_app, fkj_app, policy_tenant, path):
    from tests.policy.conftest import citizen
    me = citizen(asgi_app, fkj_app, policy_tenant, "01817012309")
    hidden = me.get(f"{me.base}/{path}")
    absent = me.get(f"{me.base}/{path.split('/')[0]}/absent")
    assert hidden.status_code == absent.status_code == 404
    assert answer(hidden, path.split("/")[1]) == answer(absent, "absent")


def test_the_blocked_notice_is_given_only_about_related_patients(w, fkj_app, policy_tenant):
    """The notice that blocked information exists (``$oversikt``, ``blocked_notice``) is for
    a clinician with a relation to the patient; about a patient outside it nothing is said —
    the overview is "not known", as for a patient that does not exist."""
    from fkj.repository.repository import Repository
    from fkj.security.policy import blocked_notice
    from fkj.types import Principal
    c, n = w
    for pid in ("mine", "other"):
        put(c, sperring(f"sp-kl-{pid}", pid, **{"class": [{"code": "Condition"}]}))
    notice = "noe informasjon er sperret av pasienten"
    assert notice in n.get(f"{n.base}/Patient/mine/$oversikt").text
    hidden = n.get(f"{n.base}/Patient/other/$oversikt")
    absent = n.get(f"{n.base}/Patient/absent/$oversikt")
    assert answer(hidden, "other") == answer(absent, "absent") and notice not in hidden.text
    p = Principal(kind="practitioner", subject="9111", tenant=policy_tenant,
                  scopes=frozenset({"user/*.cruds"}), roles=frozenset({"sykepleier"}),
                  unit="Organization/hjem", fhir_user="Practitioner/ns", hpr_number="9111")
    repo = Repository(fkj_app.services, p, policy_tenant)
    assert blocked_notice(repo, "Condition", {"mine"})
    assert not blocked_notice(repo, "Condition", {"other"})
    assert not blocked_notice(repo, None, {"other"})
