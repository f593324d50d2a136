"""The demo login: the first :class:`._login.LoginMethod`.

The login page lists the tenant's synthetic people (``AuthSettings.directory``); one click
logs in as that person. A practitioner's standalone launch with ``launch/patient`` then
picks the patient among the directory's citizens. ``POST /auth/login`` serves only in demo
mode (404 otherwise, 405 for other methods). Pages: ``web/templates/auth/login.html`` and
``pick_patient.html``, autoescaped (:mod:`fkj.web.pages`).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fkj.security.oauth._http import error_page, page
from fkj.security.oauth._login import (
    AuthorizationRequest,
    LoginRefused,
    Person,
    complete_login,
    needs_patient_choice,
    unseal_request,
)
from fkj.security.oauth._settings import AuthSettings

KINDS = ("practitioner", "citizen")


class DemoLogin:
    """Log in as a person of ``settings.directory`` (read at every request)."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings

    def start(self, request: AuthorizationRequest) -> Response:
        """The login page: the tenant's people (only the launch's user for an EHR launch)."""
        people = self.settings.directory(request.tenant)
        user = request.pending["launch"].get("user")
        if user:
            people = [p for p in people if p.get("id") == user]
        return page("login.html", client=request.client, scopes=request.scopes,
                    people=people, req=request.req, tenant=request.tenant)

    def routes(self) -> list[Route]:
        return [Route("/auth/login", self._endpoint, methods=["GET", "POST"])]

    def login(self, form: Mapping[str, str]) -> Response:
        """The answer to the login form (blocking: run it in a thread): the patient picker,
        the redirect to the client, or an error page."""
        try:
            pending = unseal_request(self.settings, form.get("req", ""))
            tenant = pending["tenant"]
            directory = self.settings.directory(tenant)
            entry = next((p for p in directory if p.get("id") == form.get("person")), None)
            if entry is None or entry.get("kind") not in KINDS:
                raise LoginRefused("Ukjent person.")
            person = Person.from_entry(entry)
            chosen_patient = None
            if needs_patient_choice(pending, person):
                candidates = [p for p in directory if p.get("kind") == "citizen"
                              and str(p.get("id", "")).startswith("Patient/")]
                chosen = form.get("patient")
                if not chosen:
                    return page("pick_patient.html", patients=candidates, req=form["req"],
                                person=entry, tenant=tenant)
                if chosen not in {p["id"] for p in candidates}:
                    raise LoginRefused("Ukjent pasient.")
                chosen_patient = chosen.split("/", 1)[1]
            return complete_login(self.settings, pending, person, chosen_patient)
        except LoginRefused as e:
            return error_page(e.message, e.status)

    async def _endpoint(self, request: Request) -> Response:
        if not self.settings.demo:
            return Response("Not Found", status_code=404)
        if request.method != "POST":
            return Response("Method Not Allowed", status_code=405)
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
        return await run_in_threadpool(self.login, data)
