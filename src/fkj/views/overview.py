"""``Patient/{id}/$oversikt``: one overview compiled from every source (DESIGN §7).

The sources (local store + national-service adapters) are called concurrently; the
overview answers within its total budget whatever they do. The result is a FHIR document
Bundle: Composition first, then the Patient, the items of every section, one Provenance per
source that contributed, and — when a source did not answer — an OperationOutcome naming it
(the Composition's text and the affected sections' text name it too).

Sections, in order (codes in :data:`SECTION_SYSTEM`):

1. ``kritisk`` — critical information: treatment limits (HLR-minus, Consent 7650 cat. 8/11)
   first, then allergies and reactions, critical conditions (7650 cat. 3/4/5/10), other
   (Flag cat. 9, ongoing treatment cat. 6, implants);
2. ``tjenester`` — decided and ongoing municipal services (ServiceRequest + EpisodeOfCare)
   with unit (Organization + HealthcareService), period and contact;
3. ``diagnoser`` — diagnoses and treatment history (Condition, Procedure, Encounter);
4. ``legemidler`` — current medications; 5. ``provesvar`` — recent lab results (newest per
   test, last 24 months); 6. ``kartlegging`` — assessments (QuestionnaireResponse, survey
   Observations); 7. ``hjelpemidler`` — assistive devices; 8. ``team`` — care team and next
   of kin.

The same fact from two sources appears once, its ``kilde`` extensions listing both; facts
that contradict each other (same allergy, different criticality…) appear side by side, each
with its source and a ``motstridende-opplysning`` extension pointing to the other.

The access policy applies to local and federated items alike: local items come through the
repository's searches (policy filters in SQL), federated items through
:class:`FederatedPolicy` (the same decision, taken on the local patient) before they are
grouped, so a hidden item never shows up as a source, a conflict or a Provenance target.
When a sperring hides something from the caller, the overview says only that blocked
information exists (an OperationOutcome issue ``suppressed`` and a line in the Composition
text).
"""

from __future__ import annotations

import concurrent.futures as cf
import html
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from fkj.model.identifiers import DNR_SYSTEM, FNR_SYSTEM
from fkj.security.policy import BLOCKED_TEXT
from fkj.sources.base import (
    CONFLICT_EXT,
    PatientKey,
    SourceResult,
    add_source_ext,
    item_sources,
    stamp_source,
)
from fkj.sources.local import LocalSource

SECTION_SYSTEM = "http://fkj.no/fhir/CodeSystem/oversikt-seksjon"
KRITISK_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7650"
#: the patient's key for national services: fødselsnummer first, then D-nummer
FNR_SYSTEMS = (FNR_SYSTEM, DNR_SYSTEM)

SECTIONS: list[tuple[str, str]] = [
    ("kritisk", "Kritisk informasjon"),
    ("tjenester", "Vedtatte og pågående kommunale tjenester"),
    ("diagnoser", "Diagnoser og behandlingshistorikk"),
    ("legemidler", "Legemidler i bruk"),
    ("provesvar", "Nylige prøvesvar"),
    ("kartlegging", "Kartlegginger og vurderinger"),
    ("hjelpemidler", "Hjelpemidler"),
    ("team", "Behandlingsteam og pårørende"),
]
#: which sections a national source feeds (to name a missing source where it matters)
SOURCE_SECTIONS = {"kjernejournal": ("kritisk",), "pll": ("legemidler",),
                   "provesvar": ("provesvar",)}
_TYPE_SECTIONS = {"AllergyIntolerance": "kritisk", "Consent": "kritisk", "Flag": "kritisk",
                  "Condition": "diagnoser", "Procedure": "diagnoser", "Encounter": "diagnoser",
                  "ServiceRequest": "tjenester", "EpisodeOfCare": "tjenester",
                  "MedicationStatement": "legemidler", "MedicationRequest": "legemidler",
                  "Observation": "provesvar", "DiagnosticReport": "provesvar",
                  "QuestionnaireResponse": "kartlegging", "DeviceUseStatement": "hjelpemidler",
                  "Device": "hjelpemidler", "CareTeam": "team", "RelatedPerson": "team"}
_ISSUE_CODE = {"timeout": "timeout", "down": "transient", "error": "exception",
               "circuit-open": "transient"}
_STATUS_TEXT = {"timeout": "svarte ikke innen tidsfristen", "down": "er utilgjengelig",
                "error": "svarte med feil", "circuit-open": "er midlertidig koblet ut etter "
                "gjentatte feil"}
LAB_MONTHS = 24
MAX_ENCOUNTERS = 50
MAX_LABS = 40


# --------------------------------------------------------------------------- helpers
def _codes(cc) -> list[tuple[str | None, str | None]]:
    if isinstance(cc, list):
        return [c for x in cc for c in _codes(x)]
    if not isinstance(cc, dict):
        return []
    return [(c.get("system"), c.get("code")) for c in cc.get("coding", []) or []]


def _kritisk(r: dict) -> set[str]:
    return {c for s, c in _codes(r.get("category")) if s == KRITISK_SYSTEM}


def _concept(cc) -> str:
    """A comparable token for a CodeableConcept: the first coding, else the text."""
    if not isinstance(cc, dict):
        return ""
    for c in cc.get("coding", []) or []:
        if c.get("code"):
            return f"{c.get('system')}|{c.get('code')}"
    return (cc.get("text") or "").strip().lower()


def _text(cc, default: str = "") -> str:
    if not isinstance(cc, dict):
        return default
    if cc.get("text"):
        return cc["text"]
    for c in cc.get("coding", []) or []:
        if c.get("display"):
            return c["display"]
        if c.get("code"):
            return c["code"]
    return default


def _status(cc) -> str | None:
    return next((c for _, c in _codes(cc)), None)


def _date(r: dict, *fields: str) -> str:
    for f in fields:
        v = r.get(f)
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and v.get("start"):
            return v["start"]
    return ""


def _is_treatment_limit(r: dict) -> bool:
    if r.get("resourceType") != "Consent":
        return False
    if _kritisk(r) & {"8", "11"}:
        return True
    return any(t.get("code") == "hlr-minus" for t in (r.get("meta") or {}).get("tag", []) or [])


def _is_implant(r: dict) -> bool:
    prof = " ".join((r.get("meta") or {}).get("profile", []) or [])
    dev = (r.get("device") or {}).get("display", "") or ""
    return "KjDeviceUseStatement" in prof or "pacemaker" in dev.lower() or \
        "implantat" in dev.lower()


def classify(r: dict) -> tuple[str, int] | None:
    """(section, rank inside the section) or None when the item is not shown."""
    t = r.get("resourceType")
    if t == "Consent":
        if _is_treatment_limit(r) and r.get("status") in ("active", "proposed", "draft"):
            return "kritisk", 0
        return None
    if t == "AllergyIntolerance":
        if _status(r.get("clinicalStatus")) in ("inactive", "resolved") or \
                _status(r.get("verificationStatus")) in ("refuted", "entered-in-error"):
            return None
        return "kritisk", 1
    if t == "Condition":
        if _status(r.get("verificationStatus")) in ("refuted", "entered-in-error"):
            return None
        if _kritisk(r) & {"3", "4", "5", "10"}:
            return ("kritisk", 2) if _status(r.get("clinicalStatus")) in (
                None, "active", "recurrence", "relapse") else ("diagnoser", 0)
        return "diagnoser", 0
    if t == "Flag":
        return ("kritisk", 3) if r.get("status") == "active" else None
    if t == "Procedure":
        if "6" in _kritisk(r) and r.get("status") in ("in-progress", "preparation", "on-hold"):
            return "kritisk", 3
        return ("diagnoser", 1) if r.get("status") != "entered-in-error" else None
    if t == "DeviceUseStatement":
        if r.get("status") not in ("active", "intended", "on-hold"):
            return None
        return ("kritisk", 3) if _is_implant(r) else ("hjelpemidler", 0)
    if t == "Device":
        return None  # shown through its DeviceUseStatement (added as a companion entry)
    if t == "Encounter":
        return ("diagnoser", 2) if r.get("status") != "entered-in-error" else None
    if t == "ServiceRequest":
        return ("tjenester", 0) if r.get("status") in ("active", "on-hold", "draft") else None
    if t == "EpisodeOfCare":
        return ("tjenester", 1) if r.get("status") in (
            "planned", "waitlist", "active", "onhold") else None
    if t == "MedicationStatement":
        return ("legemidler", 0) if r.get("status") in ("active", "intended", "on-hold") \
            else None
    if t == "MedicationRequest":
        return ("legemidler", 1) if r.get("status") in ("active", "on-hold", "draft") else None
    if t == "Observation":
        cats = {c for _, c in _codes(r.get("category"))}
        if r.get("status") in ("entered-in-error", "cancelled"):
            return None
        if "laboratory" in cats:
            return "provesvar", 0
        if "survey" in cats:
            return "kartlegging", 0
        return None
    if t == "DiagnosticReport":
        return "provesvar", 1
    if t == "QuestionnaireResponse":
        return "kartlegging", 1
    if t == "CareTeam":
        return ("team", 0) if r.get("status") in ("active", "proposed", "suspended") else None
    if t == "RelatedPerson":
        return ("team", 1) if r.get("active", True) else None
    return None


def fact_key(r: dict) -> tuple | None:
    """Items with the same key state the same fact (possibly differently); None: no match."""
    t = r.get("resourceType")
    if t == "AllergyIntolerance":
        return (t, _concept(r.get("code")))
    if t == "Consent" and _is_treatment_limit(r):
        prov = r.get("provision") or {}
        return (t, "behandlingsavklaring",
                (_text((prov.get("code") or [{}])[0]) or "").lower())
    if t == "Condition":
        icd = next((f"{s}|{c}" for s, c in _codes(r.get("code"))
                    if s == "urn:oid:2.16.578.1.12.4.1.1.7110"), None)
        return (t, icd or _concept(r.get("code")))
    if t == "Flag":
        return (t, _concept(r.get("code")))
    if t == "Procedure":
        return (t, _concept(r.get("code")), _date(r, "performedDateTime", "performedPeriod")[:10])
    if t == "DeviceUseStatement":
        return (t, ((r.get("device") or {}).get("display") or "").lower())
    if t in ("MedicationStatement", "MedicationRequest"):
        return ("Medication", _concept(r.get("medicationCodeableConcept")))
    if t == "Observation":
        return (t, _concept(r.get("code")), _date(r, "effectiveDateTime", "effectivePeriod")[:16])
    return None


def facet(r: dict) -> tuple:
    """What must agree for two items with the same fact key to be the same fact."""
    t = r.get("resourceType")
    if t == "AllergyIntolerance":
        return (_status(r.get("clinicalStatus")), r.get("criticality"))
    if t == "Consent":
        return (r.get("status"), (r.get("provision") or {}).get("type"))
    if t == "Condition":
        return (_status(r.get("clinicalStatus")),)
    if t in ("Flag", "Procedure", "DeviceUseStatement"):
        return (r.get("status"),)
    if t in ("MedicationStatement", "MedicationRequest"):
        dose = r.get("dosage") or r.get("dosageInstruction") or []
        return (r.get("status"), " ".join(d.get("text", "") for d in dose).strip().lower())
    if t == "Observation":
        vq = r.get("valueQuantity") or {}
        return (vq.get("value"), vq.get("unit"), r.get("valueString"),
                _concept(r.get("valueCodeableConcept")))
    return ()


def summary(r: dict) -> str:
    t = r.get("resourceType")
    if t == "Consent":
        prov = r.get("provision") or {}
        what = _text((prov.get("code") or [{}])[0], "Behandlingsavklaring")
        since = (prov.get("period") or {}).get("start") or r.get("dateTime", "")[:10]
        who = ", ".join(p.get("display", "") for p in r.get("performer", []) or []
                        if p.get("display"))
        return f"{what} (fra {since}{', besluttet av ' + who if who else ''})"
    if t == "AllergyIntolerance":
        react = "; ".join(_text(m) for x in r.get("reaction", []) or []
                          for m in x.get("manifestation", []) or [])
        crit = {"high": "høy", "low": "lav"}.get(r.get("criticality"), r.get("criticality"))
        return f"{_text(r.get('code'), 'Allergi')}" + (f": {react}" if react else "") + \
            (f" (kritikalitet {crit})" if crit else "")
    if t == "Condition":
        return f"{_text(r.get('code'), 'Tilstand')} ({_status(r.get('clinicalStatus')) or ''}" \
            f", fra {_date(r, 'onsetDateTime', 'recordedDate')[:10]})"
    if t == "Flag":
        return _text(r.get("code"), "Flagg")
    if t == "Procedure":
        return f"{_text(r.get('code'), 'Prosedyre')} " \
            f"({_date(r, 'performedDateTime', 'performedPeriod')[:10]}, {r.get('status')})"
    if t == "DeviceUseStatement":
        return f"{(r.get('device') or {}).get('display', 'Hjelpemiddel')} " \
            f"(fra {_date(r, 'timingPeriod', 'recordedOn')[:10]})"
    if t == "Encounter":
        typ = _text((r.get("type") or [{}])[0], (r.get("class") or {}).get("display", "Kontakt"))
        where = (r.get("serviceProvider") or {}).get("display", "")
        return f"{_date(r, 'period')[:10]} {typ}" + (f", {where}" if where else "")
    if t == "ServiceRequest":
        per = r.get("occurrencePeriod") or {}
        unit = ", ".join(p.get("display", "") for p in r.get("performer", []) or [])
        return f"Vedtak: {_text(r.get('code'), 'tjeneste')} ({per.get('start', '?')}–" \
            f"{per.get('end', '')}){', ' + unit if unit else ''} [{r.get('status')}]"
    if t == "EpisodeOfCare":
        per = r.get("period") or {}
        typ = _text((r.get("type") or [{}])[0], "tjeneste")
        unit = (r.get("managingOrganization") or {}).get("display", "")
        cm = (r.get("careManager") or {}).get("display", "")
        return f"Pågående: {typ} ({per.get('start', '?')}–{per.get('end', '')})" + \
            (f", {unit}" if unit else "") + (f", kontaktperson {cm}" if cm else "")
    if t in ("MedicationStatement", "MedicationRequest"):
        dose = r.get("dosage") or r.get("dosageInstruction") or []
        return f"{_text(r.get('medicationCodeableConcept'), 'Legemiddel')}" + \
            (f" – {dose[0].get('text')}" if dose and dose[0].get("text") else "")
    if t == "Observation":
        vq = r.get("valueQuantity") or {}
        val = f"{vq.get('value')} {vq.get('unit') or ''}".strip() if vq else \
            r.get("valueString", "")
        return f"{_text(r.get('code'), 'Prøve')}: {val} " \
            f"({_date(r, 'effectiveDateTime', 'effectivePeriod')[:10]})"
    if t == "CareTeam":
        return r.get("name") or "Behandlingsteam"
    if t == "RelatedPerson":
        rel = _text((r.get("relationship") or [{}])[0], "pårørende")
        name = (r.get("name") or [{}])[0].get("text", "")
        tel = next((x.get("value") for x in r.get("telecom", []) or []), "")
        return f"{name} ({rel})" + (f", tlf {tel}" if tel else "")
    if t == "Organization":
        tel = next((x.get("value") for x in r.get("telecom", []) or []), "")
        return f"{r.get('name', 'Enhet')}" + (f", tlf {tel}" if tel else "")
    if t == "HealthcareService":
        return r.get("name") or "Tjenestested"
    return t or "?"


# --------------------------------------------------------------------------- compilation
@dataclass
class Shown:
    resource: dict
    full_url: str
    rank: int
    sort: str
    conflict: bool = False


@dataclass
class Compiled:
    bundle: dict
    shown_refs: list[str]
    missing: list[SourceResult] = field(default_factory=list)


def _full_url(r: dict, local_base: str) -> str:
    src = (r.get("meta") or {}).get("source") or local_base
    return f"{src}/{r['resourceType']}/{r['id']}"


def _div(lines: list[str], heading: str | None = None) -> dict:
    body = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    head = f"<p>{html.escape(heading)}</p>" if heading else ""
    inner = head + (f"<ul>{body}</ul>" if body else "")
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{inner or "<p>Ingen opplysninger</p>"}</div>'}


def patient_key(patient: dict) -> PatientKey:
    idents = patient.get("identifier", []) or []
    ident = next((i for sys in FNR_SYSTEMS for i in idents if i.get("system") == sys), None) \
        or (idents[0] if idents else {})
    return PatientKey(patient["id"], ident.get("system"), ident.get("value"))


def compile_overview(repo, patient_id: str, *, registry, base_url: str,
                     budget_ms: int | None = None) -> Compiled:
    t0 = time.monotonic()
    patient = repo.read("Patient", patient_id).json()
    local = LocalSource(repo, base_url)
    stamp_source(patient, local.url, local.display)
    adapters, default_budget = registry.sources_for(repo.tenant) if registry else ([], 800)
    budget = (budget_ms or default_budget) / 1000
    deadline = t0 + budget
    # keep time to assemble the document after the sources' deadline
    source_deadline = deadline - min(0.06, budget * 0.1)
    key = patient_key(patient)
    futures = {registry.pool.submit(a.fetch, key, source_deadline): a for a in adapters}

    results: list[SourceResult] = [local.fetch(key)]
    if futures:
        done, _ = cf.wait(futures, timeout=max(0.0, source_deadline - time.monotonic()))
        for fut, a in futures.items():
            if fut in done and fut.exception() is None:
                results.append(fut.result())
            elif fut in done:
                results.append(SourceResult(a.name, a.display, a.url, status="error",
                                            detail=f"{a.display}: {fut.exception()}"))
            else:
                fut.cancel()
                results.append(SourceResult(a.name, a.display, a.url, status="timeout",
                                            detail=f"{a.display} did not answer within the "
                                                   f"overview's budget of {budget * 1000:.0f} ms"))
    missing = [r for r in results if not r.ok]

    # ---- collect, apply the access policy to federated items, classify
    groups: dict[tuple, list[tuple[dict, str, int]]] = {}
    order: list[tuple] = []
    local_base = local.url
    federated_check = FederatedPolicy(repo, patient_id)
    for res in results:
        for item in res.items:
            if res is not results[0] and not federated_check.visible(item):
                continue
            c = classify(item)
            if c is None:
                continue
            fk = fact_key(item) or (item["resourceType"], res.url, item.get("id"))
            if fk not in groups:
                groups[fk] = []
                order.append(fk)
            groups[fk].append((item, c[0], c[1]))
    by_section: dict[str, list[Shown]] = {k: [] for k, _ in SECTIONS}
    for fk in order:
        items = groups[fk]
        clusters: list[list[tuple[dict, str, int]]] = []
        for it in items:
            for cl in clusters:
                if facet(cl[0][0]) == facet(it[0]):
                    cl.append(it)
                    break
            else:
                clusters.append([it])
        primaries = []
        for cl in clusters:
            head, section, rank = cl[0]
            for other, _, _ in cl[1:]:
                for url, disp in item_sources(other):
                    add_source_ext(head, url, disp)
            primaries.append((head, section, rank))
        if len(primaries) > 1:
            urls = [_full_url(p[0], local_base) for p in primaries]
            for i, (head, _, _) in enumerate(primaries):
                head.setdefault("extension", []).extend(
                    {"url": CONFLICT_EXT, "valueReference": {"reference": u}}
                    for j, u in enumerate(urls) if j != i)
        for head, section, rank in primaries:
            by_section[section].append(Shown(head, _full_url(head, local_base), rank,
                                             _sort_key(head), conflict=len(primaries) > 1))
    _trim(by_section)

    # ---- units and contacts of the services; devices of the device statements
    companions: dict[str, list[dict]] = {"tjenester": [], "hjelpemidler": []}
    org_ids = []
    for s in by_section["tjenester"]:
        r = s.resource
        refs = r.get("performer", []) if r["resourceType"] == "ServiceRequest" else \
            [r.get("managingOrganization") or {}]
        for ref in refs:
            ref = (ref or {}).get("reference", "")
            if ref.startswith("Organization/"):
                org_ids.append(ref.split("/", 1)[1])
    if org_ids:
        orgs, hcs = local.units(org_ids)
        companions["tjenester"] = orgs + hcs
    local_devices = {i["id"]: i for i in results[0].items if i["resourceType"] == "Device"}
    for s in by_section["hjelpemidler"]:
        ref = (s.resource.get("device") or {}).get("reference", "")
        dev = local_devices.get(ref.split("/")[-1]) if ref.startswith("Device/") else None
        if dev is not None and (s.resource.get("meta") or {}).get("source") == local_base:
            companions["hjelpemidler"].append(dev)

    bundle, refs = _document(repo, patient, by_section, companions, results, missing,
                             local_base, budget, blocked=federated_check.notice())
    return Compiled(bundle, refs, missing)


class FederatedPolicy:
    """The access policy applied to federated items (docs/policy.md): the same decision as
    for a local resource, taken on the local patient.

    An item from a national source is about the patient the overview is for, so it is judged
    as a resource of that patient even if it names no patient itself: the scope check and
    the policy (``repo.visible``: role, care relation or emergency grant, sperring, sensitive
    labels), then ``decision.decide`` with the patient added to the item's patients. A
    sperring that names a *local* resource (``provision.data``) also hides a federated item
    stating the same fact (same :func:`fact_key`) when the provision's other criteria
    (label, type) hold for it."""

    def __init__(self, repo, patient_id: str):
        from fkj.security.policy.hooks import applies
        self.repo, self.patient_id = repo, patient_id
        self.applies = applies(repo)
        self._ctx = None
        self._same_fact: list | None = None

    @property
    def ctx(self):
        if self._ctx is None:
            from fkj.security.policy import decision as D
            self._ctx = D.context(self.repo)
        return self._ctx

    def visible(self, item: dict) -> bool:
        if not self.repo.visible("read", item):
            return False
        if not self.applies:
            return True
        from fkj.security.policy import decision as D
        pats = D.patients_of(item) | {self.patient_id}
        if D.decide(self.ctx, item, pats) is not None:
            return False
        if self.ctx.kind == "practitioner":
            for key, rule in self._blocked_facts():
                if key == fact_key(item) and rule.matches(item, pats):
                    return False
        return True

    def _blocked_facts(self) -> list:
        """(fact key, provision without its data criterion) of every local resource of the
        patient that a sperring names."""
        if self._same_fact is None:
            import dataclasses
            self._same_fact = []
            for rule in self.ctx.rules:
                if rule.patient != self.patient_id or not rule.data:
                    continue
                loose = dataclasses.replace(rule, data=None)
                for rtype, rid in sorted(rule.data):
                    cur = self.repo.current_or_none(rtype, rid)
                    if cur is None:
                        continue
                    key = fact_key(orjson.loads(cur.content))
                    if key is not None:
                        self._same_fact.append((key, loose))
        return self._same_fact

    def notice(self) -> bool:
        """Whether a sperring hides something in this patient's record from the caller (the
        overview then says only that blocked information exists)."""
        if not self.applies:
            return False
        from fkj.security.policy import blocked_notice
        return blocked_notice(self.repo, None, {self.patient_id})


def _sort_key(r: dict) -> str:
    return _date(r, "effectiveDateTime", "effectivePeriod", "period", "occurrencePeriod",
                 "performedDateTime", "performedPeriod", "onsetDateTime", "recordedDate",
                 "dateTime", "authored", "timingPeriod", "effectivePeriod", "authoredOn")


def _trim(by_section: dict[str, list[Shown]]) -> None:
    for items in by_section.values():
        items.sort(key=lambda s: s.sort, reverse=True)
        items.sort(key=lambda s: s.rank)  # stable: rank first, newest first inside
    # recent lab results: newest per test (conflicting values stay), within LAB_MONTHS
    cutoff = (datetime.now(UTC) - timedelta(days=30 * LAB_MONTHS)).date().isoformat()
    seen: set[str] = set()
    labs = []
    for s in by_section["provesvar"]:
        if s.sort[:10] < cutoff:
            continue
        code = _concept(s.resource.get("code"))
        if code in seen and not s.conflict:
            continue
        seen.add(code)
        labs.append(s)
    by_section["provesvar"] = labs[:MAX_LABS]
    encounters = [s for s in by_section["diagnoser"] if s.resource["resourceType"] == "Encounter"]
    if len(encounters) > MAX_ENCOUNTERS:
        drop = {id(s) for s in encounters[MAX_ENCOUNTERS:]}
        by_section["diagnoser"] = [s for s in by_section["diagnoser"] if id(s) not in drop]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _document(repo, patient: dict, by_section, companions, results, missing, local_base,
              budget, blocked: bool = False) -> tuple[dict, list[str]]:
    now = _now_iso()
    patient_url = f"{local_base}/Patient/{patient['id']}"
    entries: list[dict] = []
    shown_refs: list[str] = [f"Patient/{patient['id']}"]
    sections = []
    per_source: dict[str, list[str]] = {}
    missing_by_section: dict[str, list[SourceResult]] = {}
    for m in missing:
        secs = SOURCE_SECTIONS.get(m.name) or tuple(sorted(
            {_TYPE_SECTIONS[t] for t in getattr(m, "types", ()) if t in _TYPE_SECTIONS}))
        for s in secs or ("kritisk",):
            missing_by_section.setdefault(s, []).append(m)
    seen_urls: set[str] = {patient_url}

    def add_entry(r: dict, url: str) -> None:
        if url in seen_urls:
            return
        seen_urls.add(url)
        entries.append({"fullUrl": url, "resource": r})
        src = (r.get("meta") or {}).get("source")
        shown_refs.append(f"{r['resourceType']}/{r['id']}" if src == local_base else url)
        for s_url, _ in item_sources(r) or [(src or local_base, "")]:
            per_source.setdefault(s_url, []).append(url)

    for code, title in SECTIONS:
        items = by_section[code]
        lines = []
        for s in items:
            srcs = ", ".join(d or u for u, d in item_sources(s.resource))
            mark = "MOTSTRIDENDE: " if s.conflict else ""
            lines.append(f"{mark}{summary(s.resource)} [kilde: {srcs}]")
            add_entry(s.resource, s.full_url)
        comp_refs = [s.full_url for s in items]
        for c in companions.get(code, []):
            url = _full_url(c, local_base)
            add_entry(c, url)
            comp_refs.append(url)
            lines.append(f"Enhet/kontakt: {summary(c)}")
        heading = None
        if missing_by_section.get(code):
            heading = "Mangler opplysninger fra: " + "; ".join(
                f"{m.display} ({_STATUS_TEXT.get(m.status, m.status)})"
                for m in missing_by_section[code])
        section = {"title": title,
                   "code": {"coding": [{"system": SECTION_SYSTEM, "code": code,
                                        "display": title}]},
                   "text": _div(lines, heading)}
        if comp_refs:
            section["entry"] = [{"reference": u} for u in comp_refs]
        else:
            section["emptyReason"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "unavailable" if code in missing_by_section else "nilknown",
                "display": "Unavailable" if code in missing_by_section else "Nil Known"}]}
        sections.append(section)

    # provenance: one per source that contributed what is shown
    provenances = []
    names = {r.url: r for r in results}
    for s_url, targets in per_source.items():
        res = names.get(s_url)
        disp = res.display if res else s_url
        provenances.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {
            "resourceType": "Provenance", "id": str(uuid.uuid4()),
            "target": [{"reference": t} for t in targets],
            "recorded": now,
            "policy": ["http://fkj.no/fhir/oversikt"],
            "activity": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                "code": "APPEND" if res and res.name != "lokal" else "UPDATE"}],
                "text": "hentet til oversikt"},
            "agent": [{"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "author", "display": "Author"}]},
                "who": {"display": disp}}],
            "entity": [{"role": "source", "what": {"display": s_url,
                                                     "identifier": {"system": "urn:ietf:rfc:3986",
                                                                    "value": s_url}}}]}})
    outcome = None
    issues = [{"severity": "warning", "code": _ISSUE_CODE.get(m.status, "exception"),
               "details": {"coding": [{"system": "http://fkj.no/fhir/CodeSystem/kilde",
                                       "code": m.name, "display": m.display}],
                           "text": f"{m.display} {_STATUS_TEXT.get(m.status, m.status)}"
                                   "; opplysninger derfra mangler i oversikten"},
               "diagnostics": m.detail or m.status,
               "expression": [m.url]} for m in missing]
    if blocked:  # that blocked information exists — never what, where or from which source
        issues.append({"severity": "information", "code": "suppressed",
                       "details": {"text": BLOCKED_TEXT}})
    if issues:
        outcome = {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {
            "resourceType": "OperationOutcome", "id": str(uuid.uuid4()), "issue": issues}}
    comp_text = ["Kilder: " + ", ".join(f"{r.display} ({'OK' if r.ok else 'mangler'})"
                                         for r in results)]
    if missing:
        comp_text.append("Mangler: " + "; ".join(
            f"{m.display} ({_STATUS_TEXT.get(m.status, m.status)})" for m in missing))
    if blocked:
        comp_text.append(BLOCKED_TEXT[0].upper() + BLOCKED_TEXT[1:])
    composition = {
        "resourceType": "Composition", "id": str(uuid.uuid4()),
        "text": _div(comp_text, f"Oversikt for {_name(patient)}"),
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5",
                             "display": "Patient summary Document"}], "text": "Oversikt"},
        "subject": {"reference": patient_url, "display": _name(patient)},
        "date": now,
        "author": [{"display": "FKJ-plattformen (sammenstilt oversikt)"}],
        "title": "Oversikt – kritisk informasjon, tjenester, historikk",
        "section": sections,
    }
    bundle = {
        "resourceType": "Bundle", "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document", "timestamp": now,
        "entry": [{"fullUrl": f"urn:uuid:{composition['id']}", "resource": composition},
                  {"fullUrl": patient_url, "resource": patient}] + entries + provenances +
                 ([outcome] if outcome else []),
    }
    return bundle, shown_refs


def _name(patient: dict) -> str:
    n = (patient.get("name") or [{}])[0]
    return n.get("text") or " ".join(n.get("given", []) + [n.get("family", "")]).strip()


def dumps(bundle: dict) -> bytes:
    return orjson.dumps(bundle)
