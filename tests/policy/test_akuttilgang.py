"""``$akuttilgang`` only for health personnel (issue 30, item 10): every role of
``fkj.security.policy.roles.ROLES`` tried — the clinical roles open the record, the
saksbehandler and the leder are refused and get nothing; an HPR number is required."""

from __future__ import annotations

import pytest

from fkj.security.policy.roles import ROLES
from tests.policy.conftest import citizen, make_client, personnel, system
from tests.policy.test_attacks import REASON

#: health personnel (helsepersonelloven § 3); saksbehandler and leder are not
HEALTH_PERSONNEL_ROLES = {"lege", "sykepleier", "helsefagarbeider", "fysioterapeut",
                          "ergoterapeut", "psykolog"}


def _grants(fkj_app, tenant: str) -> list[str]:
    from fkj.repository.repository import Repository
    from fkj.security.policy.emergency import list_grants
    from fkj.types import Principal
    return [g["agent"] for g in list_grants(Repository(fkj_app.services,
                                                       Principal.system(tenant), tenant))]


def test_every_role_is_tried():
    assert set(ROLES) == HEALTH_PERSONNEL_ROLES | {"saksbehandler", "leder"}


@pytest.mark.parametrize("role", ROLES)
def test_per_role(w, asgi_app, fkj_app, policy_tenant, role):
    hpr = f"95{ROLES.index(role):02d}"
    p = personnel(asgi_app, fkj_app, policy_tenant, f"p-{role}", [role], "legevakt", hpr)
    assert p.get(f"{p.base}/Patient/other").status_code == 404  # no relation
    r = p.post(f"{p.base}/Patient/other/$akuttilgang", json=REASON)
    if role in HEALTH_PERSONNEL_ROLES:
        assert r.status_code == 200, r.text
        assert p.get(f"{p.base}/Patient/other").status_code == 200
        assert _grants(fkj_app, policy_tenant) == [hpr]
    else:
        assert r.status_code == 403, r.text
        assert "helsepersonell" in r.json()["issue"][0]["diagnostics"]
        assert p.get(f"{p.base}/Patient/other").status_code == 404  # nothing opened
        assert _grants(fkj_app, policy_tenant) == []


def test_roles_are_a_union(w, asgi_app, fkj_app, policy_tenant):
    p = personnel(asgi_app, fkj_app, policy_tenant, "ld", ["leder", "lege"], "legevakt", "9600")
    assert p.post(f"{p.base}/Patient/other/$akuttilgang", json=REASON).status_code == 200


def test_an_hpr_number_is_required(w, asgi_app, fkj_app, policy_tenant):
    p = make_client(asgi_app, fkj_app, policy_tenant, kind="practitioner", roles=["lege"],
                    fhir_user="Practitioner/ns", unit="Organization/legevakt",
                    subject="uten-hpr")
    r = p.post(f"{p.base}/Patient/other/$akuttilgang", json=REASON)
    assert r.status_code == 403, r.text
    assert _grants(fkj_app, policy_tenant) == []


def test_neither_citizens_nor_system_clients(w, asgi_app, fkj_app, policy_tenant):
    for c in (citizen(asgi_app, fkj_app, policy_tenant, "01817012309"),
              system(asgi_app, fkj_app, policy_tenant)):
        assert c.post(f"{c.base}/Patient/other/$akuttilgang", json=REASON).status_code == 403
    assert _grants(fkj_app, policy_tenant) == []


def test_a_grant_opens_nothing_for_a_token_without_a_clinical_role(w, asgi_app, fkj_app,
                                                                   policy_tenant):
    """A grant opened as lege does not open the record to the same person's token as
    saksbehandler (grants are the agent's, the right to use them is the role's)."""
    lege = personnel(asgi_app, fkj_app, policy_tenant, "to", ["lege"], "legevakt", "9700")
    assert lege.post(f"{lege.base}/Patient/other/$akuttilgang", json=REASON).status_code == 200
    sb = personnel(asgi_app, fkj_app, policy_tenant, "to", ["saksbehandler"], "legevakt", "9700")
    assert sb.get(f"{sb.base}/Patient/other").status_code == 404
