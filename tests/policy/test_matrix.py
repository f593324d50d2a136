"""The policy matrix: role × care relation × block × emergency × sensitivity, for read,
search (ids and totals), _include, history, $everything and export."""

from __future__ import annotations

import os

import pytest

from tests.policy import world as W
from tests.policy.conftest import enable_policy, ids, personnel, system

REASON = {"resourceType": "Parameters",
          "parameter": [{"name": "reason", "valueString": "bevisstløs pasient på legevakt"}]}


@pytest.fixture(scope="module")
def matrix(db, fkj_app, asgi_app):
    tenant = db.new_tenant()
    enable_policy(fkj_app, tenant)
    W.build(system(asgi_app, fkj_app, tenant))
    clients = {}
    for role in W.ROLES:
        for em in (False, True):
            c = personnel(asgi_app, fkj_app, tenant, W.prac_id(role, em), [role], W.UNIT,
                          W.hpr(role, em))
            clients[(role, em)] = c
            if em:
                for rel in W.RELATIONS:
                    for blk in W.BLOCKS:
                        r = c.post(f"{c.base}/Patient/{W.patient_id(rel, blk)}/$akuttilgang",
                                   json=REASON)
                        # only health personnel may open a record in an emergency
                        assert r.status_code == (200 if role in W.BTG_ROLES else 403), r.text
    return clients


#: the full cross for lege (all four with FKJ_FULL_MATRIX=1), a slice for the others (runtime)
FULL_ROLES = (("lege", "sykepleier", "helsefagarbeider", "saksbehandler")
              if os.environ.get("FKJ_FULL_MATRIX") == "1" else ("lege",))
CASES = [pytest.param(role, rel, blk, em, sens,
                      id=f"{role}-rel_{rel}-block_{blk}-{'btg' if em else 'nobtg'}-{sens}")
         for role in W.ROLES for rel in W.RELATIONS for blk in W.BLOCKS
         for em in (False, True) for sens in ("plain", "psy")
         if role in FULL_ROLES or (rel in ("none", "careteam") and blk in ("none", "category"))]


@pytest.mark.parametrize("role,rel,blk,emergency,sens", CASES)
def test_matrix(matrix, role, rel, blk, emergency, sens):
    c = matrix[(role, emergency)]
    pid = W.patient_id(rel, blk)
    target = f"c-{pid}-{sens}"
    visible = W.condition_visible(role, rel, blk, emergency, sens)
    plain_visible = W.condition_visible(role, rel, blk, emergency, "plain")
    psy_visible = W.condition_visible(role, rel, blk, emergency, "psy")
    expected_ids = {x for x, v in ((f"c-{pid}-plain", plain_visible),
                                   (f"c-{pid}-psy", psy_visible)) if v}

    # read: a patient outside the care relation is answered as if the resource did not
    # exist (404); what is refused for a related patient (role, block, sensitivity) is 403
    related = W.related(rel, emergency, role)
    r = c.get(f"{c.base}/Condition/{target}")
    assert r.status_code == (200 if visible else 403 if related else 404), r.text
    if not visible:
        assert "diagnose" not in r.text

    # search: ids and totals agree
    r = c.get(f"{c.base}/Condition", params={"patient": pid, "_total": "accurate"})
    assert r.status_code == 200, r.text
    b = r.json()
    assert ids(b, "Condition", "match") == expected_ids
    assert b["total"] == len(expected_ids)

    # _include from the Encounter
    r = c.get(f"{c.base}/Encounter", params={"patient": pid,
                                             "_include": "Encounter:diagnosis"})
    assert r.status_code == 200, r.text
    assert (target in ids(r.json(), "Condition", "include")) == visible

    # history
    r = c.get(f"{c.base}/Condition/{target}/_history")
    if visible:
        assert r.status_code == 200 and ids(r.json()) == {target}, r.text
    else:
        assert r.status_code in (403, 404), r.text
        assert "diagnose" not in r.text

    # $everything
    r = c.get(f"{c.base}/Patient/{pid}/$everything")
    if W.patient_visible(rel, blk, emergency, role):
        assert r.status_code == 200, r.text
        got = ids(r.json(), "Condition")
        assert got == expected_ids
    else:
        assert r.status_code == (403 if related else 404), r.text
        assert "diagnose" not in r.text


@pytest.mark.parametrize("emergency", [False, True], ids=["nobtg", "btg"])
@pytest.mark.parametrize("role", W.ROLES)
def test_export_matrix(matrix, fkj_app, tmp_path, role, emergency):
    """Patient-level $export of Conditions gives each person exactly the Conditions the
    matrix lets them read (care relation × block × sensitivity), no more."""
    from tests.bulk.test_export import download, finish

    previous = fkj_app.services.extras.get("bulk_export_dir")
    fkj_app.services.extras["bulk_export_dir"] = str(tmp_path / "exports")
    try:
        c = matrix[(role, emergency)]
        r = c.get(f"{c.base}/Patient/$export", params={"_type": "Condition"},
                  headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        _, status = finish(c, r)
        assert status.status_code == 200, status.text
        got = {x["id"] for x in download(c, status.json()).get("Condition", [])}
    finally:
        if previous is None:
            fkj_app.services.extras.pop("bulk_export_dir", None)
        else:
            fkj_app.services.extras["bulk_export_dir"] = previous
    expected = {f"c-{W.patient_id(rel, blk)}-{sens}" for rel in W.RELATIONS
                for blk in W.BLOCKS for sens in ("plain", "psy")
                if W.condition_visible(role, rel, blk, emergency, sens)}
    assert got == expected
    if role == "lege":  # guards the comparison: some visible, some hidden
        assert expected and len(expected) < 2 * len(W.RELATIONS) * len(W.BLOCKS)
