"""The local store as a source: the patient's compartment, read through the
:class:`~fkj.repository.repository.Repository` so the access policy (search filters and
result checks) applies exactly as for a search by the same caller."""

from __future__ import annotations

import time

import orjson

from fkj.errors import FhirError, Forbidden
from fkj.sources.base import PatientKey, SourceResult, stamp_source

NAME = "lokal"
#: the types the overview shows (the per-type fallback reads only these)
SHOWN_TYPES = ("AllergyIntolerance", "Consent", "Condition", "Flag", "Procedure",
               "DeviceUseStatement", "Device", "Encounter", "ServiceRequest", "EpisodeOfCare",
               "MedicationStatement", "MedicationRequest", "Observation", "DiagnosticReport",
               "QuestionnaireResponse", "CareTeam", "RelatedPerson")


class LocalSource:
    name = NAME
    display = "Lokal journal (FKJ)"
    types = ("*",)

    def __init__(self, repo, base_url: str):
        self.repo = repo
        self.url = f"{base_url}/fhir/{repo.tenant}"

    def fetch(self, patient: PatientKey, deadline: float | None = None,
              max_items: int = 1000, types: tuple[str, ...] | None = None) -> SourceResult:
        t0 = time.perf_counter()
        repo = self.repo
        params = [("_compartment", f"Patient/{patient.local_id}"),
                  ("_type", ",".join(types or SHOWN_TYPES)), ("_count", str(max_items))]
        options = {"strict": False, "default_count": max_items, "max_count": max_items,
                   "default_total": "none"}
        try:
            results = [repo.search(None, params, **options)]
        except Forbidden:
            # scopes for some types only: one search per type the caller may search
            results = []
            for rtype in types or SHOWN_TYPES:
                try:
                    results.append(repo.search(rtype, params, **options))
                except Forbidden:
                    continue
        items = []
        for result in results:
            for row in result.matches:
                if row.type == "Patient" or (types and row.type not in types):
                    continue
                items.append(stamp_source(orjson.loads(row.content), self.url, self.display))
        out = SourceResult(self.name, self.display, self.url, items)
        if any(r.next_cursor for r in results):
            out.detail = f"only the first {max_items} resources were read"
        out.elapsed_ms = (time.perf_counter() - t0) * 1000
        return out

    def units(self, org_ids: list[str]) -> tuple[list[dict], list[dict]]:
        """The Organizations and their HealthcareServices (unit and contact of services)."""
        if not org_ids:
            return [], []
        ids = ",".join(sorted(set(org_ids)))
        orgs, services = [], []
        try:  # one query: the units' services, and the units themselves
            res = self.repo.search("HealthcareService", [
                ("organization", ids), ("_include", "HealthcareService:organization"),
                ("_count", "200")], strict=False, default_count=200, max_count=200,
                default_total="none")
            rows = [(r, services) for r in res.matches] + [(r, orgs) for r in res.includes]
        except FhirError:  # e.g. no HealthcareService in the scopes
            rows = []
        have = {r.id for r, sink in rows if sink is orgs}
        missing = [i for i in sorted(set(org_ids)) if i not in have]
        if missing:
            try:
                res = self.repo.search("Organization", [("_id", ",".join(missing)),
                                                        ("_count", "200")], strict=False,
                                       default_count=200, max_count=200, default_total="none")
                rows += [(r, orgs) for r in res.matches]
            except FhirError:
                pass
        for row, sink in rows:
            sink.append(stamp_source(orjson.loads(row.content), self.url, self.display))
        return orgs, services
