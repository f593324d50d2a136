"""SMART App Launch v2 / SMART Backend Services authorisation server (Starlette routes).

``auth_routes(settings)`` returns the routes; the app owner mounts them under the app root::

    GET  /fhir/{tenant}/.well-known/smart-configuration
    GET  /.well-known/openid-configuration
    GET  /auth/jwks
    GET|POST /auth/authorize     authorisation code + PKCE (S256 only)
    POST /auth/login             demo login / patient picker (404 unless settings.demo)
    POST /auth/token             authorization_code | refresh_token | client_credentials
    POST /auth/introspect        RFC 7662 (authenticated confidential/backend clients)
    POST /auth/revoke            RFC 7009

Redirect rules: until the client and the *exactly* registered redirect URI are established,
errors are shown as an HTML page and never redirected (no open redirect); after that, errors
are returned to the redirect URI as ``error=…&state=…``.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from sqlalchemy import Engine, insert, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fkj.store.backend import write_transaction
from fkj.errors import Unauthorized
from fkj.security.clients import get_client
from fkj.security.scopes import covered, normalize_scopes
from fkj.security.tables import auth_code, launch_context
from fkj.security.oauth._discovery import discovery_routes
from fkj.security.oauth._grants import token_route
from fkj.security.oauth._introspection import introspect_route
from fkj.security.oauth._revocation import revoke_route
from fkj.security.oauth._common import TENANT_RE, sha256_hex
from fkj.security.oauth._http import error_page, page, with_query
from fkj.security.oauth._settings import AuthSettings
from fkj.store.backend import now_us

CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
NOT_CONFIGURED = "Innlogging via HelseID/ID-porten er ikke konfigurert"

def create_launch(engine: Engine, tenant: str, patient: str | None = None,
                  encounter: str | None = None, user: str | None = None,
                  lifetime: int = 300) -> str:
    """Create an EHR launch context; returns the opaque ``launch`` id for the app URL."""
    if not TENANT_RE.match(tenant):
        raise ValueError("bad tenant")
    launch_id = secrets.token_urlsafe(24)
    now = now_us()

    def bare(ref: str | None, rtype: str) -> str | None:
        return ref.split("/", 1)[1] if ref and ref.startswith(rtype + "/") else ref

    with write_transaction(engine) as conn:
        conn.execute(insert(launch_context).values(
            launch_id=launch_id, tenant=tenant, patient=bare(patient, "Patient"),
            encounter=bare(encounter, "Encounter"), user_ref=user, created=now,
            expires=now + lifetime * 1_000_000))
    return launch_id


def auth_routes(settings: AuthSettings | Any) -> list[Route]:
    """Routes of the authorisation server. ``settings``: an :class:`AuthSettings`, or any
    object with ``engine``, ``base_url``, ``demo`` and optionally ``directory`` and
    ``trusted_issuers`` (JSON text or a list of TrustedIssuer)."""
    s = AuthSettings.coerce(settings)
    ts = s.tokens
    engine = s.engine

    # -- authorize ---------------------------------------------------------------------------
    def authorize_sync(items: list[tuple[str, str]]) -> Response:
        names = [k for k, _ in items]
        params = dict(items)
        client = get_client(engine, params.get("client_id", ""))
        if client is None or client.client_type == "backend":
            return error_page("Ukjent klient (client_id).")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri or redirect_uri not in client.redirect_uris:
            return error_page("redirect_uri er ikke registrert for denne klienten.")
        state = params.get("state")

        def back(error: str, desc: str) -> Response:
            return RedirectResponse(with_query(redirect_uri, {
                "error": error, "error_description": desc, "state": state}), status_code=302)

        if len(names) != len(set(names)):
            return back("invalid_request", "repeated parameter")
        if params.get("response_type") != "code":
            return back("unsupported_response_type", "only response_type=code")
        challenge = params.get("code_challenge")
        if params.get("code_challenge_method") != "S256" or not challenge:
            return back("invalid_request", "PKCE with code_challenge_method=S256 is required")
        if not CHALLENGE_RE.match(challenge):
            return back("invalid_request", "malformed code_challenge")
        tenant = s.tenant_from_aud(params.get("aud"))
        if tenant is None:
            return back("invalid_request", "aud must be the FHIR base URL of a tenant")
        if not client.allows_tenant(tenant):
            return back("unauthorized_client", "client not registered for this tenant")
        requested = normalize_scopes(params.get("scope"))
        granted = sorted(sc for sc in requested
                         if not sc.startswith("system/") and covered(sc, client.scopes))
        if not granted:
            return back("invalid_scope", "no requested scope is allowed for this client")
        launch: dict[str, Any] = {}
        if params.get("launch"):
            with engine.connect() as conn:
                row = conn.execute(select(launch_context).where(
                    launch_context.c.launch_id == params["launch"])).first()
            if row is None or row.tenant != tenant or row.expires <= now_us():
                return back("invalid_request", "unknown or expired launch")
            launch = {"patient": row.patient, "encounter": row.encounter, "user": row.user_ref}
        elif "launch" in requested:
            return back("invalid_request", "scope launch requires the launch parameter")
        if not s.demo:
            return error_page(NOT_CONFIGURED + ".", 501)
        pending = {"client_id": client.client_id, "redirect_uri": redirect_uri, "state": state,
                   "code_challenge": challenge, "scope": " ".join(granted), "tenant": tenant,
                   "launch": launch, "nonce": params.get("nonce"), "ehr": bool(launch)}
        req = ts.seal(pending, "authorize")
        people = s.directory(tenant)
        if launch.get("user"):
            people = [p for p in people if p.get("id") == launch["user"]]
        return page("login.html", client=client, scopes=granted, people=people, req=req,
                    tenant=tenant)

    async def authorize(request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        else:
            items = list(request.query_params.multi_items())
        return await run_in_threadpool(authorize_sync, items)

    # -- demo login and patient picker -------------------------------------------------------
    def login_sync(form: dict[str, str]) -> Response:
        try:
            pending = ts.unseal(form.get("req", ""), "authorize")
        except Unauthorized:
            return error_page("Innloggingsforespørselen er ugyldig eller utløpt.")
        tenant = pending["tenant"]
        directory = s.directory(tenant)
        person = next((p for p in directory if p.get("id") == form.get("person")), None)
        launch = pending.get("launch") or {}
        if person is None or person.get("kind") not in ("practitioner", "citizen"):
            return error_page("Ukjent person.")
        if launch.get("user") and person["id"] != launch["user"]:
            return error_page("Innlogget bruker stemmer ikke med oppstartskonteksten.")
        scopes = pending["scope"].split()
        patient = launch.get("patient")
        if person["kind"] == "citizen":
            own = person["id"].split("/", 1)[1]
            if patient and patient != own:
                return error_page("En innbygger kan bare åpne sin egen journal.", 403)
            if any(sc.startswith("patient/") for sc in scopes) or "launch/patient" in scopes:
                patient = own
        elif "launch/patient" in scopes and not patient:
            candidates = [p for p in directory if p.get("kind") == "citizen"
                          and str(p.get("id", "")).startswith("Patient/")]
            chosen = form.get("patient")
            if not chosen:
                return page("pick_patient.html", patients=candidates, req=form["req"],
                            person=person, tenant=tenant)
            if chosen not in {p["id"] for p in candidates}:
                return error_page("Ukjent pasient.")
            patient = chosen.split("/", 1)[1]
        if "launch/patient" in scopes and not patient:
            return error_page("Ingen pasient valgt.")
        grant = {
            "kind": person["kind"], "sub": person["id"], "fhir_user": person["id"],
            "hpr_number": person.get("hpr_number"), "pid": person.get("pid"),
            "roles": list(person.get("roles") or []), "unit": person.get("unit"),
            "organisation": person.get("organisation"),
            "acr": person.get("acr") or ("idporten-loa-high" if person["kind"] == "citizen"
                                         else None),
            "patient": patient, "encounter": launch.get("encounter"),
            "nonce": pending.get("nonce"), "need_patient_banner": not pending.get("ehr"),
        }
        code = secrets.token_urlsafe(32)
        now = now_us()
        with write_transaction(engine) as conn:
            conn.execute(insert(auth_code).values(
                code_hash=sha256_hex(code), tenant=tenant, client_id=pending["client_id"],
                redirect_uri=pending["redirect_uri"], code_challenge=pending["code_challenge"],
                scope=pending["scope"], grant=json.dumps(grant), created=now,
                expires=now + s.code_lifetime * 1_000_000))
        return RedirectResponse(with_query(pending["redirect_uri"], {
            "code": code, "state": pending.get("state")}), status_code=302)

    async def login(request: Request) -> Response:
        if not s.demo:
            return Response("Not Found", status_code=404)
        if request.method != "POST":
            return Response("Method Not Allowed", status_code=405)
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
        return await run_in_threadpool(login_sync, data)

    return [
        *discovery_routes(s),
        Route("/auth/authorize", authorize, methods=["GET", "POST"]),
        Route("/auth/login", login, methods=["GET", "POST"]),
        token_route(s),
        introspect_route(s),
        revoke_route(s),
    ]
