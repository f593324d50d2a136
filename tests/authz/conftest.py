"""Fixtures of the end-to-end authorisation tests: a small clinical "world" in a fresh tenant
(two patients, their Observations, a Practitioner), clients without and with chosen tokens,
and a token forger using the server's own signing keys."""

from __future__ import annotations

import uuid

import pytest
from starlette.testclient import TestClient

from tests.api.helpers import FHIR, create
from tests.conftest import BASE_URL, auth_headers

OWN_FAMILY = "Eigenpasient"
OTHER_FAMILY = "Annenpasient"
LOINC = "http://loinc.org"


def obs(patient_id: str, code: str, performer: str | None = None, **extra) -> dict:
    o = {"resourceType": "Observation", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": code}]},
         "subject": {"reference": f"Patient/{patient_id}"},
         "valueString": f"verdi-{code}"}
    if performer:
        o["performer"] = [{"reference": performer}]
    o.update(extra)
    return o


class World:
    """Resources of one tenant; ``pa`` is "our" patient, ``pb`` another one."""

    def __init__(self, client):
        self.client = client
        self.tenant = client.tenant
        self.base = client.base
        tag = uuid.uuid4().hex[:8]
        self.code_a, self.code_b = f"a-{tag}", f"b-{tag}"
        self.pr = create(client, {"resourceType": "Practitioner",
                                  "name": [{"family": "Legesen", "given": ["Lise"]}]})["id"]
        self.pa = create(client, {"resourceType": "Patient",
                                  "name": [{"family": OWN_FAMILY, "given": ["Ola"]}]})["id"]
        self.pb = create(client, {"resourceType": "Patient",
                                  "name": [{"family": OTHER_FAMILY, "given": ["Åse"]}]})["id"]
        self.oa = create(client, obs(self.pa, self.code_a, f"Practitioner/{self.pr}"))["id"]
        self.ob = create(client, obs(self.pb, self.code_b, f"Practitioner/{self.pr}"))["id"]

    def ids(self) -> list[str]:
        return [self.pr, self.pa, self.pb, self.oa, self.ob]

    def secret_markers(self) -> list[str]:
        """Strings that may not appear in the body of a refused response."""
        return [self.pa, self.pb, self.oa, self.ob, self.pr, OWN_FAMILY, OTHER_FAMILY,
                self.code_a, self.code_b, "Legesen"]


@pytest.fixture
def world(client) -> World:
    return World(client)


@pytest.fixture
def anon(asgi_app):
    """A client without any Authorization header."""
    return TestClient(asgi_app, base_url=BASE_URL)


@pytest.fixture
def as_token(asgi_app, fkj_app, client):
    """``as_token(scope, tenant=None, **claims)`` → a TestClient carrying that token for the
    world's tenant (or ``tenant``)."""
    def make(scope: str, tenant: str | None = None, **claims) -> TestClient:
        c = TestClient(asgi_app, base_url=BASE_URL)
        c.headers.update(auth_headers(fkj_app, tenant or client.tenant, scope=scope, **claims))
        c.tenant = client.tenant  # type: ignore[attr-defined]
        c.base = client.base  # type: ignore[attr-defined]
        return c
    return make


@pytest.fixture
def token_service(fkj_app):
    return fkj_app.services.extras["auth"].token_service


def entries(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if "resource" in e]


def ids_of(bundle: dict, rtype: str | None = None) -> set[str]:
    return {r["id"] for r in entries(bundle) if rtype is None or r["resourceType"] == rtype}


def assert_no_data(response, world: World, allow: tuple[str, ...] = ()) -> None:
    """The body of a refused response is an OperationOutcome that names no data."""
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    text = response.text
    for marker in world.secret_markers():
        if marker not in allow:
            assert marker not in text, f"{marker!r} leaked in {text}"


__all__ = ["FHIR", "World", "obs", "entries", "ids_of", "assert_no_data"]
