"""Simulators of the national services (development and tests only): each one a small FHIR
server (Starlette) holding synthetic data consistent with ``fkj seed`` — the same persons
(found by fødselsnummer / D-nummer identifier), with the service's own resource ids.

* ``kjernejournal``: critical information — AllergyIntolerance, HLR-minus Consent (7650
  cat. 11), critical Conditions (cat. 3/4/5/10), Flag (cat. 9), ongoing-treatment Procedures
  (cat. 6), implant DeviceUseStatements;
* ``pll``: Pasientens legemiddelliste — MedicationStatement;
* ``provesvar``: Pasientens prøvesvar — laboratory Observations.

Endpoints: ``POST /token`` (client_credentials; form or HTTP Basic), ``GET /metadata``,
``GET /health`` (never affected by faults), ``GET|POST /_search`` (``_type``,
``patient:identifier=system|value`` or ``patient=id``), ``GET|POST /{type}[/_search]`` and
``GET /{type}/{id}``. Every FHIR call needs a token from ``/token``.

Faults (``fault=``): ``slow`` (every FHIR answer waits ``slow_ms``), ``errors`` (HTTP 503),
``hangs`` (never answers), ``down`` (handled by the CLI: nothing listens on the port).
``delay_ms`` adds a base latency to every FHIR answer.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KINDS = ("kjernejournal", "pll", "provesvar")
FAULTS = ("slow", "errors", "hangs", "down")
PREFIX = {"kjernejournal": "kj-", "pll": "pll-", "provesvar": "pps-"}
KRITISK_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7650"
KJ_PROFILE = "http://nhn.no/kj/fhir/StructureDefinition/"
FHIR_JSON = "application/fhir+json"


def _kritisk_codes(resource: dict) -> set[str]:
    cats = resource.get("category")
    if isinstance(cats, dict):
        cats = [cats]
    out = set()
    for c in cats or []:
        if not isinstance(c, dict):
            continue
        for coding in c.get("coding", []) or []:
            if coding.get("system") == KRITISK_SYSTEM:
                out.add(coding.get("code"))
    return out


def select_for(kind: str, resources: list[dict]) -> list[dict]:
    """The part of a synthetic population a national service holds (patients included)."""
    devices = {r["id"]: r for r in resources if r["resourceType"] == "Device"}
    out = []
    for r in resources:
        t = r["resourceType"]
        keep, profile = False, None
        if t == "Patient":
            keep = True
        elif kind == "kjernejournal":
            cats = _kritisk_codes(r)
            if t == "AllergyIntolerance":
                keep, profile = True, "KjAllergyIntolerance"
            elif t == "Consent" and "11" in cats:
                keep, profile = True, "KjConsentBehandlingsavklaring"
            elif t == "Condition" and cats & {"3", "4", "5", "10"}:
                keep = True
                profile = ("KjConditionComplicationsOfAnesthesia" if cats & {"3", "4"} else
                           "KjConditionInfection" if "10" in cats else
                           "KjConditionCriticalMedicalCondition")
            elif t == "Flag" and "9" in cats:
                keep, profile = True, "KjFlag"
            elif t == "Procedure" and "6" in cats:
                keep, profile = True, "KjProcedure"
            elif t == "DeviceUseStatement":
                dev = devices.get(str((r.get("device") or {}).get("reference", "")).split("/")[-1])
                codes = {c.get("code") for c in ((dev or {}).get("type") or {}).get("coding", [])}
                if "pacemaker" in codes:
                    keep, profile = True, "KjDeviceUseStatement"
        elif kind == "pll":
            keep = t in ("MedicationStatement", "MedicationRequest")
        elif kind == "provesvar":
            keep = t == "Observation" and any(
                c.get("code") == "laboratory" for cat in r.get("category", []) or []
                for c in cat.get("coding", []) or [])
        if keep:
            r = orjson.loads(orjson.dumps(r))
            if profile:
                r.setdefault("meta", {})["profile"] = [KJ_PROFILE + profile]
            out.append(r)
    return out


def _rewrite_ids(obj, prefix: str):
    """Give every resource and every relative reference the service's own id prefix."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "reference" and isinstance(v, str) and "/" in v and not v.startswith(
                    ("http:", "https:", "#", "urn:")):
                t, _, i = v.partition("/")
                out[k] = f"{t}/{prefix}{i}"
            else:
                out[k] = _rewrite_ids(v, prefix)
        return out
    if isinstance(obj, list):
        return [_rewrite_ids(x, prefix) for x in obj]
    return obj


class Dataset:
    """A national service's records: by (type, id), by the service's patient id, and the
    person found by fødselsnummer / D-nummer. A national service knows a person once: when
    two synthetic municipalities happen to hold the same person number, the second Patient
    is an alias of the first and its items are filed under the first."""

    def __init__(self, kind: str, resources: list[dict]):
        self.kind = kind
        self.prefix = PREFIX[kind]
        self.by_key: dict[tuple[str, str], dict] = {}
        self.by_patient: dict[str, list[dict]] = {}
        self.patient_by_identifier: dict[str, str] = {}
        self.alias: dict[str, str] = {}
        for r in select_for(kind, resources):
            r = _rewrite_ids(r, self.prefix)
            r["id"] = self.prefix + r["id"]
            self._file(r)

    def _file(self, r: dict) -> None:
        if r["resourceType"] == "Patient":
            known = next((self.patient_by_identifier[f"{i.get('system')}|{i.get('value')}"]
                          for i in r.get("identifier", []) or []
                          if f"{i.get('system')}|{i.get('value')}" in self.patient_by_identifier),
                         None)
            if known is not None and known != r["id"]:
                self.alias[r["id"]] = known
                return
            self.by_key[(r["resourceType"], r["id"])] = r
            for ident in r.get("identifier", []) or []:
                self.patient_by_identifier[f"{ident.get('system')}|{ident.get('value')}"] = \
                    r["id"]
                self.patient_by_identifier.setdefault(str(ident.get("value")), r["id"])
            return
        self.by_key[(r["resourceType"], r["id"])] = r
        ref = (r.get("patient") or r.get("subject") or {}).get("reference", "")
        if ref.startswith("Patient/"):
            pid = self.alias.get(ref[8:], ref[8:])
            self.by_patient.setdefault(pid, []).append(r)

    @classmethod
    def synthetic(cls, kind: str, tenant: str | list[str], patients: int, seed: int,
                  extra: list[dict] | None = None) -> Dataset:
        """The service's part of the synthetic population of one or more municipalities
        (``tenant``: a kommunenummer, a comma-separated list, or a list) as ``fkj seed``
        creates it, plus ``extra`` resources written with the seed's ids (e.g.
        ``"subject": {"reference": "Patient/4601-pat-1"}``) — facts only this service
        knows (tests, demos). They pass the same selection as the seed's resources."""
        from fkj.seed.generator import generate
        tenants = [t.strip() for t in tenant.split(",")] if isinstance(tenant, str) \
            else list(tenant)
        resources = [r for t in tenants if t for r in generate(t, patients, seed)]
        return cls(kind, resources + list(extra or ()))

    def add(self, resource: dict) -> None:
        """Add an item as the service holds it (its own ids; tests: a fact only this service
        knows)."""
        self._file(resource)


def _bundle(resources: list[dict], base: str) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def _outcome(status: int, code: str, text: str) -> Response:
    return JSONResponse({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": text}]}, status_code=status,
        media_type=FHIR_JSON)


def create_simulator(kind: str, dataset: Dataset, *, fault: str | None = None,
                     delay_ms: int = 0, slow_ms: int = 3000, client_id: str = "fkj",
                     client_secret: str = "fkj-secret", base_url: str = "") -> Starlette:
    if kind not in KINDS:
        raise ValueError(f"unknown service {kind!r}; one of {', '.join(KINDS)}")
    tokens: dict[str, float] = {}
    state = {"fault": fault, "calls": 0}

    async def faulted():
        state["calls"] += 1
        f = state["fault"]
        if f == "hangs":
            await asyncio.sleep(3600)
        if f == "slow":
            await asyncio.sleep(slow_ms / 1000)
        elif delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if f == "errors":
            return _outcome(503, "transient", f"{kind} simulator: fault mode 'errors'")
        return None

    def base_of(request: Request) -> str:
        return base_url or str(request.base_url).rstrip("/")

    async def params_of(request: Request) -> list[tuple[str, str]]:
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            body = (await request.body()).decode()
            params += parse_qsl(body, keep_blank_values=True)
        return params

    def authorised(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return False
        exp = tokens.get(auth[7:].strip())
        return exp is not None and exp > time.time()

    async def token(request: Request) -> Response:
        bad = await faulted()
        if bad:
            return bad
        form = dict(await params_of(request))
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:  # noqa: BLE001
                cid = secret = None
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if cid != client_id or secret != client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        tok = secrets.token_urlsafe(24)
        tokens[tok] = time.time() + 300
        return JSONResponse({"access_token": tok, "token_type": "Bearer", "expires_in": 300,
                             "scope": "system/*.rs"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": kind, "fault": state["fault"],
                             "calls": state["calls"]})

    async def metadata(request: Request) -> Response:
        types = sorted({t for t, _ in dataset.by_key})
        return JSONResponse({"resourceType": "CapabilityStatement", "status": "active",
                             "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
                             "software": {"name": f"FKJ {kind} simulator"},
                             "rest": [{"mode": "server", "resource": [
                                 {"type": t, "interaction": [{"code": "read"},
                                                             {"code": "search-type"}]}
                                 for t in types]}]}, media_type=FHIR_JSON)

    def _search(types: list[str] | None, params: list[tuple[str, str]]) -> list[dict]:
        pids: set[str] | None = None
        for k, v in params:
            if k in ("patient:identifier", "subject:identifier", "patient.identifier",
                     "subject.identifier"):
                pid = dataset.patient_by_identifier.get(v)
                pids = (pids or set()) & {pid} if pids is not None else {pid} if pid else set()
            elif k in ("patient", "subject"):
                pid = v.split("/")[-1]
                pid = dataset.alias.get(pid, pid)
                pids = (pids or set()) & {pid} if pids is not None else {pid}
        out = []
        if types and types == ["Patient"]:
            ident = next((v for k, v in params if k == "identifier"), None)
            pid = dataset.patient_by_identifier.get(ident or "") if ident else None
            if ident is not None:
                return [dataset.by_key[("Patient", pid)]] if pid else []
            if pids is not None:
                return [dataset.by_key[("Patient", p)] for p in pids
                        if ("Patient", p) in dataset.by_key]
            return [r for (t, _), r in dataset.by_key.items() if t == "Patient"]
        if pids is None:
            return []  # the services answer per patient only
        for pid in pids:
            for r in dataset.by_patient.get(pid, []):
                if not types or r["resourceType"] in types:
                    out.append(r)
        return out

    async def system_search(request: Request) -> Response:
        if not authorised(request):
            return _outcome(401, "login", "a bearer token from /token is required")
        bad = await faulted()
        if bad:
            return bad
        params = await params_of(request)
        types = None
        for k, v in params:
            if k == "_type":
                types = [t.strip() for t in v.split(",") if t.strip()]
        return JSONResponse(_bundle(_search(types, params), base_of(request)),
                            media_type=FHIR_JSON)

    async def type_search(request: Request) -> Response:
        if not authorised(request):
            return _outcome(401, "login", "a bearer token from /token is required")
        bad = await faulted()
        if bad:
            return bad
        rtype = request.path_params["rtype"]
        return JSONResponse(_bundle(_search([rtype], await params_of(request)),
                                    base_of(request)), media_type=FHIR_JSON)

    async def read(request: Request) -> Response:
        if not authorised(request):
            return _outcome(401, "login", "a bearer token from /token is required")
        bad = await faulted()
        if bad:
            return bad
        r = dataset.by_key.get((request.path_params["rtype"], request.path_params["rid"]))
        if r is None:
            return _outcome(404, "not-found", "not known")
        return JSONResponse(r, media_type=FHIR_JSON)

    routes = [
        Route("/health", health),
        Route("/token", token, methods=["POST"]),
        Route("/metadata", metadata),
        Route("/_search", system_search, methods=["GET", "POST"]),
        Route("/", system_search, methods=["GET"]),
        Route("/{rtype}/_search", type_search, methods=["POST"]),
        Route("/{rtype}/{rid}", read),
        Route("/{rtype}", type_search, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.dataset = dataset
    app.state.sim = state
    return app
