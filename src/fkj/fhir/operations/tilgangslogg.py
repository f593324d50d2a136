"""``$tilgangslogg``: who has accessed a patient's information (the audit log, read-only).

* ``GET [base]/Patient/{id}/$tilgangslogg`` — for the citizen themself (a citizen token whose
  ``pid`` is the patient's fødselsnummer, or any token bound to ``patient = id``), and for the
  municipality (role ``leder`` or a system client). Answers a ``Parameters`` resource with one
  ``access`` per audit record: when, who (name and HPR-nummer, or the client), role, unit,
  client app, what (resource types), interaction, purpose, emergency or not, outcome.
  Parameters: ``since``, ``until`` (date or instant), ``_count`` (default 100, max 1000).
* ``GET [base]/$tilgangslogg?patient=&agent=&since=&until=&purpose=&outcome=&_count=`` — the
  municipality only (``leder`` or a system client): a ``collection`` Bundle of the matching
  AuditEvents, newest first (e.g. ``purpose=BTG`` lists emergency accesses for follow-up).

Every other caller gets 403. The call is itself audited like any other access.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from fkj.errors import Forbidden, InvalidSearch, NotFound
from fkj.fhir.request import FhirRequest, FhirResponse
from fkj.model.identifiers import HPR_SYSTEM, PID_SYSTEMS

DEFINITION = {"name": "tilgangslogg", "levels": ("system", "instance"), "methods": ("GET",),
              "reads": False,
              "url": "https://fkj.no/fhir/OperationDefinition/tilgangslogg"}

#: a citizen's own Patient carries their pid under one of these (fødselsnummer, D-nummer)
FNR_SYSTEMS = PID_SYSTEMS
CLIENT_ID_SYSTEM = "urn:ietf:params:oauth:client-id"
EMERGENCY = {"BTG", "ETREAT"}
MUNICIPAL_ROLES = {"leder"}


def is_municipal(p) -> bool:
    """Municipal follow-up: a leader (role ``leder``) or a system client (no person)."""
    if MUNICIPAL_ROLES & set(p.roles or ()):
        return True
    if p.kind == "system":
        return True
    return (p.kind == "client" and not p.hpr_number and not p.pid
            and any(s.startswith("system/") for s in p.scopes))


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    p = repo.principal
    q: dict[str, str] = {}
    for k, v in req.query:
        q.setdefault(k, v)
    since = _bound(q.get("since"), "since", end=False)
    until = _bound(q.get("until"), "until", end=True)
    limit = _count(q.get("_count"))
    engine = repo.services.engine
    from fkj.security.audit import flush_audit
    from fkj.security.audit.query import search_audit

    flush_audit(repo.services)  # this process's accesses are in the chain before we look

    if rid is None:
        if not is_municipal(p):
            raise Forbidden("the audit log can only be searched by the municipality "
                            "(role leder or a system client)")
        rows = search_audit(engine, repo.tenant, patient=q.get("patient") or None,
                            agent=q.get("agent") or None, since_us=since, until_us=until,
                            limit=limit, purpose=q.get("purpose") or None,
                            outcome=q.get("outcome") or None)
        return FhirResponse(200, {
            "resourceType": "Bundle", "type": "collection", "total": len(rows),
            "entry": [{"fullUrl": f"urn:uuid:{r['event']['id']}", "resource": r["event"]}
                      for r in rows]})

    if rtype != "Patient":
        raise NotFound("$tilgangslogg is only available on Patient")
    patient = _stored_patient(repo, rid)
    if not _may_see(p, rid, patient):
        raise Forbidden("you can only see who has accessed your own information")
    if patient is None:
        raise NotFound(f"Patient/{rid} is not known")
    rows = search_audit(engine, repo.tenant, patient=f"Patient/{rid}", since_us=since,
                        until_us=until, limit=limit)
    names = _NameCache(repo)
    params = [{"name": "patient", "valueReference": {"reference": f"Patient/{rid}"}},
              {"name": "count", "valueInteger": len(rows)}]
    params += [{"name": "access", "part": _access(r, names)} for r in rows]
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": params})


def _may_see(p, rid: str, patient: dict | None) -> bool:
    if is_municipal(p):
        return True
    if p.patient and p.patient == rid:
        return True
    if p.kind == "citizen" and p.pid and patient is not None:
        for ident in patient.get("identifier") or ():
            if (isinstance(ident, dict) and ident.get("system") in FNR_SYSTEMS
                    and ident.get("value") == p.pid):
                return True
    return False


def _stored_patient(repo, rid: str) -> dict | None:
    import orjson

    from fkj.store import resources as sql
    from fkj.store.backend import scope

    with scope(repo.services.engine, repo.tenant) as conn:
        cur = sql.get_current(conn, repo.tenant, "Patient", rid)
    if cur is None or cur.deleted:
        return None
    return orjson.loads(cur.content)


class _NameCache:
    """Practitioner names for ``who.reference`` (looked up once per call)."""

    def __init__(self, repo):
        self.repo = repo
        self.cache: dict[str, str | None] = {}

    def name(self, ref: str | None) -> str | None:
        if not ref or not ref.startswith("Practitioner/"):
            return None
        if ref not in self.cache:
            self.cache[ref] = None
            try:
                import orjson

                from fkj.store import resources as sql
                from fkj.store.backend import scope
                with scope(self.repo.services.engine, self.repo.tenant) as conn:
                    cur = sql.get_current(conn, self.repo.tenant, "Practitioner",
                                          ref.split("/", 1)[1])
                if cur is not None and not cur.deleted:
                    for n in orjson.loads(cur.content).get("name") or ():
                        text = n.get("text") or " ".join(
                            [*(n.get("given") or ()), n.get("family") or ""]).strip()
                        if text:
                            self.cache[ref] = text
                            break
            except Exception:  # noqa: BLE001 - a name is a nicety
                pass
        return self.cache[ref]


def _access(row: dict, names: _NameCache) -> list[dict]:
    event = row["event"]
    agents = event.get("agent") or []
    user = next((a for a in agents if a.get("requestor") and (a.get("type") or {}).get(
        "coding", [{}])[0].get("code") == "IRCP"), None)
    client = next((a for a in agents if ((a.get("who") or {}).get("identifier") or {}).get(
        "system") == CLIENT_ID_SYSTEM), None)
    parts: list[dict] = [{"name": "time", "valueInstant": event.get("recorded")}]
    if user is not None:
        who = user.get("who") or {}
        ident = who.get("identifier") or {}
        name = names.name(who.get("reference"))
        parts.append({"name": "who", "valueString": name or who.get("display")
                      or ident.get("value") or "ukjent"})
        if ident.get("system") == HPR_SYSTEM:
            parts.append({"name": "hpr", "valueIdentifier": {"system": HPR_SYSTEM,
                                                             "value": ident.get("value")}})
        for role in user.get("role") or ():
            if role.get("text"):
                parts.append({"name": "role", "valueString": role["text"]})
        unit = (user.get("location") or {}).get("display")
        if unit:
            parts.append({"name": "unit", "valueString": unit})
    elif client is not None:
        parts.append({"name": "who", "valueString": (client.get("who") or {}).get("display")
                      or "ukjent klient"})
        org = (client.get("location") or {}).get("display")
        if org:
            parts.append({"name": "unit", "valueString": org})
    if client is not None:
        cid = ((client.get("who") or {}).get("identifier") or {}).get("value")
        if cid:
            parts.append({"name": "client", "valueString": cid})
    for t in _types(event):
        parts.append({"name": "resourceType", "valueCode": t})
    parts.append({"name": "action", "valueCode": event.get("action")})
    parts.append({"name": "interaction", "valueCode": row.get("subtype")})
    purposes = (row.get("purpose") or "").split()
    for code in purposes:
        parts.append({"name": "purpose", "valueCode": code})
    parts.append({"name": "emergency", "valueBoolean": bool(EMERGENCY & set(purposes))})
    parts.append({"name": "outcome", "valueCode": event.get("outcome")})
    if event.get("outcomeDesc"):
        parts.append({"name": "outcomeDesc", "valueString": event["outcomeDesc"]})
    return parts


def _types(event: dict) -> list[str]:
    out: list[str] = []
    for e in event.get("entity") or ():
        if (e.get("role") or {}).get("code") != "4":
            continue
        t = e.get("name") or ((e.get("what") or {}).get("reference") or "").split("/")[0]
        if t and t not in out:
            out.append(t)
    return out


def _bound(value: str | None, name: str, *, end: bool) -> int | None:
    if not value:
        return None
    from fkj.security.audit.events import parse_instant
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
            us = parse_instant(dt.isoformat())
            return us + 86_400_000_000 - 1 if end else us
        return parse_instant(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSearch(f"{name} must be a date or an instant, got {value!r}",
                            expression=name) from None


def _count(value: str | None) -> int:
    if not value:
        return 100
    if not value.isdigit() or int(value) < 1:
        raise InvalidSearch(f"_count must be a positive integer, got {value!r}",
                            expression="_count")
    return min(int(value), 1000)
