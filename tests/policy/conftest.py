"""Fixtures of the access-policy tests: tokens for personnel and citizens, and the policy
registered (once, idempotently) on the session app for the tenants these tests create."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.api.helpers import FHIR
from tests.conftest import BASE_URL, auth_headers

ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
PSY = {"system": ACTCODE, "code": "PSY"}


def enable_policy(fkj_app, tenant: str) -> None:
    from fkj.security.policy import register_policy
    register_policy(fkj_app, tenants={tenant})


def make_client(asgi_app, fkj_app, tenant: str, **claims) -> TestClient:
    c = TestClient(asgi_app, base_url=BASE_URL)
    scope = claims.pop("scope", "user/*.cruds")
    c.headers.update(auth_headers(fkj_app, tenant, scope=scope, **claims))
    c.headers.update(FHIR)
    c.tenant = tenant  # type: ignore[attr-defined]
    c.base = f"/fhir/{tenant}"  # type: ignore[attr-defined]
    return c


def personnel(asgi_app, fkj_app, tenant: str, prac_id: str, roles, unit: str, hpr: str):
    return make_client(asgi_app, fkj_app, tenant, kind="practitioner",
                       fhir_user=f"Practitioner/{prac_id}", roles=list(roles),
                       unit=f"Organization/{unit}", hpr_number=hpr, subject=hpr)


def citizen(asgi_app, fkj_app, tenant: str, pid: str):
    return make_client(asgi_app, fkj_app, tenant, kind="citizen", pid=pid, subject=pid)


def system(asgi_app, fkj_app, tenant: str):
    return make_client(asgi_app, fkj_app, tenant, scope="system/*.cruds")


def put(c, res: dict) -> dict:
    r = c.put(f"{c.base}/{res['resourceType']}/{res['id']}", json=res)
    assert r.status_code in (200, 201), r.text
    return r.json()


def entries(bundle: dict, mode: str | None = None) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", [])
            if "resource" in e and (mode is None or e.get("search", {}).get("mode") == mode)]


def ids(bundle: dict, rtype: str | None = None, mode: str | None = None) -> set[str]:
    return {r["id"] for r in entries(bundle, mode) if rtype is None or r["resourceType"] == rtype}


def sperring(cid: str, patient: str, **provision) -> dict:
    return {"resourceType": "Consent", "id": cid,
            "meta": {"tag": [{"system": "http://fkj.no/fhir/CodeSystem/consent-kind",
                              "code": "sperring"}]},
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.9603",
                                      "code": "NORS"}]}],
            "patient": {"reference": f"Patient/{patient}"},
            "performer": [{"reference": f"Patient/{patient}"}],
            "policyRule": {"coding": [{"system": ACTCODE, "code": "OPTOUT"}]},
            "provision": {"type": "deny", "period": {"start": "2020-01-01"}, **provision}}


def actor(ref: str) -> dict:
    return {"role": {"coding": [{"system":
                                 "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                 "code": "IRCP"}]}, "reference": {"reference": ref}}


@pytest.fixture
def policy_tenant(db, fkj_app):
    t = db.new_tenant()
    enable_policy(fkj_app, t)
    return t


@pytest.fixture
def sys_client(asgi_app, fkj_app, policy_tenant):
    return system(asgi_app, fkj_app, policy_tenant)


@pytest.fixture
def w(asgi_app, fkj_app, policy_tenant, sys_client):
    """Patient ``mine`` (on the nurse's CareTeam, with a PSY Condition and a Condition that the
    patient later blocks) and patient ``other`` (no relation)."""
    c = sys_client
    put(c, {"resourceType": "Organization", "id": "hjem"})
    put(c, {"resourceType": "Practitioner", "id": "ns"})
    for pid, fnr in (("mine", "01817012309"), ("other", "02827012338")):
        put(c, {"resourceType": "Patient", "id": pid, "name": [{"family": f"Fam{pid}"}],
                "identifier": [{"system": FNR, "value": fnr}]})
        put(c, {"resourceType": "Condition", "id": f"c-{pid}", "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": "http://x", "code": f"code-{pid}"}]}})
    put(c, {"resourceType": "CareTeam", "id": "ct", "status": "active",
            "subject": {"reference": "Patient/mine"},
            "participant": [{"member": {"reference": "Practitioner/ns"}}]})
    put(c, {"resourceType": "Condition", "id": "c-psy", "meta": {"security": [PSY]},
            "subject": {"reference": "Patient/mine"},
            "code": {"coding": [{"system": "http://x", "code": "hemmelig-psy"}]}})
    put(c, {"resourceType": "Encounter", "id": "enc", "status": "finished",
            "class": {"code": "HH"}, "subject": {"reference": "Patient/mine"},
            "diagnosis": [{"condition": {"reference": "Condition/c-psy"}},
                          {"condition": {"reference": "Condition/c-other"}}]})
    nurse = personnel(asgi_app, fkj_app, policy_tenant, "ns", ["sykepleier"], "hjem", "9111")
    return c, nurse
