"""Which patients a resource concerns — the one answer that the access policy (its Python
form here, its SQL form over the same index rows), the audit log and the events use — and
the resolution, at write time, of references that name a person only by an identifier.

**The patients of a resource** are the targets ``Patient/<id>`` of its Patient-compartment
references (R4 CompartmentDefinition, plus ``Device.patient``); a Patient's patient is itself.
They are read from the reference rows the search index extracts for those parameters
(:func:`fkj.search.extract.param_rows`), so the Python answer and the SQL answer over
``idx_reference`` are the same answer by construction.

**Logical references to persons.** A Reference may name its target only by ``identifier``
(``{"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "…"}}``). When the
system is a person-identifier system (:data:`fkj.model.identifiers.PERSON_IDENTIFIER_SYSTEMS`:
fødselsnummer, D-nummer, FH-nummer, H-nummer, DUF-nummer) and the reference's ``type`` is
absent or ``Patient``, the person is a patient: at write time :func:`resolve` looks the
tenant's Patient with that identifier up and fills in ``reference`` (``Patient/<id>``), so
the resource is indexed in the patient's compartment and everything downstream — policy,
sperring, audit, the citizen's access log, notifications — sees the patient. If no Patient
(or more than one) has the identifier the write is refused (422 naming the element; for
personnel the policy refuses first, with the same answer as for a patient they have no
care relation to, so the refusal reveals nothing about who is registered).

A typed reference to another kind of person (``Practitioner``, ``PractitionerRole``,
``RelatedPerson``, ``Person``) is left as it is; a person identifier on any other type
(``Group``, ``Device`` …) is refused — a fødselsnummer identifies a person. A reference to
a *contained* Patient is refused as well (it would leave the resource without a patient the
platform knows).

**Data stored before this rule** may still hold unresolved person references. Such a
resource concerns an *unknown patient* (:data:`UNRESOLVED`, in :func:`patients_of`): the
policy treats it as a patient nobody is related to, so personnel and citizens do not see it.
Both forms look at the same index rows — those of :func:`scan_params` (the patient links,
and the untyped parameter over the same element where a link keeps only references typed
Patient): a row with a person identifier, no target id, and type absent or ``Patient``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import orjson

from fkj.errors import Unprocessable
from fkj.model.identifiers import PERSON_IDENTIFIER_SYSTEMS
from fkj.search.extract import param_rows

__all__ = [
    "PERSON_TYPES",
    "UNRESOLVED",
    "LogicalRef",
    "Lookup",
    "links_of",
    "logical_person_refs",
    "patient_links",
    "patient_refs",
    "patients_in",
    "patients_of",
    "resolve",
    "resolve_within",
    "scan_facts",
    "scan_pairs",
    "scan_params",
    "unresolved",
    "unresolved_row",
    "write_patients",
]

#: stands for a patient known only by an identifier that resolves to no Patient of the
#: tenant (never a valid FHIR id, so it can be no one's care relation)
UNRESOLVED = "#unresolved"
#: reference types that name a person who is not (as such) a patient
PERSON_TYPES = frozenset({"Practitioner", "PractitionerRole", "RelatedPerson", "Person"})
#: kind → how the refusals name it
_LABEL = {"fnr": "fødselsnummer", "dnr": "D-nummer", "fhn": "FH-nummer", "hnr": "H-nummer",
          "duf": "DUF-nummer"}
#: byte strings every person-identifier system contains one of (a cheap pre-check on the
#: serialised resource: most resources contain none and need no walk)
_MARKERS = (b"2.16.578.1.12.4.1.4.", b"NamingSystem/", b'"HNR"')

#: (kind, value) → the ids of the tenant's Patients with that identifier
Lookup = Callable[[set[tuple[str, str]]], dict[tuple[str, str], list[str]]]


# ------------------------------------------------------------------------------ linkage
@functools.cache
def patient_links() -> tuple[tuple[str, str], ...]:
    """(type, search parameter) pairs that link a resource to a patient."""
    from fkj.search.compartments import compartment_params, member_types
    pairs = {(t, p) for t in member_types("Patient") if t != "Patient"
             for p in compartment_params("Patient", t) if p != "{def}"}
    pairs.add(("Device", "patient"))
    return tuple(sorted(pairs))


@functools.cache
def links_of(rtype: str) -> frozenset[str]:
    """The search parameters that link a ``rtype`` to its patients (empty: no patient)."""
    return frozenset(p for t, p in patient_links() if t == rtype)


_WHERE_PATIENT = ".where(resolve() is Patient)"


@functools.cache
def scan_params(rtype: str) -> frozenset[str]:
    """The parameters whose reference rows say whom a ``rtype`` concerns: its patient links
    and, for a link that keeps only references *typed* Patient (``Condition.subject.where(
    resolve() is Patient)``), the parameter over the same element without that filter
    (``subject``) — where a reference that names a patient by identifier alone, untyped,
    shows up."""
    links = links_of(rtype)
    if not links:
        return frozenset()
    from fkj.search.registry import default_registry
    params = default_registry().for_type(rtype)
    out = set(links)
    for code in links:
        sp = params.get(code)
        for alt in (sp.expression or "").split("|") if sp else ():
            alt = alt.strip()
            if alt.startswith(f"{rtype}.") and alt.endswith(_WHERE_PATIENT):
                path = alt[:-len(_WHERE_PATIENT)]
                out |= {c for c, other in params.items() if other.type == "reference" and
                        path in (x.strip() for x in (other.expression or "").split("|"))}
    return frozenset(out)


@functools.cache
def scan_pairs() -> tuple[tuple[str, str], ...]:
    """(type, parameter) of every :func:`scan_params` (the SQL form's rows)."""
    return tuple(sorted({(t, p) for t, _ in patient_links() for p in scan_params(t)}))


def unresolved_row(row: tuple) -> bool:
    """An index reference row ``(param, target_type, target_id, url, ident_system,
    ident_value)`` that names a patient only by a person identifier."""
    return row[2] is None and row[4] in PERSON_IDENTIFIER_SYSTEMS and row[1] in (None, "Patient")


def _rows(res: dict, rtype: str) -> list[tuple]:
    return param_rows(res, scan_params(rtype), "reference")


def unresolved(res: dict) -> bool:
    """Whether ``res`` names a patient by a person identifier that was never resolved
    (data stored before references were resolved at write time)."""
    rtype = res.get("resourceType") or ""
    return bool(links_of(rtype)) and any(unresolved_row(r) for r in _rows(res, rtype))


# ------------------------------------------------------------------------------ the answer
def patients_of(res: dict) -> set[str]:
    """The ids of the patients ``res`` concerns; :data:`UNRESOLVED` among them when it names
    a patient only by an unresolved identifier (treat that as a patient no one may see).

    >>> sorted(patients_of({"resourceType": "Observation", "subject": {"reference": "Patient/7"}}))
    ['7']
    """
    rtype = res.get("resourceType") or ""
    if rtype == "Patient":
        return {res["id"]} if res.get("id") else set()
    links = links_of(rtype)
    if not links:
        return set()
    out = set()
    for row in _rows(res, rtype):
        if row[2]:
            if row[1] == "Patient" and row[0] in links:
                out.add(row[2])
        elif unresolved_row(row):
            out.add(UNRESOLVED)
    return out


def patient_refs(res: dict) -> list[str]:
    """``Patient/<id>`` of every patient of ``res`` (the audit record's and a notification's
    patient list), in the order the resource names them."""
    rtype = res.get("resourceType") or ""
    if rtype == "Patient":
        return [f"Patient/{res['id']}"] if res.get("id") else []
    links = links_of(rtype)
    if not links:
        return []
    out: list[str] = []
    for row in param_rows(res, links, "reference"):
        if row[1] == "Patient" and row[2]:
            ref = "Patient/" + row[2]
            if ref not in out:
                out.append(ref)
    return out


def patients_in(rows: Iterable[tuple[str, str | bytes]]) -> list[str]:
    """The patients of ``rows`` ((``Type/id``, JSON text or bytes)), in order, once each."""
    out: list[str] = []
    for ref, content in rows:
        if ref.startswith("Patient/"):
            out.append(ref)
            continue
        # a patient reference holds "Patient/<id>": a resource without it names none
        if (b"Patient/" if isinstance(content, bytes) else "Patient/") not in content:
            continue
        try:
            res = orjson.loads(content)
        except orjson.JSONDecodeError:
            continue
        if isinstance(res, dict):
            out.extend(patient_refs(res))
    return list(dict.fromkeys(out))


def write_patients(rtype: str, rid: str, index: dict | None, content: str | None = None
                   ) -> list[str]:
    """The patients of a prepared write, from the reference rows already extracted for it
    (``index``); a deletion carries no rows, so its stored ``content`` is read instead."""
    if rtype == "Patient":
        return [f"Patient/{rid}"]
    if not index and content:
        try:
            res = orjson.loads(content)
        except orjson.JSONDecodeError:
            return []
        return patient_refs(res) if isinstance(res, dict) else []
    params = links_of(rtype)
    return list(dict.fromkeys(f"Patient/{row[2]}" for row in (index or {}).get("reference", ())
                              if row[0] in params and row[1] == "Patient" and row[2]))


# ------------------------------------------------------------------------------ resolution
@dataclass
class LogicalRef:
    """A Reference that names a person only by identifier."""

    path: str          # FHIRPath of the Reference element, e.g. ``Condition.subject``
    obj: dict          # the Reference object itself
    kind: str          # fnr | dnr | fhn | hnr | duf
    value: str
    type: str | None   # the Reference's type, without a StructureDefinition base

    @property
    def label(self) -> str:
        return _LABEL.get(self.kind, "personidentifikator")


def _walk(value, path: str) -> Iterator[tuple[str, dict]]:
    stack = [(value, path)]
    while stack:
        v, p = stack.pop()
        if type(v) is dict:
            ident = v.get("identifier")
            if type(ident) is dict and not isinstance(v.get("reference"), str) and p != "":
                yield p, v
            for k, x in v.items():
                if k != "contained" and type(x) in (dict, list):
                    stack.append((x, f"{p}.{k}" if p else k))
        elif type(v) is list:
            for i, x in enumerate(v):
                if type(x) in (dict, list):
                    stack.append((x, f"{p}[{i}]"))


def logical_person_refs(res: dict) -> list[LogicalRef]:
    """The References of ``res`` (contained resources aside) that name a person only by a
    person identifier (no ``reference``)."""
    if not isinstance(res, dict) or not any(m in orjson.dumps(res) for m in _MARKERS):
        return []
    root = res.get("resourceType") if isinstance(res.get("resourceType"), str) else "Resource"
    out = []
    for path, obj in _walk(res, ""):
        ident = obj["identifier"]
        kind = PERSON_IDENTIFIER_SYSTEMS.get(ident.get("system"))  # type: ignore[arg-type]
        value = ident.get("value")
        if kind is None or not isinstance(value, str) or not value:
            continue
        t = obj.get("type")
        t = t.rsplit("/", 1)[-1] if isinstance(t, str) and t else None
        out.append(LogicalRef(f"{root}.{path}", obj, kind, value, t))
    out.sort(key=lambda x: x.path)
    return out


def resolve(res: dict, lookup: Lookup) -> tuple[dict, list[Unprocessable]]:
    """``res`` with every logical reference to a patient given its ``reference``
    (``Patient/<id>``), as a copy when anything changed; and the problems: references that
    resolve to no Patient or to several (for the caller to refuse the write with, once the
    policy has had its say).

    Raises :class:`Unprocessable` at once for a person identifier on a reference whose type
    is not a person (``Group``, ``Device`` …). Only resources that can concern a patient
    (:func:`links_of`) are resolved; a Patient's own links and, say, a stored document
    Bundle are left as they are."""
    if not links_of(res.get("resourceType") or ""):
        return res, []
    _refuse_contained_patient(res)
    refs = [r for r in logical_person_refs(res) if r.type not in PERSON_TYPES]
    if not refs:
        return res, []
    for r in refs:
        if r.type not in (None, "Patient"):
            raise Unprocessable(
                f"{r.path} names a {r.type} by a {r.label}, which identifies a person: refer "
                f"to the Patient (type Patient) or to a Practitioner/RelatedPerson/Person",
                expression=f"{r.path}.type")
    found = lookup({(r.kind, r.value) for r in refs})
    problems = []
    res = copy.deepcopy(res)
    for r in logical_person_refs(res):
        if r.type in PERSON_TYPES:
            continue
        ids = sorted(set(found.get((r.kind, r.value)) or ()))
        if len(ids) == 1:
            r.obj["reference"] = f"Patient/{ids[0]}"
            continue
        why = ("no Patient in this municipality has it: register the Patient first, or "
               "refer to it as Patient/<id>") if not ids else \
            f"{len(ids)} Patients in this municipality have it: refer to one as Patient/<id>"
        problems.append(Unprocessable(
            f"{r.path} names the patient only by {r.label} and {why}",
            expression=f"{r.path}.identifier"))
    return res, problems


def scan_facts(res: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]] | None:
    """What an import needs to know of a resource before it resolves references (see
    :mod:`fkj.bulk.importer`): a Patient's person identifiers ``(kind, value)``, or the
    person identifiers another resource refers to a patient by; None when neither."""
    if not isinstance(res, dict):
        return None
    if res.get("resourceType") == "Patient":
        own = []
        for ident in res.get("identifier") or ():
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                kind = PERSON_IDENTIFIER_SYSTEMS.get(ident.get("system"))  # type: ignore[arg-type]
                if kind:
                    own.append((kind, ident["value"]))
        return (own, []) if own else None
    if not links_of(res.get("resourceType") or ""):
        return None
    wanted = [(r.kind, r.value) for r in logical_person_refs(res) if r.type in (None, "Patient")]
    return ([], wanted) if wanted else None


def _refuse_contained_patient(res: dict) -> None:
    """A reference to a *contained* Patient would leave the resource without a patient the
    platform knows (the same escape as an unresolved identifier): refused, whatever the
    contained Patient holds — no lookup, so the answer reveals nothing."""
    contained = res.get("contained")
    if not isinstance(contained, list):
        return
    ids = {c.get("id") for c in contained
           if isinstance(c, dict) and c.get("resourceType") == "Patient"}
    if not ids:
        return
    from fkj.model.references import iter_references
    root = res.get("resourceType") or "Resource"
    for path, obj in iter_references(res, root):
        ref = obj["reference"]
        if ref.startswith("#") and ref[1:] in ids:
            raise Unprocessable(
                f"{path} refers to a contained Patient: patient data must refer to the "
                "registered Patient (Patient/<id>, or by fødselsnummer/D-nummer)",
                expression=f"{path}.reference")


def resolve_within(resources: list[tuple[dict, str | None]]) -> None:
    """Resolve, in place, logical person references to Patients written in the same
    transaction (a Bundle that registers the Patient and records about it together):
    ``resources`` are (resource, ``Patient/<id>`` it is stored as, or None)."""
    known: dict[tuple[str, str], set[str]] = {}
    for res, assigned in resources:
        if not (isinstance(res, dict) and res.get("resourceType") == "Patient" and assigned):
            continue
        for ident in res.get("identifier") or ():
            if isinstance(ident, dict):
                kind = PERSON_IDENTIFIER_SYSTEMS.get(ident.get("system"))  # type: ignore[arg-type]
                if kind and isinstance(ident.get("value"), str):
                    known.setdefault((kind, ident["value"]), set()).add(assigned)
    if not known:
        return
    for res, _ in resources:
        if not isinstance(res, dict) or not links_of(res.get("resourceType") or ""):
            continue
        for r in logical_person_refs(res):
            targets = known.get((r.kind, r.value))
            if r.type in (None, "Patient") and targets and len(targets) == 1:
                r.obj["reference"] = next(iter(targets))
