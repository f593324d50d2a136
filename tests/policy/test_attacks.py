"""Attempts to reach blocked or unrelated data by other paths; emergency access; deceased
patients; citizens; system clients unchanged."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from tests.policy.conftest import (PSY, actor, citizen, ids, personnel, put, sperring,
                                   system)

REASON = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "akutt"}]}


def test_include_revinclude_chain_has(w):
    _, n = w
    b = n.get(f"{n.base}/Encounter", params={"_id": "enc", "_include": "Encounter:diagnosis"}).json()
    assert ids(b, "Condition") == set()  # PSY hidden from the nurse, c-other unrelated
    b = n.get(f"{n.base}/Patient", params={"_id": "mine", "_revinclude": "Condition:subject"}).json()
    assert ids(b, "Condition") == {"c-mine"}
    b = n.get(f"{n.base}/Encounter", params={"diagnosis:Condition.code": "hemmelig-psy"}).json()
    assert ids(b) == set()
    b = n.get(f"{n.base}/Patient", params={"_has:Condition:subject:code": "hemmelig-psy"}).json()
    assert ids(b) == set()
    b = n.get(f"{n.base}/Patient", params={"_has:Condition:subject:code": "code-other"}).json()
    assert ids(b) == set()
    b = n.get(f"{n.base}/Patient", params={"_has:Condition:subject:code": "code-mine"}).json()
    assert ids(b) == {"mine"}
    b = n.get(f"{n.base}/Condition", params={"_include": "*", "_revinclude": "*"}).json()
    assert ids(b) <= {"c-mine", "mine", "ct", "enc", "ns"}


def test_sort_summary_count_and_compartment(w):
    _, n = w
    b = n.get(f"{n.base}/Condition", params={"_sort": "-code", "_total": "accurate"}).json()
    assert ids(b) == {"c-mine"} and b["total"] == 1
    assert n.get(f"{n.base}/Condition", params={"_summary": "count"}).json()["total"] == 1
    assert n.get(f"{n.base}/Patient", params={"_summary": "count"}).json()["total"] == 1
    r = n.get(f"{n.base}/Patient/other/Condition")
    assert r.status_code == 200 and ids(r.json()) == set()
    assert ids(n.get(f"{n.base}/Patient/mine/Condition").json()) == {"c-mine"}
    r = n.get(f"{n.base}/Patient/other/$everything")  # unrelated: as if it did not exist
    assert r.status_code == 404 and "Famother" not in r.text


def test_history_of_a_resource_that_became_blocked(w, asgi_app, fkj_app):
    c, n = w
    assert n.get(f"{n.base}/Condition/c-mine/_history").status_code == 200
    put(c, sperring("sp-data", "mine", data=[{"meaning": "instance",
                                              "reference": {"reference": "Condition/c-mine"}}]))
    r = n.get(f"{n.base}/Condition/c-mine")
    assert r.status_code == 403 and "sperret" in r.text and "code-mine" not in r.text
    assert n.get(f"{n.base}/Condition/c-mine/_history").status_code in (403, 404)
    r = n.get(f"{n.base}/Condition/c-mine/_history/1")
    assert r.status_code == 403 and "code-mine" not in r.text
    b = n.get(f"{n.base}/Condition/_history").json()
    assert "c-mine" not in {e.get("resource", {}).get("id") for e in b.get("entry", [])}
    b = n.get(f"{n.base}/Condition", params={"patient": "mine"}).json()
    assert ids(b, "Condition") == set()


def test_blocked_notice(w, fkj_app, policy_tenant):
    from fkj.repository.repository import Repository
    from fkj.security.policy import blocked_notice, search_notice
    from fkj.types import Principal
    c, _ = w
    p = Principal(kind="practitioner", subject="9111", tenant=policy_tenant,
                  scopes=frozenset({"user/*.cruds"}), roles=frozenset({"sykepleier"}),
                  unit="Organization/hjem", fhir_user="Practitioner/ns", hpr_number="9111")
    assert not blocked_notice(Repository(fkj_app.services, p, policy_tenant), None, None)
    put(c, sperring("sp-cat", "mine", securityLabel=[PSY]))
    repo = Repository(fkj_app.services, p, policy_tenant)
    assert blocked_notice(repo, "Condition", {"mine"})
    assert not blocked_notice(repo, "Condition", {"other"})
    assert search_notice(repo, "Condition", [("patient", "Patient/mine")]) == \
        "noe informasjon er sperret av pasienten"


def test_transaction_bundle_reads(w):
    _, n = w
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Condition/c-other"}},
        {"request": {"method": "GET", "url": "Condition/c-psy"}},
        {"request": {"method": "GET", "url": "Condition?patient=other"}},
        {"request": {"method": "GET", "url": "Condition/c-mine"}}]}
    r = n.post(f"{n.base}", json=bundle)
    assert r.status_code == 200, r.text
    e = r.json()["entry"]
    assert e[0]["response"]["status"].startswith("404")  # unrelated: as if it did not exist
    assert e[1]["response"]["status"].startswith("403")  # related, sensitive: refused
    assert ids(e[2]["resource"]) == set()
    assert e[3]["response"]["status"].startswith("200")
    assert "code-other" not in r.text and "hemmelig-psy" not in r.text


def test_writes(w):
    _, n = w
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "puls"},
           "subject": {"reference": "Patient/mine"}}
    assert n.post(f"{n.base}/Observation", json=obs).status_code == 201
    other = dict(obs, subject={"reference": "Patient/other"})
    assert n.post(f"{n.base}/Observation", json=other).status_code == 403
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
          "subject": {"reference": "Patient/mine"}}
    assert n.post(f"{n.base}/ServiceRequest", json=sr).status_code == 403  # nurse: no vedtak
    assert n.delete(f"{n.base}/Condition/c-other").status_code == 404  # unrelated: unknown
    assert n.post(f"{n.base}/Consent", json=sperring("x", "mine")).status_code == 403


def test_emergency_access(w, asgi_app, fkj_app, policy_tenant, sys_client, db):
    c, n = w
    assert n.get(f"{n.base}/Condition/c-other").status_code == 404  # unrelated: unknown
    r = n.post(f"{n.base}/Patient/other/$akuttilgang",
               json={"resourceType": "Parameters", "parameter": [{"name": "reason",
                                                                  "valueString": " "}]})
    assert r.status_code == 400
    r = n.post(f"{n.base}/Patient/nobody/$akuttilgang", json=REASON)
    assert r.status_code == 404
    r = n.post(f"{n.base}/Patient/other/$akuttilgang", json=REASON)
    assert r.status_code == 200, r.text
    grant = {p["name"]: p for p in r.json()["parameter"]}
    assert grant["reason"]["valueString"] == "akutt"
    assert grant["patient"]["valueReference"]["reference"] == "Patient/other"
    assert n.get(f"{n.base}/Condition/c-other").status_code == 200
    assert ids(n.get(f"{n.base}/Condition", params={"patient": "other"}).json()) == {"c-other"}
    # a sperring is not lifted by emergency access
    put(c, sperring("sp-unit", "other", actor=[actor("Organization/hjem")]))
    assert n.get(f"{n.base}/Condition/c-other").status_code == 403
    assert n.get(f"{n.base}/Patient/other/$everything").status_code == 403
    # the municipality's follow-up list
    leder = personnel(asgi_app, fkj_app, policy_tenant, "ld", ["leder"], "hjem", "9222")
    for who in (leder, sys_client):
        r = who.get(f"{who.base}/$akuttilganger", params={"since": "2000-01-01"})
        assert r.status_code == 200, r.text
        rows = [{p["name"]: p for p in x["part"]} for x in r.json()["parameter"]]
        assert [x["agent"]["valueString"] for x in rows] == ["9111"]
        assert rows[0]["reason"]["valueString"] == "akutt"
    r = leder.get(f"{leder.base}/$akuttilganger", params={"until": "2001-01-01"})
    assert r.json().get("parameter", []) == []
    assert n.get(f"{n.base}/$akuttilganger").status_code == 403
    # expiry: move the grant into the past
    from fkj.security.policy.cache import bump
    from fkj.security.policy.tables import emergency_access
    from fkj.store.backend import scope
    with scope(db.engine, policy_tenant, write=True) as conn:
        conn.execute(update(emergency_access).where(emergency_access.c.tenant == policy_tenant)
                     .values(expires=1))
        # an edit behind the platform's back: tell the cached decisions (a grant that runs
        # out in time ends them by itself, through the context's valid_until)
        bump(conn, policy_tenant)
    assert n.get(f"{n.base}/Patient/other").status_code == 404


def test_emergency_sets_purpose(w, fkj_app, policy_tenant):
    from fkj.repository.repository import Repository
    from fkj.security.policy import access_purpose, emergency_grant
    from fkj.types import Principal
    _, n = w
    n.post(f"{n.base}/Patient/other/$akuttilgang", json=REASON)
    p = Principal(kind="practitioner", subject="9111", tenant=policy_tenant,
                  scopes=frozenset({"user/*.cruds"}), roles=frozenset({"sykepleier"}),
                  unit="Organization/hjem", fhir_user="Practitioner/ns", hpr_number="9111")
    repo = Repository(fkj_app.services, p, policy_tenant)
    assert emergency_grant(repo, "other")["reason"] == "akutt"
    assert emergency_grant(repo, "mine") is None
    repo.read("Condition", "c-other")
    assert repo.purpose == "BTG" and repo.btg_patients == {"other"}
    assert access_purpose(repo, ["mine"]) == "TREAT"
    assert access_purpose(repo, ["other"]) == "BTG"


@pytest.mark.parametrize("died,status", [("2020-05-01", 409), ("2001-01-01", 200)],
                         ids=["recent-death", "over-ten-years"])
def test_deceased_delete(sys_client, asgi_app, fkj_app, policy_tenant, died, status):
    c = sys_client
    put(c, {"resourceType": "Patient", "id": "dead", "deceasedDateTime": died})
    put(c, {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/dead"}})
    r = c.delete(f"{c.base}/Observation/o")
    assert r.status_code == status, r.text
    if status == 409:
        assert "10 år" in r.text or "ti år" in r.text or "2030" in r.text
    r = c.delete(f"{c.base}/Patient/dead")
    assert r.status_code == status, r.text
    put(c, {"resourceType": "Patient", "id": "alive"})
    assert c.delete(f"{c.base}/Patient/alive").status_code == 200


def test_citizen(w, asgi_app, fkj_app, policy_tenant):
    c, _ = w
    me = citizen(asgi_app, fkj_app, policy_tenant, "01817012309")
    assert me.get(f"{me.base}/Patient/mine").status_code == 200
    assert me.get(f"{me.base}/Condition/c-psy").status_code == 200  # own data, even PSY
    assert me.get(f"{me.base}/Patient/other").status_code == 404
    assert me.get(f"{me.base}/Condition/c-other").status_code == 404
    assert ids(me.get(f"{me.base}/Condition").json()) == {"c-mine", "c-psy"}
    assert ids(me.get(f"{me.base}/Patient").json()) == {"mine"}
    r = me.post(f"{me.base}/Consent", json=sperring("s1", "mine", securityLabel=[PSY]))
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert me.post(f"{me.base}/Consent", json=sperring("s2", "other")).status_code == 403
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/mine"}}
    assert me.post(f"{me.base}/Observation", json=obs).status_code == 403
    body = me.get(f"{me.base}/Consent/{cid}").json()
    assert me.put(f"{me.base}/Consent/{cid}", json=body).status_code == 403  # still active
    body["status"] = "inactive"
    assert me.put(f"{me.base}/Consent/{cid}", json=body).status_code == 200
    r = me.post(f"{me.base}/Consent", json=sperring("s3", "mine"))
    assert me.delete(f"{me.base}/Consent/{r.json()['id']}").status_code == 200
    assert me.delete(f"{me.base}/Condition/c-mine").status_code == 403


def test_system_client_unchanged(w):
    c, _ = w
    put(c, sperring("sp-all", "mine"))
    b = c.get(f"{c.base}/Condition", params={"_total": "accurate"}).json()
    assert ids(b) == {"c-mine", "c-other", "c-psy"} and b["total"] == 3
    assert c.get(f"{c.base}/Consent/sp-all").status_code == 200


def test_register_is_idempotent(fkj_app, policy_tenant):
    from fkj.security.policy import hooks as H
    from fkj.security.policy import register_policy
    register_policy(fkj_app, tenants={policy_tenant})
    register_policy(fkj_app, tenants={policy_tenant})
    assert fkj_app.services.hooks.authorize.count(H.authorize) == 1
    assert fkj_app.services.hooks.search_filters.count(H.search_filter) == 1
