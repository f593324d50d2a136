"""The shapes handed between the parts of the authorisation server."""

from __future__ import annotations

from typing import Required, TypedDict


class Grant(TypedDict, total=False):
    """What a login (or a backend client) was granted: kept with a code or a refresh token
    (as JSON) and turned into the claims of every access token issued from it."""

    kind: Required[str]   # practitioner | citizen | client
    sub: Required[str]    # the person's FHIR reference (fhirUser), or the client id
    fhir_user: str | None
    hpr_number: str | None
    pid: str | None
    roles: list[str]
    unit: str | None
    organisation: str | None
    acr: str | None
    patient: str | None
    encounter: str | None
    nonce: str | None
    need_patient_banner: bool
