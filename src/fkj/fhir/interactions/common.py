"""Helpers shared by the interactions: response shaping by ``Prefer`` and locations."""

from __future__ import annotations

from fkj.fhir.jsonio import http_date
from fkj.fhir.outcomes import info_outcome
from fkj.fhir.request import FhirRequest, FhirResponse
from fkj.repository.repository import Stored


def location(base: str, tenant: str, s: Stored) -> str:
    return f"{base}/fhir/{tenant}/{s.type}/{s.id}/_history/{s.version}"


def version_headers(s: Stored) -> dict[str, str]:
    return {"ETag": s.etag, "Last-Modified": http_date(s.last_updated)}


def resource_response(req: FhirRequest, status: int, s: Stored, *, base: str,
                      with_location: bool = False, message: str | None = None) -> FhirResponse:
    headers = version_headers(s)
    if with_location:
        headers["Location"] = location(base, req.tenant, s)
    prefer = req.prefer_return
    if prefer == "minimal":
        return FhirResponse(status, None, headers)
    if prefer == "OperationOutcome":
        return FhirResponse(status, info_outcome(message or f"{s.type}/{s.id} version {s.version}"),
                            headers)
    return FhirResponse(status, s.content, headers)
