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


class LaunchContext(TypedDict, total=False):
    """An EHR launch (``launch`` parameter): the patient, encounter and user the EHR opened
    the app with (ids without their type; the user a reference)."""

    patient: str | None
    encounter: str | None
    user: str | None


class PendingAuthorization(TypedDict):
    """A checked authorisation request, sealed (signed, ten minutes) while the person logs in.
    """

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str            # the granted scopes, sorted, space-separated
    tenant: str
    launch: LaunchContext  # empty without an EHR launch
    nonce: str | None
    ehr: bool             # an EHR launch (then no patient banner is needed)
