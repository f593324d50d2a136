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
    assert n.get(f"{n.base}/Observation/o-{unrelated[0]}").status_code == 404  # unrelated
    # a care relation that ends is seen at once (the cached decision is invalidated)
    put(c, {"resourceType": "CareTeam", "id": f"ct-{related[7]}", "status": "inactive",
            "subject": {"reference": f"Patient/{related[7]}"},
            "participant": [{"member": {"reference": "Practitioner/mange"}}]})
    assert n.get(f"{n.base}/Observation/o-{related[7]}").status_code == 404
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
    assert n.get(f"{n.base}/Patient/kort-p").status_code == 404


def test_callers_with_the_same_kind_of_condition_each_get_their_own_answer(
        asgi_app, fkj_app, policy_tenant, sys_client):
    """The policy condition's statement-cache key is computed once per caller
    (fkj.store.memoized): two nurses whose conditions have the same shape share one compiled
    statement, and each search still runs with its own caller's care relation."""
    from fkj.security.policy.decision import context, sql_condition
    from fkj.search.engine import MAIN
    from fkj.repository.repository import Repository
    from fkj.store.memoized import MemoizedCondition

    c = sys_client
    teams = {"tvilling-a": [f"ta-{i:02d}" for i in range(12)],
             "tvilling-b": [f"tb-{i:02d}" for i in range(12)]}
    for who, patients in teams.items():
        put(c, {"resourceType": "Practitioner", "id": who})
        for pid in patients:
            put(c, {"resourceType": "Patient", "id": pid})
            put(c, {"resourceType": "Observation", "id": f"o-{pid}", "status": "final",
                    "code": {"text": "puls"}, "subject": {"reference": f"Patient/{pid}"}})
            put(c, {"resourceType": "CareTeam", "id": f"ct-{pid}", "status": "active",
                    "subject": {"reference": f"Patient/{pid}"},
                    "participant": [{"member": {"reference": f"Practitioner/{who}"}}]})
    a = personnel(asgi_app, fkj_app, policy_tenant, "tvilling-a", ["sykepleier"], "hjem", "9231")
    b = personnel(asgi_app, fkj_app, policy_tenant, "tvilling-b", ["sykepleier"], "hjem", "9232")
    for _ in range(3):  # alternating: the second caller's statement is found in the cache
        for n, who in ((a, "tvilling-a"), (b, "tvilling-b")):
            r = n.get(f"{n.base}/Observation", params={"_count": "100"})
            assert r.status_code == 200, r.text
            assert ids(r.json(), "Observation") == {f"o-{p}" for p in teams[who]}
            one = teams[who][3]
            r = n.get(f"{n.base}/Observation", params={"subject": f"Patient/{one}"})
            assert ids(r.json(), "Observation") == {f"o-{one}"}
            other = teams["tvilling-b" if who == "tvilling-a" else "tvilling-a"][3]
            r = n.get(f"{n.base}/Observation", params={"subject": f"Patient/{other}"})
            assert r.status_code == 200 and ids(r.json(), "Observation") == set()

    # the two conditions are memoized, of one shape, and bound to different values
    conds = []
    for n in (a, b):
        principal = fkj_app.principal_for({"authorization": n.headers["authorization"]},
                                          policy_tenant)
        repo = Repository(fkj_app.services, principal, policy_tenant)
        conds.append(sql_condition(context(repo), MAIN, "Observation"))
    assert all(isinstance(x, MemoizedCondition) for x in conds)
    assert conds[0]._key == conds[1]._key
    assert [p.value for p in conds[0]._binds] != [p.value for p in conds[1]._binds]
