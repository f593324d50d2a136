"""Roles and what each may read and write, by resource category (tjenstlig behov is checked
separately: a role only says *what kind* of information a person may use, the care relation
says *whose*).

Categories (``CATEGORY_OF``; any other type in the Patient compartment counts as
``clinical``; types outside it are ``public`` — readable by all personnel):

=========== ===============================================================================
category    resource types
=========== ===============================================================================
admin       Patient, RelatedPerson, Person, Coverage, Account and other administrative data
service     ServiceRequest, EpisodeOfCare, CareTeam, Appointment(Response), Schedule
            (vedtak / tjenester: what the municipality has decided to deliver)
careplan    CarePlan, Goal, Task, NutritionOrder, Device, DeviceRequest, DeviceUseStatement
critical    AllergyIntolerance, Flag, Consent (critical information, HLR-minus)
contact     Encounter, Communication, CommunicationRequest (visits, messages)
vitals      Observation that is not a laboratory result (vital signs, scores)
lab         Observation with category ``laboratory``, DiagnosticReport, Specimen,
            ImagingStudy, Media, MolecularSequence
medication  MedicationRequest/-Statement/-Administration/-Dispense, Immunization*
clinical    Condition, Procedure, ClinicalImpression, DocumentReference, Composition,
            QuestionnaireResponse, RiskAssessment, … (diagnoses, clinical notes)
audit       AuditEvent, Provenance (the access log)
public      non-patient resources (Practitioner, Organization, Location, HealthcareService,
            Medication, ValueSet, CodeSystem, …)
=========== ===============================================================================

Role table (R = read, W = write; a person with several roles gets the union):

================ ===== ======= ======== ======== ======= ====== === ========== ======== =====
role             admin service careplan critical contact vitals lab medication clinical audit
================ ===== ======= ======== ======== ======= ====== === ========== ======== =====
lege             R     R       RW       RW       RW      RW     RW  RW         RW       -
sykepleier       R     R       RW       RW       RW      RW     R   RW         RW       -
helsefagarbeider R     R       RW       R        RW      RW     -   R          -        -
fysioterapeut    R     R       RW       R        RW      RW     -   -          RW       -
ergoterapeut     R     R       RW       R        RW      RW     -   -          RW       -
psykolog         R     R       RW       R        RW      R      -   R          RW       -
saksbehandler    RW    RW      R        R        R       -      -   -          -        -
leder            R     R       -        -        -       -      -   -          -        R
================ ===== ======= ======== ======== ======= ====== === ========== ======== =====

Rationale: doctors and nurses treat and need the whole record (nurses do not order lab
tests). Helsefagarbeidere give practical care and medicines under medisineringsstøtte: they
need critical information, the decisions, the care plan, visits, vital signs and the
medication list, not diagnoses, notes or lab results. Therapists need diagnoses and notes
for rehabilitation, not lab results or medicines. Psychologists do not prescribe. The
saksbehandler (tildelingskontoret) decides vedtak — writes ServiceRequest/EpisodeOfCare/
CareTeam and administrative data, reads care plans, critical information and visits as the
basis of the decision, but no lab results, diagnoses or notes. A leder reads administrative
data, the services of the unit and the access log for follow-up (etterfølgende kontroll),
but no clinical information unless the same person also holds a clinical role. All
personnel read ``public`` resources. System clients are governed by their SMART scopes only.
"""

from __future__ import annotations

import functools

ROLE_SYSTEM = "http://fkj.no/fhir/CodeSystem/rolle"
ROLES = ("lege", "sykepleier", "helsefagarbeider", "fysioterapeut", "ergoterapeut",
         "psykolog", "saksbehandler", "leder")

#: the roles held by health personnel (helsepersonelloven § 3: authorised professions who
#: give health care). Only they may open a record by emergency access ($akuttilgang): the
#: saksbehandler decides services and the leder follows up, neither treats a patient.
HEALTH_PERSONNEL_ROLES = frozenset({"lege", "sykepleier", "helsefagarbeider", "fysioterapeut",
                                    "ergoterapeut", "psykolog"})

CATEGORIES = ("admin", "service", "careplan", "critical", "contact", "vitals", "lab",
              "medication", "clinical", "audit", "public")

CATEGORY_OF: dict[str, str] = {
    **{t: "admin" for t in ("Patient", "RelatedPerson", "Person", "Coverage", "Account",
                            "CoverageEligibilityRequest", "CoverageEligibilityResponse",
                            "EnrollmentRequest", "Claim", "ClaimResponse", "Invoice",
                            "ChargeItem", "ExplanationOfBenefit", "Basic", "Group",
                            "ResearchSubject")},
    **{t: "service" for t in ("ServiceRequest", "EpisodeOfCare", "CareTeam", "Appointment",
                              "AppointmentResponse", "Schedule")},
    **{t: "careplan" for t in ("CarePlan", "Goal", "Task", "NutritionOrder", "Device",
                               "DeviceRequest", "DeviceUseStatement", "SupplyRequest",
                               "SupplyDelivery", "VisionPrescription", "RequestGroup")},
    **{t: "critical" for t in ("AllergyIntolerance", "Flag", "Consent")},
    **{t: "contact" for t in ("Encounter", "Communication", "CommunicationRequest")},
    "Observation": "vitals",  # laboratory Observations are "lab" (decided by category)
    **{t: "lab" for t in ("DiagnosticReport", "Specimen", "ImagingStudy", "Media",
                          "MolecularSequence")},
    **{t: "medication" for t in ("MedicationRequest", "MedicationStatement",
                                 "MedicationAdministration", "MedicationDispense",
                                 "Immunization", "ImmunizationEvaluation",
                                 "ImmunizationRecommendation")},
    **{t: "audit" for t in ("AuditEvent", "Provenance")},
}

_ALL_CLIN = ("admin", "service", "careplan", "critical", "contact", "vitals", "lab",
             "medication", "clinical")

#: role → (categories it reads, categories it writes); "public" is added for everyone
ROLE_TABLE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "lege": (frozenset(_ALL_CLIN),
             frozenset({"careplan", "critical", "contact", "vitals", "lab", "medication",
                        "clinical"})),
    "sykepleier": (frozenset(_ALL_CLIN),
                   frozenset({"careplan", "critical", "contact", "vitals", "medication",
                              "clinical"})),
    "helsefagarbeider": (frozenset({"admin", "service", "careplan", "critical", "contact",
                                    "vitals", "medication"}),
                         frozenset({"careplan", "contact", "vitals"})),
    "fysioterapeut": (frozenset({"admin", "service", "careplan", "critical", "contact",
                                 "vitals", "clinical"}),
                      frozenset({"careplan", "contact", "vitals", "clinical"})),
    "ergoterapeut": (frozenset({"admin", "service", "careplan", "critical", "contact",
                                "vitals", "clinical"}),
                     frozenset({"careplan", "contact", "vitals", "clinical"})),
    "psykolog": (frozenset({"admin", "service", "careplan", "critical", "contact", "vitals",
                            "medication", "clinical"}),
                 frozenset({"careplan", "contact", "clinical"})),
    "saksbehandler": (frozenset({"admin", "service", "careplan", "critical", "contact"}),
                      frozenset({"admin", "service"})),
    "leder": (frozenset({"admin", "service", "audit"}), frozenset()),
}


def may_break_glass(principal) -> bool:
    """Whether ``principal`` may use emergency access: a person of kind ``practitioner``
    with an HPR number (authorised health personnel, as HelseID asserts it) holding at
    least one of :data:`HEALTH_PERSONNEL_ROLES`."""
    return (principal.kind == "practitioner" and bool(principal.hpr_number)
            and bool(HEALTH_PERSONNEL_ROLES & set(principal.roles or ())))


@functools.lru_cache(maxsize=256)
def categories(roles: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(readable, writable) categories for a set of roles; unknown roles give nothing."""
    read, write = {"public"}, set()
    for r in roles:
        got = ROLE_TABLE.get(r)
        if got:
            read |= got[0]
            write |= got[1]
    return frozenset(read), frozenset(write)


@functools.cache
def patient_types() -> frozenset[str]:
    """Types holding patient data (the Patient compartment, Patient itself, Device)."""
    from fkj.search.compartments import member_types
    return frozenset(member_types("Patient")) | {"Patient", "Device"}


def category_of(rtype: str, lab: bool = False) -> str:
    if rtype == "Observation":
        return "lab" if lab else "vitals"
    if rtype not in patient_types():
        return "public"
    return CATEGORY_OF.get(rtype, "clinical")


@functools.cache
def types_in(category: str) -> frozenset[str]:
    """Patient-data types whose category is ``category`` (Observation counted in both
    ``vitals`` and ``lab``)."""
    out = {t for t in patient_types() if category_of(t) == category}
    if category == "lab":
        out.add("Observation")
    return frozenset(out)


def is_lab_observation(resource: dict) -> bool:
    for cc in resource.get("category") or []:
        for c in (cc or {}).get("coding") or [] if isinstance(cc, dict) else []:
            if isinstance(c, dict) and c.get("code") == "laboratory":
                return True
    return False


def resource_category(resource: dict) -> str:
    rtype = resource.get("resourceType") or ""
    return category_of(rtype, rtype == "Observation" and is_lab_observation(resource))
