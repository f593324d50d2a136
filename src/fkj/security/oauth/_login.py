"""The login seam: how a person proves who they are, and what happens once they have.

``/auth/authorize`` (:mod:`._authorize`) checks the request — client, exactly registered
redirect URI, PKCE, audience, scopes, launch — and seals it (``req``: signed by this server,
ten minutes). From there a :class:`LoginMethod` takes over:

1. :meth:`LoginMethod.start` answers the authorisation request: the demo's login page
   (:class:`._demo_login.DemoLogin`), or — for an upstream OpenID provider such as HelseID
   (health personnel) or ID-porten (citizens) — a redirect to that provider carrying ``req``
   through (in its ``state``);
2. the method's own :meth:`LoginMethod.routes` take the person back (the demo's form post,
   an upstream provider's callback) and recover the request with :func:`unseal_request`;
3. the method states who logged in as a :class:`Person` and ends with
   :func:`complete_login`, which applies the launch rules (the EHR's user, a citizen's own
   record, the patient to work with), stores a one-time code and redirects to the client.

Whatever a method does, it cannot widen what the request was checked for: the client, the
redirect URI, the scopes and the launch are sealed. A :class:`LoginRefused` is shown as a
page and never redirected.

The method in use is ``AuthSettings.login``; without one, the demo login serves in demo mode
and otherwise ``/auth/authorize`` answers 501 (no login configured).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import insert
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fkj.errors import Unauthorized
from fkj.security.clients import Client
from fkj.security.oauth._common import sha256_hex
from fkj.security.oauth._http import with_query
from fkj.security.oauth._settings import AuthSettings
from fkj.security.oauth._types import Grant, PendingAuthorization
from fkj.security.tables import auth_code
from fkj.store.backend import now_us, write_transaction

#: what a sealed authorisation request is sealed for (``TokenService.seal``)
SEAL_PURPOSE = "authorize"


class LoginRefused(Exception):
    """A login that cannot go on: ``message`` (Norwegian, shown to the person) and status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorisation request, as handed to :meth:`LoginMethod.start`."""

    client: Client
    pending: PendingAuthorization
    #: ``pending`` sealed: carried through the login, back to :func:`unseal_request`
    req: str

    @property
    def scopes(self) -> list[str]:
        """The scopes that will be granted (those asked for that the client may have)."""
        return self.pending["scope"].split()

    @property
    def tenant(self) -> str:
        return self.pending["tenant"]


@dataclass(frozen=True)
class Person:
    """Who logged in, as the login method established it."""

    kind: str                       # practitioner | citizen
    id: str                         # FHIR reference: Practitioner/…, Patient/… (fhirUser)
    name: str = ""
    hpr_number: str | None = None   # practitioners (HelseID: helseid://claims/hpr/hpr_number)
    pid: str | None = None          # fødselsnummer / D-nummer
    roles: tuple[str, ...] = ()
    unit: str | None = None
    organisation: str | None = None
    acr: str | None = None          # citizens: the ID-porten level (default idporten-loa-high)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Person:
        """A person of a directory (``AuthSettings.directory``)."""
        return cls(kind=entry["kind"], id=entry["id"], name=entry.get("name", ""),
                   hpr_number=entry.get("hpr_number"), pid=entry.get("pid"),
                   roles=tuple(entry.get("roles") or ()), unit=entry.get("unit"),
                   organisation=entry.get("organisation"), acr=entry.get("acr"))


class LoginMethod(Protocol):
    """How people log in to this authorisation server (see the module docstring).

    The demo login is the first implementation; HelseID and ID-porten, as upstream OpenID
    providers, are the next: ``start`` redirects to the provider, a callback route of
    ``routes`` exchanges the provider's code, maps its claims to a :class:`Person` and calls
    :func:`complete_login`.
    """

    def start(self, request: AuthorizationRequest) -> Response:
        """The answer to a checked authorisation request (a page, or a redirect upstream).
        Runs in a worker thread."""
        ...

    def routes(self) -> list[Route]:
        """The routes the method needs (mounted beside ``/auth/authorize``)."""
        ...


def unseal_request(s: AuthSettings, req: str) -> PendingAuthorization:
    """The authorisation request sealed in ``req``; :class:`LoginRefused` if it is forged or
    expired."""
    try:
        return cast(PendingAuthorization, s.tokens.unseal(req, SEAL_PURPOSE))
    except Unauthorized:
        raise LoginRefused("Innloggingsforespørselen er ugyldig eller utløpt.") from None


def launch_patient(pending: PendingAuthorization, person: Person) -> str | None:
    """The patient (id) the login fixes by itself: the EHR launch's, or a citizen's own
    record when patient-level access is asked for. :class:`LoginRefused` if the person is
    not the launch's user, or a citizen would open someone else's record."""
    launch = pending.get("launch") or {}
    if launch.get("user") and person.id != launch.get("user"):
        raise LoginRefused("Innlogget bruker stemmer ikke med oppstartskonteksten.")
    scopes = pending["scope"].split()
    patient = launch.get("patient")
    if person.kind == "citizen":
        own = person.id.split("/", 1)[1]
        if patient and patient != own:
            raise LoginRefused("En innbygger kan bare åpne sin egen journal.", 403)
        if any(sc.startswith("patient/") for sc in scopes) or "launch/patient" in scopes:
            patient = own
    return patient


def needs_patient_choice(pending: PendingAuthorization, person: Person) -> bool:
    """Whether the person must choose the patient to work with (a practitioner's standalone
    launch with ``launch/patient``). Applies the checks of :func:`launch_patient`."""
    patient = launch_patient(pending, person)
    return person.kind != "citizen" and "launch/patient" in pending["scope"].split() \
        and not patient


def complete_login(s: AuthSettings, pending: PendingAuthorization, person: Person,
                   chosen_patient: str | None = None) -> Response:
    """End a login: apply the launch rules (:func:`launch_patient`; ``chosen_patient``, an
    id, counts only when :func:`needs_patient_choice`, and the method must have checked that
    the person may choose it), store a one-time code (``AuthSettings.code_lifetime``) and
    redirect to the client with ``code`` and ``state``. :class:`LoginRefused` if no patient
    is set where one is needed."""
    patient = launch_patient(pending, person)
    scopes = pending["scope"].split()
    if person.kind != "citizen" and "launch/patient" in scopes and not patient:
        patient = chosen_patient
    if "launch/patient" in scopes and not patient:
        raise LoginRefused("Ingen pasient valgt.")
    launch = pending.get("launch") or {}
    grant: Grant = {
        "kind": person.kind, "sub": person.id, "fhir_user": person.id,
        "hpr_number": person.hpr_number, "pid": person.pid,
        "roles": list(person.roles), "unit": person.unit,
        "organisation": person.organisation,
        "acr": person.acr or ("idporten-loa-high" if person.kind == "citizen" else None),
        "patient": patient, "encounter": launch.get("encounter"),
        "nonce": pending.get("nonce"), "need_patient_banner": not pending.get("ehr"),
    }
    code = secrets.token_urlsafe(32)
    now = now_us()
    with write_transaction(s.engine) as conn:
        conn.execute(insert(auth_code).values(
            code_hash=sha256_hex(code), tenant=pending["tenant"],
            client_id=pending["client_id"], redirect_uri=pending["redirect_uri"],
            code_challenge=pending["code_challenge"], scope=pending["scope"],
            grant=json.dumps(grant), created=now,
            expires=now + s.code_lifetime * 1_000_000))
    return RedirectResponse(with_query(pending["redirect_uri"], {
        "code": code, "state": pending.get("state")}), status_code=302)
