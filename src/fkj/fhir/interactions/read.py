"""read and vread."""

from __future__ import annotations

from fkj.fhir.interactions.common import version_headers
from fkj.fhir.request import FhirRequest, FhirResponse


def read(req: FhirRequest, repo, rtype: str, rid: str) -> FhirResponse:
    s = repo.read(rtype, rid)
    headers = version_headers(s)
    inm = req.header("if-none-match")
    if inm and inm.strip() in (s.etag, f'"{s.version}"'):
        return FhirResponse(304, None, headers)
    return FhirResponse(200, s.content, headers, shown=[(s.type, s.id, s.version, s.content)])


def vread(req: FhirRequest, repo, rtype: str, rid: str, vid: str) -> FhirResponse:
    s = repo.vread(rtype, rid, vid)
    return FhirResponse(200, s.content, version_headers(s),
                        shown=[(s.type, s.id, s.version, s.content)])
