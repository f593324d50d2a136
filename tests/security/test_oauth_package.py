"""The package ``fkj.security.oauth``: its public API, and the login seam with an upstream
provider's stand-in plugged in through ``AuthSettings.login``."""

from __future__ import annotations

from sec_helpers import BASE, REDIRECT, TENANT, authorize_params, exchange, pkce, query_of
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from fkj.security import oauth
from fkj.security.oauth import (
    AuthorizationRequest,
    AuthSettings,
    LoginRefused,
    Person,
    auth_routes,
    complete_login,
    create_launch,
    unseal_request,
)

UPSTREAM = "https://upstream.example/authorize"


def test_public_api():
    assert sorted(oauth.__all__) == [
        "AuthSettings", "AuthorizationRequest", "ClientAuthMethod", "DemoLogin", "Directory",
        "Grant", "LaunchContext", "LoginMethod", "LoginRefused", "OAuthError",
        "PendingAuthorization", "Person", "auth_routes", "authenticate_client",
        "complete_login", "create_launch", "launch_patient", "needs_patient_choice",
        "unseal_request",
    ]
    for name in oauth.__all__:
        assert getattr(oauth, name) is not None, name


class UpstreamStandIn:
    """What an upstream OpenID provider's login method does (HelseID, ID-porten): redirect
    to the provider with the sealed request as ``state``, take the person back at a callback
    and complete the login. The 'provider' here names the person in the callback's query."""

    def __init__(self, settings_ref: list[AuthSettings]):
        self.settings_ref = settings_ref
        self.started: list[AuthorizationRequest] = []

    def start(self, request: AuthorizationRequest) -> Response:
        self.started.append(request)
        return RedirectResponse(f"{UPSTREAM}?state={request.req}", status_code=302)

    def routes(self) -> list[Route]:
        return [Route("/auth/callback/upstream", self.callback)]

    async def callback(self, request: Request) -> Response:
        s = self.settings_ref[0]
        try:
            pending = unseal_request(s, request.query_params.get("state", ""))
            who = request.query_params["who"]
            kind = "citizen" if who.startswith("Patient/") else "practitioner"
            person = Person(kind=kind, id=who, pid="12345678901", hpr_number="7654321",
                            acr="idporten-loa-substantial" if kind == "citizen" else None)
            return complete_login(s, pending, person)
        except LoginRefused as e:
            return Response(e.message, status_code=e.status)


def _upstream_client(engine, demo: bool):
    ref: list[AuthSettings] = []
    method = UpstreamStandIn(ref)
    settings = AuthSettings(engine=engine, base_url=BASE, demo=demo, login=method)
    ref.append(settings)
    c = TestClient(Starlette(routes=auth_routes(settings)), base_url=BASE,
                   follow_redirects=False)
    return c, method, settings


def test_upstream_login_plugs_in_outside_demo_mode(engine, app_client):
    c, method, settings = _upstream_client(engine, demo=False)
    verifier, challenge = pkce()
    params = authorize_params(challenge, scope="openid fhirUser patient/*.rs", nonce="n-7")
    r = c.get("/auth/authorize", params=params)
    assert r.status_code == 302 and r.headers["location"].startswith(UPSTREAM)
    [started] = method.started
    assert started.client.client_id == "app" and started.tenant == TENANT
    assert started.scopes == ["fhirUser", "openid", "patient/*.rs"]
    state = query_of(r.headers["location"])["state"]

    r = c.get("/auth/callback/upstream", params={"state": state, "who": "Patient/pat1"})
    assert r.status_code == 302 and r.headers["location"].startswith(REDIRECT + "?")
    q = query_of(r.headers["location"])
    assert q["state"] == params["state"]
    body = exchange(c, q["code"], verifier).json()
    p = settings.token_service.verify(body["access_token"])
    assert p.kind == "citizen" and p.patient == "pat1" and p.pid == "12345678901"
    claims, _ = settings.token_service.verify_claims(body["access_token"])
    assert claims["acr"] == "idporten-loa-substantial"
    assert body["need_patient_banner"] is True
    # the demo login stays off: its route answers 404 whatever login is configured
    assert c.post("/auth/login", data={"req": state, "person": "Patient/pat1"}
                  ).status_code == 404


def test_upstream_login_cannot_bypass_launch_rules(engine, app_client):
    """complete_login applies the launch rules to any login method: a citizen cannot open
    another patient's record from an EHR launch, nor log in as someone the launch did not
    name; a forged request is refused."""
    c, _, _ = _upstream_client(engine, demo=False)
    _, challenge = pkce()
    launch = create_launch(engine, TENANT, patient="Patient/pat2")
    r = c.get("/auth/authorize", params=authorize_params(
        challenge, scope="launch patient/*.rs", launch=launch))
    state = query_of(r.headers["location"])["state"]
    r = c.get("/auth/callback/upstream", params={"state": state, "who": "Patient/pat1"})
    assert r.status_code == 403 and "location" not in r.headers

    launch = create_launch(engine, TENANT, patient="pat1", user="Practitioner/p1")
    r = c.get("/auth/authorize", params=authorize_params(
        challenge, scope="launch patient/*.rs", launch=launch))
    state = query_of(r.headers["location"])["state"]
    r = c.get("/auth/callback/upstream", params={"state": state, "who": "Practitioner/p2"})
    assert r.status_code == 400 and "location" not in r.headers

    r = c.get("/auth/authorize", params=authorize_params(challenge,
                                                          scope="launch/patient patient/*.rs"))
    state = query_of(r.headers["location"])["state"]
    r = c.get("/auth/callback/upstream", params={"state": state, "who": "Practitioner/p1"})
    assert r.status_code == 400 and "Ingen pasient valgt" in r.text

    r = c.get("/auth/callback/upstream", params={"state": "e30.e30.e30",
                                                 "who": "Patient/pat1"})
    assert r.status_code == 400 and "ugyldig eller utløpt" in r.text
