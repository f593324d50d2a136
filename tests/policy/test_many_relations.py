"""A unit with many patients: the care relation goes into the search SQL as a set loaded once
per connection (SQLite, fkj.store.idsets) or one bound array (PostgreSQL) — the same answer
as for a short list."""

from __future__ import annotations

from tests.policy.conftest import ids, personnel, put


def test_search_and_read_with_many_related_patients(asgi_app, fkj_app, policy_tenant,
                                                    sys_client):
    c = sys_client
    put(c, {"resourceType": "Practitioner", "id": "mange"})
    related = [f"rel-{i:02d}" for i in range(30)]
    unrelated = [f"unrel-{i:02d}" for i in range(5)]
    for pid in related + unrelated:
        put(c, {"resourceType": "Patient", "id": pid})
        put(c, {"resourceType": "Observation", "id": f"o-{pid}", "status": "final",
                "code": {"text": "puls"}, "subject": {"reference": f"Patient/{pid}"}})
    for pid in related:
        put(c, {"resourceType": "CareTeam", "id": f"ct-{pid}", "status": "active",
                "subject": {"reference": f"Patient/{pid}"},
                "participant": [{"member": {"reference": "Practitioner/mange"}}]})
    n = personnel(asgi_app, fkj_app, policy_tenant, "mange", ["sykepleier"], "hjem", "9222")
    r = n.get(f"{n.base}/Observation", params={"_count": "100", "_total": "accurate"})
    assert r.status_code == 200, r.text
    assert ids(r.json(), "Observation") == {f"o-{p}" for p in related}
    assert r.json()["total"] == len(related)
    assert ids(n.get(f"{n.base}/Patient", params={"_count": "100"}).json()) == set(related)
    assert n.get(f"{n.base}/Observation/o-{related[7]}").status_code == 200
    assert n.get(f"{n.base}/Observation/o-{unrelated[0]}").status_code == 403
    # a care relation that ends is seen at once (the cached decision is invalidated)
    put(c, {"resourceType": "CareTeam", "id": f"ct-{related[7]}", "status": "inactive",
            "subject": {"reference": f"Patient/{related[7]}"},
            "participant": [{"member": {"reference": "Practitioner/mange"}}]})
    assert n.get(f"{n.base}/Observation/o-{related[7]}").status_code == 403
    r = n.get(f"{n.base}/Observation", params={"_count": "100"})
    assert f"o-{related[7]}" not in ids(r.json())


def test_a_care_relation_ends_when_its_period_ends(asgi_app, fkj_app, policy_tenant,
                                                   sys_client):
    """The cached decision expires at the end of the period it was built from."""
    import time
    from datetime import UTC, datetime, timedelta

    c = sys_client
    put(c, {"resourceType": "Practitioner", "id": "kort"})
    put(c, {"resourceType": "Patient", "id": "kort-p"})
    end = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    put(c, {"resourceType": "CareTeam", "id": "ct-kort", "status": "active",
            "subject": {"reference": "Patient/kort-p"}, "period": {"end": end},
            "participant": [{"member": {"reference": "Practitioner/kort"}}]})
    n = personnel(asgi_app, fkj_app, policy_tenant, "kort", ["lege"], "hjem", "9223")
    assert n.get(f"{n.base}/Patient/kort-p").status_code == 200
    time.sleep(3.2)
    assert n.get(f"{n.base}/Patient/kort-p").status_code == 403
