"""Deterministic synthetic NDJSON for tests and benchmarks (not clinical-looking data).

``write_ndjson(directory, patients, seed)`` writes ``Patient.ndjson``, ``Encounter.ndjson``
and ``Observation.ndjson`` (1 + 2 + 7 resources per patient: ten in all), with references
from the later files to the earlier ones, so an import must resolve them in any order.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

GIVEN = ["Ola", "Kari", "Per", "Anne", "Lars", "Ingrid", "Nils", "Sigrid", "Jon", "Marit"]
FAMILY = ["Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Berg"]
LOINC = [("8867-4", "Heart rate", "/min", 50, 110), ("8310-5", "Body temperature", "Cel", 36, 39),
         ("29463-7", "Body weight", "kg", 40, 120), ("8302-2", "Body height", "cm", 150, 200),
         ("9279-1", "Respiratory rate", "/min", 10, 25), ("2708-6", "Oxygen saturation", "%", 90, 100),
         ("39156-5", "BMI", "kg/m2", 18, 35)]


def resources(patients: int, seed: int = 42, prefix: str = "p"):
    """Yield (file stem, resource) in file order: all Patients, Encounters, Observations."""
    rnd = random.Random(seed)
    for i in range(patients):
        yield "Patient", {
            "resourceType": "Patient", "id": f"{prefix}{i}",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.9999", "value": f"L{seed}-{i}"}],
            "active": True,
            "name": [{"family": rnd.choice(FAMILY), "given": [rnd.choice(GIVEN)]}],
            "gender": rnd.choice(["male", "female"]),
            "birthDate": f"{rnd.randint(1930, 2020)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
            "address": [{"city": "Bergen", "postalCode": f"{5000 + rnd.randint(0, 999)}"}]}
    for i in range(patients):
        for k in range(2):
            yield "Encounter", {
                "resourceType": "Encounter", "id": f"{prefix}{i}-e{k}", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "AMB"},
                "subject": {"reference": f"Patient/{prefix}{i}"},
                "period": {"start": f"2025-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T10:00:00Z"}}
    for i in range(patients):
        for k, (code, text, unit, lo, hi) in enumerate(LOINC):
            yield "Observation", {
                "resourceType": "Observation", "id": f"{prefix}{i}-o{k}", "status": "final",
                "category": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code,
                                     "display": text}], "text": text},
                "subject": {"reference": f"Patient/{prefix}{i}"},
                "encounter": {"reference": f"Encounter/{prefix}{i}-e{k % 2}"},
                "effectiveDateTime": f"2025-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T10:00:00Z",
                "valueQuantity": {"value": round(rnd.uniform(lo, hi), 1), "unit": unit,
                                  "system": "http://unitsofmeasure.org", "code": unit}}


def write_ndjson(directory: Path, patients: int, seed: int = 42, prefix: str = "p") -> dict[str, int]:
    """Write the three files; returns the count per type."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    handles = {}
    try:
        for stem, res in resources(patients, seed, prefix):
            fh = handles.get(stem)
            if fh is None:
                fh = handles[stem] = open(directory / f"{stem}.ndjson", "wb")
            fh.write(orjson.dumps(res) + b"\n")
            counts[stem] = counts.get(stem, 0) + 1
    finally:
        for fh in handles.values():
            fh.close()
    return counts
