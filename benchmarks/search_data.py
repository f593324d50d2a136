"""Deterministic synthetic tenant for ``fkj bench search``.

``Population(total)`` describes about ``total / 50`` patients, each with a compartment of
Encounters, Observations (LOINC), Conditions (ICD-10), MedicationStatements (ATC) and
ServiceRequests; one patient in a hundred has exactly 300 resources (Patient included), the
others between 4 and 91 (mean ≈ 48), so the tenant averages ≈ 50 resources per patient.
Every resource is valid R4 and carries a client-assigned id, so it is loaded with
``PUT Type/id`` entries. Patients are identified in the system ``http://fkj.no/bench/pnr``
(11 digits, no fødselsnummer control digits, so no FNR validation cost).

Each patient is generated from its own ``random.Random``, so any patient — and the first N
resources of the stream — can be rebuilt without generating the rest.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

PNR_SYSTEM = "http://fkj.no/bench/pnr"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SEED = 4601
HEAVY_EVERY = 100  # one patient in HEAVY_EVERY has a compartment of HEAVY_SIZE resources
HEAVY_SIZE = 300

#: (code, display, unit, low, high, category, weight)
OBS_CODES = [
    ("8867-4", "Heart rate", "/min", 45, 130, "vital-signs", 10),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 90, 190, "vital-signs", 10),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 50, 110, "vital-signs", 10),
    ("8310-5", "Body temperature", "Cel", 35.5, 40.0, "vital-signs", 6),
    ("9279-1", "Respiratory rate", "/min", 10, 30, "vital-signs", 5),
    ("59408-5", "Oxygen saturation by pulse oximetry", "%", 85, 100, "vital-signs", 6),
    ("29463-7", "Body weight", "kg", 40, 140, "vital-signs", 8),
    ("8302-2", "Body height", "cm", 145, 200, "vital-signs", 3),
    ("39156-5", "Body mass index", "kg/m2", 17, 42, "vital-signs", 4),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 60, 250, "laboratory", 6),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4, 12, "laboratory", 4),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 8, 18, "laboratory", 5),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.4, 3, "laboratory", 4),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 120, 320, "laboratory", 3),
    ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 40, 400, "laboratory", 2),
    ("6690-2", "Leukocytes [#/volume] in Blood", "10*3/uL", 2, 20, "laboratory", 3),
    ("777-3", "Platelets [#/volume] in Blood", "10*3/uL", 100, 450, "laboratory", 2),
    ("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", 0, 150,
     "laboratory", 4),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 128, 150, "laboratory", 3),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3, 6, "laboratory", 2),
]
_OBS_WEIGHTS = [c[6] for c in OBS_CODES]

CONDITIONS = [("E11.9", "Type 2 diabetes mellitus without complications"),
              ("I10", "Essential (primary) hypertension"), ("J44.9", "COPD, unspecified"),
              ("I48.9", "Atrial fibrillation, unspecified"), ("F32.9", "Depressive episode"),
              ("M17.9", "Gonarthrosis, unspecified"), ("G30.9", "Alzheimer disease"),
              ("N18.3", "Chronic kidney disease, stage 3"), ("I50.9", "Heart failure"),
              ("E78.0", "Pure hypercholesterolaemia"), ("J45.9", "Asthma, unspecified"),
              ("M81.9", "Osteoporosis, unspecified")]
MEDICATIONS = [("A10BA02", "metformin"), ("C09AA05", "ramipril"), ("C10AA05", "atorvastatin"),
               ("B01AF01", "rivaroxaban"), ("C07AB02", "metoprolol"), ("N02BE01", "paracetamol"),
               ("R03AC02", "salbutamol"), ("N06AB06", "sertraline"), ("C03CA01", "furosemide"),
               ("A02BC01", "omeprazole"), ("H03AA01", "levothyroxine"), ("N05CF01", "zopiclone")]
SERVICE_CODES = [("24323-8", "Comprehensive metabolic panel"), ("58410-2", "CBC panel"),
                 ("24331-1", "Lipid panel"), ("30522-7", "C reactive protein"),
                 ("4548-4", "Hemoglobin A1c"), ("11502-2", "Laboratory report")]
SR_STATUS = ["active"] * 3 + ["completed"] * 5 + ["revoked", "on-hold"]

GIVEN = ["Kari", "Ola", "Ingrid", "Lars", "Anne", "Per", "Marit", "Jan", "Liv", "Knut", "Solveig",
         "Bjørn", "Randi", "Arne", "Berit", "Nils", "Astrid", "Hans", "Gunn", "Tor", "Sigrid",
         "Erik", "Hilde", "Odd", "Kristin", "Geir", "Nora", "Magnus", "Emma", "Jakob", "Sofie",
         "Henrik", "Ida", "Sander", "Maja", "Even", "Thea", "Sindre", "Ane", "Øystein"]
FAMILY = ["Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen",
          "Kristiansen", "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen",
          "Hagen", "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Halvorsen",
          "Henriksen", "Lund", "Sørensen", "Jakobsen", "Moen", "Gundersen", "Iversen", "Strand",
          "Solberg", "Svendsen", "Eide", "Knutsen", "Martinsen", "Paulsen", "Bakken", "Kristoffersen",
          "Mathisen", "Lie", "Amundsen", "Nguyen", "Rasmussen", "Ali", "Lunde", "Solheim",
          "Berntsen", "Moe", "Kristensen", "Bakke", "Fredriksen", "Holm", "Lien", "Hauge",
          "Christensen", "Andresen", "Nielsen", "Knudsen", "Evensen", "Sæther", "Aas",
          "Myhre", "Hanssen", "Ahmed", "Haugland", "Thomassen", "Sivertsen", "Simonsen",
          "Danielsen", "Berge", "Gulbrandsen", "Vik", "Brekke", "Tangen", "Fjeld", "Nygård",
          "Aasen", "Rønning", "Bjerke", "Ødegård", "Tveit", "Foss", "Nordby", "Sandvik",
          "Hovland", "Bråten", "Vold", "Birkeland", "Rustad", "Lindberg", "Skogen", "Fosse",
          "Grønvold", "Mikkelsen", "Engen", "Sunde", "Torgersen", "Nordmann", "Storvik",
          "Eikeland", "Helland", "Kvam", "Rønneberg", "Wold", "Hoel", "Aune", "Vestby",
          "Tønnessen", "Lyngstad", "Sunnanå", "Fagerli", "Hovde", "Ulvestad", "Kleppe",
          "Grimstad", "Tjelta", "Sæle", "Dale", "Haaland", "Vatne", "Skaar", "Ness"]
CITIES = [("Bergen", "5003"), ("Bergen", "5052"), ("Bergen", "5145"), ("Fyllingsdalen", "5147"),
          ("Loddefjord", "5171"), ("Nesttun", "5221"), ("Åsane", "5116"), ("Laksevåg", "5160")]


def pnr(i: int) -> str:
    """The bench identifier of patient *i*: 11 digits, unique (7919 is a unit mod 10**11)."""
    return f"{(i * 7919 + 12345) % 10 ** 11:011d}"


def patient_id(i: int) -> str:
    return f"bp{i:06d}"


@dataclass(frozen=True)
class PatientPlan:
    index: int
    id: str
    pnr: str
    family: str
    given: str
    size: int  # resources in the compartment, the Patient included
    heavy: bool


def plan(i: int) -> PatientPlan:
    rng = random.Random(SEED * 1_000_003 + i)
    heavy = i % HEAVY_EVERY == HEAVY_EVERY // 3
    size = HEAVY_SIZE if heavy else 1 + rng.randint(3, 90)
    return PatientPlan(i, patient_id(i), pnr(i), rng.choice(FAMILY), rng.choice(GIVEN), size,
                       heavy)


class Population:
    """The first ``total`` resources of the synthetic tenant, in patient order."""

    def __init__(self, total: int):
        self.total = total
        self.patients: list[PatientPlan] = []
        n = 0
        i = 0
        while n < total:
            p = plan(i)
            self.patients.append(p)
            n += p.size
            i += 1
        self._stats: list[tuple[Counter, Counter]] = []

    @property
    def complete_patients(self) -> list[PatientPlan]:
        """Patients whose whole compartment is within the first ``total`` resources."""
        n, out = 0, []
        for p in self.patients:
            n += p.size
            if n <= self.total:
                out.append(p)
        return out

    def allowed(self) -> list[int]:
        """How many resources of each patient's compartment fall within ``total``."""
        out, left = [], self.total
        for p in self.patients:
            out.append(min(p.size, left))
            left -= out[-1]
        return out

    def resources(self, stream: int = 0, streams: int = 1) -> Iterator[dict]:
        """The resources of patients ``i % streams == stream``, in patient order.

        The streams partition the tenant and never refer to each other's resources, so each
        can be loaded by its own client, in order, while the server checks references."""
        types: Counter[str] = Counter()
        codes: Counter[str] = Counter()
        self._stats.append((types, codes))
        for p, n in zip(self.patients, self.allowed()):
            if p.index % streams != stream:
                continue
            for k, r in enumerate(patient_resources(p)):
                if k >= n:
                    break
                types[r["resourceType"]] += 1
                if r["resourceType"] == "Observation":
                    codes[r["code"]["coding"][0]["code"]] += 1
                yield r

    @property
    def types(self) -> Counter[str]:
        return sum((t for t, _ in self._stats), Counter())

    @property
    def obs_codes(self) -> Counter[str]:
        """Observations per LOINC code among the resources generated so far."""
        return sum((c for _, c in self._stats), Counter())


def _date(rng: random.Random, y0: int = 2015, y1: int = 2025) -> tuple[int, int, int]:
    return rng.randint(y0, y1), rng.randint(1, 12), rng.randint(1, 28)


def _dt(y: int, m: int, d: int, rng: random.Random) -> str:
    return f"{y:04d}-{m:02d}-{d:02d}T{rng.randint(7, 20):02d}:{rng.randint(0, 59):02d}:00+01:00"


def _ref(p: PatientPlan) -> dict:
    return {"reference": f"Patient/{p.id}", "display": f"{p.given} {p.family}"}


def patient_resources(p: PatientPlan) -> Iterator[dict]:
    rng = random.Random(SEED * 7_000_003 + p.index)
    i = p.index
    city, postal = CITIES[i % len(CITIES)]
    by = rng.randint(1930, 2015)
    yield {
        "resourceType": "Patient", "id": p.id,
        "identifier": [{"use": "official", "system": PNR_SYSTEM, "value": p.pnr}],
        "active": True,
        "name": [{"use": "official", "family": p.family,
                  "given": [p.given] + ([rng.choice(GIVEN)] if rng.random() < 0.4 else [])}],
        "telecom": [{"system": "phone", "value": f"+47 9{(i * 7907) % 10000000:07d}",
                     "use": "mobile"}],
        "gender": "female" if rng.random() < 0.5 else "male",
        "birthDate": f"{by:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address": [{"use": "home", "line": [f"Storgata {rng.randint(1, 200)}"], "city": city,
                     "postalCode": postal, "country": "NO"}],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47",
                                                    "code": "nb"}]}}],
    }
    n = p.size - 1
    n_enc = max(1, n // 8)
    n_cond = n // 12
    n_med = n // 10
    n_sr = n // 10
    n_obs = n - n_enc - n_cond - n_med - n_sr
    subj = _ref(p)
    encounters = []
    for j in range(n_enc):
        y, m, d = _date(rng)
        inpatient = rng.random() < 0.2
        eid = f"be{i:06d}-{j}"
        encounters.append(eid)
        start = _dt(y, m, d, rng)
        yield {
            "resourceType": "Encounter", "id": eid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "IMP" if inpatient else "AMB",
                      "display": "inpatient encounter" if inpatient else "ambulatory"},
            "subject": subj,
            "period": {"start": start,
                       "end": f"{y:04d}-{m:02d}-{min(28, d + (3 if inpatient else 0)):02d}"
                              f"T21:00:00+01:00"},
        }
    for j in range(n_obs):
        code, display, unit, lo, hi, cat, _ = rng.choices(OBS_CODES, _OBS_WEIGHTS)[0]
        y, m, d = _date(rng)
        yield {
            "resourceType": "Observation", "id": f"bo{i:06d}-{j}", "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": cat}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}],
                     "text": display},
            "subject": subj,
            "encounter": {"reference": f"Encounter/{rng.choice(encounters)}"},
            "effectiveDateTime": _dt(y, m, d, rng),
            "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit,
                              "system": UCUM, "code": unit},
        }
    for j in range(n_cond):
        code, display = rng.choice(CONDITIONS)
        y, m, d = _date(rng, 2000, 2025)
        active = rng.random() < 0.7
        yield {
            "resourceType": "Condition", "id": f"bc{i:06d}-{j}",
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active" if active else "resolved"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed"}]},
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code,
                                 "display": display}], "text": display},
            "subject": subj,
            "onsetDateTime": f"{y:04d}-{m:02d}-{d:02d}",
            "recordedDate": f"{y:04d}-{m:02d}-{d:02d}",
        }
    for j in range(n_med):
        code, display = rng.choice(MEDICATIONS)
        y, m, d = _date(rng)
        yield {
            "resourceType": "MedicationStatement", "id": f"bm{i:06d}-{j}",
            "status": rng.choice(["active", "active", "completed", "stopped"]),
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc",
                                                      "code": code, "display": display}],
                                          "text": display},
            "subject": subj,
            "effectivePeriod": {"start": f"{y:04d}-{m:02d}-{d:02d}"},
            "dateAsserted": f"{y:04d}-{m:02d}-{d:02d}",
            "dosage": [{"text": f"1 tablett {rng.randint(1, 3)} ganger daglig"}],
        }
    for j in range(n_sr):
        code, display = rng.choice(SERVICE_CODES)
        y, m, d = _date(rng)
        yield {
            "resourceType": "ServiceRequest", "id": f"bs{i:06d}-{j}",
            "status": rng.choice(SR_STATUS), "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007",
                                      "display": "Laboratory procedure"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}],
                     "text": display},
            "subject": subj,
            "encounter": {"reference": f"Encounter/{rng.choice(encounters)}"},
            "authoredOn": _dt(y, m, d, rng),
        }


def bundles(resources: Iterator[dict], size: int = 1000) -> Iterator[dict]:
    """Transaction Bundles of ``size`` PUT entries (client-assigned ids)."""
    batch: list[dict] = []
    for r in resources:
        batch.append({"resource": r, "request": {"method": "PUT",
                                                 "url": f"{r['resourceType']}/{r['id']}"}})
        if len(batch) == size:
            yield {"resourceType": "Bundle", "type": "transaction", "entry": batch}
            batch = []
    if batch:
        yield {"resourceType": "Bundle", "type": "transaction", "entry": batch}
