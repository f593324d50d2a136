"""Adapters for national FHIR services (Kjernejournal kritisk informasjon, Pasientens
legemiddelliste, Pasientens prøvesvar): real HTTP clients (httpx).

Per call: an access token by ``client_credentials`` against the service's token endpoint
(cached until shortly before it expires), then one ``POST {base}/_search`` with
``_type=…`` and ``patient:identifier=<system>|<fødselsnummer>`` as a form body — the person
number never goes into a URL. Every call keeps to the caller's deadline and to the adapter's
own per-call timeout; transport errors and 5xx answers are retried while time remains; a
circuit breaker stops calling a service that keeps failing; successful answers are cached
for a short time. Items are stamped with ``meta.source`` = the service's base URL, and
references to the service's own Patient are rewritten to the local patient.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from fkj.sources.base import CircuitBreaker, PatientKey, SourceResult, TtlCache, stamp_source

#: the national services the adapters know: name → (display, resource types)
KNOWN: dict[str, tuple[str, tuple[str, ...]]] = {
    "kjernejournal": ("Kjernejournal – kritisk informasjon",
                      ("AllergyIntolerance", "Consent", "Condition", "Flag", "Procedure",
                       "DeviceUseStatement")),
    "pll": ("Pasientens legemiddelliste", ("MedicationStatement", "MedicationRequest")),
    "provesvar": ("Pasientens prøvesvar", ("Observation", "DiagnosticReport")),
}


@dataclass
class AdapterConfig:
    name: str
    base_url: str
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    display: str | None = None
    types: tuple[str, ...] | None = None
    #: per HTTP call, milliseconds (the overview's remaining budget caps it further)
    timeout_ms: int = 700
    retries: int = 1
    cache_ttl_s: float = 10.0
    breaker_threshold: int = 3
    breaker_reset_s: float = 10.0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        name = d["name"]
        base = d.get("base_url") or d.get("url")
        if not base:
            raise ValueError(f"source {name!r}: base_url is required")
        base = base.rstrip("/")
        types = d.get("types")
        return cls(name=name, base_url=base,
                   token_url=d.get("token_url") or f"{base}/token",
                   client_id=d.get("client_id"), client_secret=d.get("client_secret"),
                   display=d.get("display"), types=tuple(types) if types else None,
                   timeout_ms=int(d.get("timeout_ms", 700)), retries=int(d.get("retries", 1)),
                   cache_ttl_s=float(d.get("cache_ttl_s", 10.0)),
                   breaker_threshold=int(d.get("breaker_threshold", 3)),
                   breaker_reset_s=float(d.get("breaker_reset_s", 10.0)))


class SourceUnavailable(Exception):
    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class FhirSourceAdapter:
    def __init__(self, config: AdapterConfig, client: httpx.Client | None = None):
        known = KNOWN.get(config.name, (config.name, ()))
        self.config = config
        self.name = config.name
        self.display = config.display or known[0]
        self.types = config.types or known[1]
        self.url = config.base_url
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_reset_s)
        self.cache = TtlCache(config.cache_ttl_s)
        self._client = client or httpx.Client(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"Accept": "application/fhir+json"})
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ public
    def fetch(self, patient: PatientKey, deadline: float) -> SourceResult:
        t0 = time.monotonic()
        out = SourceResult(self.name, self.display, self.url)
        key = (patient.token, self.types)
        try:
            if not patient.token:
                out.status, out.detail = "not-found", "the patient has no person number"
                return out
            cached = self.cache.get(key)
            if cached is not None:
                out.items, out.cached = self._localise(cached, patient), True
                return out
            if not self.breaker.allow():
                raise SourceUnavailable("circuit-open", f"{self.display} is failing; calls are "
                                        f"paused for up to {self.config.breaker_reset_s:g} s")
            try:
                items = self._search(patient, deadline)
            except SourceUnavailable:
                self.breaker.failure()
                raise
            self.breaker.success()
            self.cache.put(key, items)
            out.items = self._localise(items, patient)
        except SourceUnavailable as e:
            out.status, out.detail = e.status, e.detail
        finally:
            out.elapsed_ms = (time.monotonic() - t0) * 1000
        return out

    # ------------------------------------------------------------------ HTTP
    def _timeout(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0.005:
            raise SourceUnavailable("timeout", f"{self.display} did not answer within the "
                                    "time budget")
        return min(left, self.config.timeout_ms / 1000)

    def _call(self, method: str, url: str, deadline: float, *, auth: bool = True,
              data: dict | None = None) -> httpx.Response:
        attempts = 1 + max(0, self.config.retries)
        last = "no attempt"
        for attempt in range(attempts):
            headers = {}
            if auth:
                headers["Authorization"] = f"Bearer {self._access_token(deadline)}"
            try:
                t = self._timeout(deadline)
                resp = self._client.request(method, url, data=data, headers=headers,
                                            timeout=httpx.Timeout(t, connect=min(t, 0.5)))
            except httpx.TimeoutException:
                # a timed-out call is not retried: the budget is spent or the service hangs
                raise SourceUnavailable("timeout", f"{self.display} did not answer in time")
            except httpx.TransportError as e:
                last = f"{self.display} is unreachable ({type(e).__name__})"
                status = "down"
            else:
                if resp.status_code == 401 and auth and attempt + 1 < attempts:
                    self._token = None
                    last, status = f"{self.display} refused the token", "error"
                    continue
                if resp.status_code < 500 and resp.status_code != 429:
                    return resp
                last = f"{self.display} answered HTTP {resp.status_code}"
                status = "error"
            if attempt + 1 < attempts:
                pause = min(0.02 * (2 ** attempt), 0.1)
                if deadline - time.monotonic() <= pause + 0.01:
                    break
                time.sleep(pause)
        raise SourceUnavailable(status, last)

    def _access_token(self, deadline: float) -> str:
        tok = self._token
        if tok and tok[1] > time.monotonic():
            return tok[0]
        with self._token_lock:
            tok = self._token
            if tok and tok[1] > time.monotonic():
                return tok[0]
            resp = self._call("POST", self.config.token_url, deadline, auth=False, data={
                "grant_type": "client_credentials", "client_id": self.config.client_id or "",
                "client_secret": self.config.client_secret or ""})
            if resp.status_code != 200:
                raise SourceUnavailable("error", f"{self.display}: token request refused "
                                        f"(HTTP {resp.status_code})")
            body = resp.json()
            lifetime = float(body.get("expires_in", 300))
            self._token = (body["access_token"], time.monotonic() + max(1.0, lifetime - 30))
            return self._token[0]

    def _search(self, patient: PatientKey, deadline: float) -> list[dict]:
        resp = self._call("POST", f"{self.url}/_search", deadline, data={
            "_type": ",".join(self.types), "patient:identifier": patient.token,
            "_count": "500"})
        if resp.status_code == 404:
            return []
        if resp.status_code >= 400:
            raise SourceUnavailable("error", f"{self.display} answered HTTP {resp.status_code}")
        try:
            bundle = resp.json()
        except ValueError:
            raise SourceUnavailable("error", f"{self.display} answered with invalid JSON")
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise SourceUnavailable("error", f"{self.display} did not answer with a Bundle")
        return [e["resource"] for e in bundle.get("entry", []) or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") in self.types]

    def _localise(self, items: list[dict], patient: PatientKey) -> list[dict]:
        """Copies of the items, stamped with this source. The service's own Patient (the
        person the search was for: whatever ``patient``/``subject`` of the items name) becomes
        the local patient everywhere in the item (``patient``/``subject`` keep the person
        number as identifier too), so the access policy judges the item on the local
        patient's care relations, blocks and grants. References to any *other* Patient stay
        as they are — the policy then finds no care relation to them and hides the item."""
        import copy
        theirs: set[str] = set()
        for item in items:
            for fld in ("patient", "subject"):
                ref = item.get(fld)
                if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/"):
                    theirs.add(ref["reference"])
        local_ref = f"Patient/{patient.local_id}"
        out = []
        for item in items:
            r = copy.deepcopy(item)
            for fld in ("patient", "subject"):
                ref = r.get(fld)
                if isinstance(ref, dict) and (ref.get("reference") in theirs
                                              or _names_person(ref, patient)):
                    r[fld] = {"reference": local_ref,
                              "identifier": {"system": patient.identifier_system,
                                             "value": patient.identifier_value}}
            if theirs:
                _rewrite_refs(r, theirs, local_ref)
            stamp_source(r, self.url, self.display)
            out.append(r)
        return out


def _names_person(ref: dict, patient: PatientKey) -> bool:
    """A reference naming the person the search was for by identifier alone (national
    services refer to persons by fødselsnummer): it is the local patient too, so the policy
    judges the item on her (an unresolved person reference would hide it from everyone)."""
    from fkj.model.identifiers import PERSON_IDENTIFIER_SYSTEMS as KINDS
    ident = ref.get("identifier")
    if "reference" in ref or not isinstance(ident, dict) or not patient.identifier_value:
        return False
    kind = KINDS.get(ident.get("system"))  # type: ignore[arg-type]
    return (kind is not None and kind == KINDS.get(patient.identifier_system or "")
            and ident.get("value") == patient.identifier_value)


def _rewrite_refs(obj, theirs: set[str], local_ref: str) -> None:
    """Point every reference to one of ``theirs`` (the service's ids of the patient) at the
    local patient (in place; e.g. Consent.performer, AllergyIntolerance.asserter)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "reference" and isinstance(v, str):
                if v in theirs:
                    obj[k] = local_ref
            elif isinstance(v, (dict, list)):
                _rewrite_refs(v, theirs, local_ref)
    elif isinstance(obj, list):
        for x in obj:
            _rewrite_refs(x, theirs, local_ref)
