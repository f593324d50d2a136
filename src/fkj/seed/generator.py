"""Deterministic synthetic population of a Norwegian municipality (FHIR R4 resources).

``generate(tenant, patients, seed)`` yields resources as dicts with client-assigned ids, in
dependency order (everything a resource references is yielded before it):

1. the municipality ``Organization`` (organisasjonsnummer), then per unit ``Organization``
   (HER-id) + ``Location`` + ``HealthcareService`` (IPLOS 9151 specialties);
2. staff: ``Practitioner`` (HPR-nummer, synthetic fødselsnummer) and ``PractitionerRole``
   (role code in :data:`ROLE_SYSTEM`);
3. per patient: Patient, RelatedPerson, Condition, AllergyIntolerance, MedicationStatement,
   ServiceRequest/CareTeam/EpisodeOfCare, Consent (HLR-minus, sperring), Flag,
   Device/DeviceUseStatement, Encounter/Procedure, Observation.

Same ``(tenant, patients, seed, today)`` gives byte-identical output. Patient
:data:`HLR_STORY_PATIENT_INDEX` is the HLR-minus story patient (same facts for every seed),
patient 1 has restricted-label (PSY/SUD) data and patient 2 has a sperring Consent.
Distributions and their rationale: ``src/fkj/data/seed/README.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from .catalog import ROLE_SYSTEM
from .organization import Municipality
from .patients import PatientBuilder
from .people import PersonNumbers, kommune_for
from .profile import make_profile

__all__ = ["HLR_STORY_PATIENT_INDEX", "PSY_DEMO_PATIENT_INDEX", "ROLE_SYSTEM",
           "SPERRING_DEMO_PATIENT_INDEX", "demo_people", "generate"]

#: patient index of "the HLR-minus story patient": an 86-year-old man with an HLR-minus Consent,
#: home nursing twice a day (9151 code 15), atrial fibrillation on apixaban and chronic kidney
#: disease diagnosed last year. Id: f"{tenant}-pat-0".
HLR_STORY_PATIENT_INDEX = 0
#: patient with psychiatric/substance-abuse data carrying meta.security PSY/SUD + R
PSY_DEMO_PATIENT_INDEX = 1
#: patient with an active sperring Consent (meta.tag consent-kind|sperring)
SPERRING_DEMO_PATIENT_INDEX = 2


def _setup(tenant: str, patients: int, seed: int, today: date):
    k = kommune_for(tenant)
    numbers = PersonNumbers()
    story = make_profile(HLR_STORY_PATIENT_INDEX, k, seed, numbers, today, story=True) \
        if patients > 0 else None
    muni = Municipality(k, patients, seed, numbers, today)
    return k, numbers, story, muni


def generate(tenant: str, patients: int, seed: int = 42, *,
             today: date | None = None) -> Iterator[dict]:
    """Yield the synthetic municipality's FHIR resources in dependency order."""
    today = today or date.today()
    k, numbers, story, muni = _setup(tenant, patients, seed, today)
    yield from muni.resources
    for n in range(patients):
        profile = story if n == HLR_STORY_PATIENT_INDEX else \
            make_profile(n, k, seed, numbers, today)
        yield from PatientBuilder(profile, muni, seed, today).build()


def demo_people(tenant: str, patients: int, seed: int = 42, *,
                today: date | None = None) -> list[dict]:
    """A short directory of people for demo logins (same ids/names as :func:`generate`)."""
    today = today or date.today()
    k, numbers, story, muni = _setup(tenant, patients, seed, today)
    out: list[dict] = []
    picks = [
        ("legevakt", "lege", "Lege på legevakten"),
        ("hjemmetjeneste", "sykepleier", "Sykepleier i hjemmetjenesten sone 1"),
        ("tildeling", "saksbehandler", "Saksbehandler på tildelingskontoret"),
        ("tildeling", "leder", "Leder for tildelingskontoret"),
        ("legekontor", "lege", "Fastlege (også leder av legekontoret)"),
        ("sykehjem", "lege", "Tilsynslege på sykehjem"),
        ("psykisk", "psykolog", "Psykolog i psykisk helse og rus"),
    ]
    for kind, role, note in picks:
        s = muni.first(kind, role)
        out.append({"kind": "practitioner", "id": f"Practitioner/{s.prac_id}",
                    "name": s.name["text"], "hpr_number": s.hpr,
                    "roles": [c for c, _ in s.roles], "unit": f"Organization/{s.unit.org_id}",
                    "unit_name": s.unit.name, "note": note})
    notes = {HLR_STORY_PATIENT_INDEX: "HLR-minus story patient (86, hjemmesykepleie 2x daglig, "
                                      "atrieflimmer på apixaban, kronisk nyresykdom)",
             PSY_DEMO_PATIENT_INDEX: "Har opplysninger merket PSY/SUD (psykisk helse og rus)",
             SPERRING_DEMO_PATIENT_INDEX: "Har aktiv sperring (Consent patient-privacy, deny)"}
    for n in range(min(patients, 3)):
        p = story if n == HLR_STORY_PATIENT_INDEX else make_profile(n, k, seed, numbers, today)
        out.append({"kind": "citizen", "id": f"Patient/{p.pid}", "name": p.name["text"],
                    "pid": p.number, "pid_kind": "dnr" if p.dnr else "fnr", "note": notes[n]})
    return out
