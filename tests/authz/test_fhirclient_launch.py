"""A real third-party SMART client: the ``fhirclient`` library (SMART Health IT) performs a
standalone launch against the server running in uvicorn, through the demo login page and the
patient picker, exchanges the code, and reads the picked Patient with its own models.

Needs ``fhirclient`` (dev dependency). The shared ``live_server`` fixture serves an app
configured with ``base_url=http://testserver`` — its discovery documents (authorize/token
URLs) and token audiences name a host a real client cannot reach — so this test runs its own
uvicorn server whose configured base URL is its real address, on the same database.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from tests.api.helpers import create

fhirclient = pytest.importorskip("fhirclient", reason="pip install fhirclient (dev dependency)")

REDIRECT = "http://127.0.0.1:9/fhirclient-callback"  # never contacted: the redirect is captured
SCOPE = "launch/patient openid fhirUser patient/*.rs offline_access"
_people: dict[str, list[dict]] = {}


class _Server:
    def __init__(self, db):
        import uvicorn

        from fkj.app import build_fkj, create_app
        from fkj.config import Settings
        from fkj.wiring import wire

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        fkj = build_fkj(Settings(database_url=db.url, base_url=self.url, demo=True),
                        engine=db.engine)
        wire(fkj)
        # the demo login lists the people of the auth settings' directory
        fkj.services.extras["auth"].directory = lambda tenant: _people.get(tenant, [])
        self.fkj = fkj
        self.server = uvicorn.Server(uvicorn.Config(create_app(fkj), host="127.0.0.1",
                                                    port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(250):
            if self.server.started:
                break
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=5)
        # its event worker would otherwise go on delivering the session database's
        # subscriptions beside the event tests' own worker
        self.fkj.close()


@pytest.fixture(scope="module")
def smart_server(db):
    s = _Server(db)
    yield s
    s.stop()


class Form(HTMLParser):
    """The first <form> of a page, as a browser would submit it (checked radios, hidden
    inputs)."""

    def __init__(self, html: str):
        super().__init__()
        self.action, self.method, self.fields, self.radios = None, "get", {}, {}
        self._in = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action, self.method, self._in = a.get("action", ""), a.get("method", "get"), True
        elif tag == "input" and self._in:
            name, kind = a.get("name"), a.get("type", "text")
            if kind == "radio":
                self.radios.setdefault(name, []).append(a.get("value"))
                if "checked" in a:
                    self.fields[name] = a.get("value")
            elif name:
                self.fields[name] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._in = False

    def submit(self, http: httpx.Client, page_url: str, **choices) -> httpx.Response:
        for name, value in choices.items():
            assert value in self.radios.get(name, []), (name, value, self.radios)
            self.fields[name] = value
        assert self.method.lower() == "post"
        return http.post(urljoin(page_url, self.action), data=self.fields)


def test_fhirclient_standalone_launch(smart_server, client, db):
    from fhirclient import client as fc
    from fhirclient.models.patient import Patient

    from fkj.security.clients import register_client

    tenant = client.tenant
    picked = create(client, {"resourceType": "Patient",
                             "name": [{"family": "Fhirclientsen", "given": ["Pia"]}]})
    other = create(client, {"resourceType": "Patient", "name": [{"family": "Uvalgt"}]})
    # the need-to-know policy: Lise Lege is on the picked patient's care team (only hers)
    r = client.put(f"{client.base}/Practitioner/lege-1", json={
        "resourceType": "Practitioner", "id": "lege-1", "name": [{"family": "Lege"}]})
    assert r.status_code in (200, 201), r.text
    create(client, {"resourceType": "CareTeam", "status": "active",
                    "subject": {"reference": f"Patient/{picked['id']}"},
                    "participant": [{"member": {"reference": "Practitioner/lege-1"}}]})
    _people[tenant] = [
        {"kind": "practitioner", "id": "Practitioner/lege-1", "name": "Lise Lege",
         "hpr_number": "9144900", "roles": ["lege"]},
        {"kind": "citizen", "id": f"Patient/{other['id']}", "name": "Uvalgt Person"},
        {"kind": "citizen", "id": f"Patient/{picked['id']}", "name": "Pia Fhirclientsen"},
    ]
    app_id = f"fhirclient-{uuid.uuid4().hex[:8]}"
    register_client(db.engine, app_id, client_type="public", name="fhirclient test app",
                    redirect_uris=[REDIRECT],
                    scopes="launch/patient openid fhirUser patient/*.rs offline_access")

    api_base = f"{smart_server.url}/fhir/{tenant}"
    smart = fc.FHIRClient(settings={"app_id": app_id, "api_base": api_base,
                                    "redirect_uri": REDIRECT, "scope": SCOPE})
    smart.wants_patient = False  # SCOPE already asks for launch/patient
    authorize_url = smart.authorize_url  # fetches metadata, reads the SMART oauth-uris
    assert authorize_url.startswith(f"{smart_server.url}/auth/authorize?"), authorize_url

    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        r = browser.get(authorize_url)
        assert r.status_code == 200, r.text
        login = Form(r.text)
        assert "Practitioner/lege-1" in login.radios["person"]
        r = login.submit(browser, str(r.url), person="Practitioner/lege-1")
        assert r.status_code == 200 and "Velg pasient" in r.text, r.text
        picker = Form(r.text)
        assert set(picker.radios["patient"]) == {f"Patient/{other['id']}",
                                                  f"Patient/{picked['id']}"}
        r = picker.submit(browser, str(r.url), patient=f"Patient/{picked['id']}")
        assert r.status_code == 302, r.text
        callback = r.headers["location"]
    assert callback.startswith(REDIRECT + "?")
    assert "code" in parse_qs(urlsplit(callback).query)

    smart.handle_callback(callback)
    ctx = smart.launch_context
    print(f"\ntoken response: scope={ctx.get('scope')!r} patient={ctx.get('patient')!r} "
          f"token_type={ctx.get('token_type')!r} refresh_token="
          f"{'yes' if smart.server.auth.refresh_token else 'no'} "
          f"id_token={'yes' if ctx.get('id_token') else 'no'}")
    assert smart.ready
    assert ctx["patient"] == picked["id"]
    assert set(ctx["scope"].split()) == set(SCOPE.split())
    assert smart.server.auth.refresh_token

    patient = Patient.read(picked["id"], smart.server)
    assert patient.id == picked["id"] and patient.name[0].family == "Fhirclientsen"
    assert smart.patient.id == picked["id"]  # fhirclient's own launch-context patient
    print(f"fhirclient read Patient/{patient.id}: {patient.name[0].given[0]} "
          f"{patient.name[0].family}")

    # the token is confined to the picked patient
    with pytest.raises(Exception):
        Patient.read(other["id"], smart.server)
    found = Patient.where({}).perform_resources(smart.server)
    assert [p.id for p in found] == [picked["id"]]
