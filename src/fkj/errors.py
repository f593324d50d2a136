"""The exception hierarchy, each mapped to one FHIR OperationOutcome issue code and HTTP status.

::

    FhirError (500, exception)
     ├── BadRequest (400, invalid)
     │    ├── InvalidResource (400, structure|value|required) — fails R4 structure validation
     │    ├── InvalidSearch (400, invalid)                     — malformed search parameter
     │    └── InvalidBundle (400, invalid)
     ├── Unauthorized (401, login)
     ├── Forbidden (403, forbidden)
     ├── NotFound (404, not-found)
     ├── MethodNotAllowed (405, not-supported)
     ├── NotAcceptable (406, not-supported)
     ├── Conflict (409, conflict)
     ├── Gone (410, deleted)
     ├── PreconditionFailed (412, conflict)
     ├── PayloadTooLarge (413, too-costly)
     ├── UnsupportedMediaType (415, not-supported)
     ├── Unprocessable (422, processing)                      — business rule (e.g. references)
     ├── InsufficientStorage (507, no-store)                  — the disk is full
     └── ServiceUnavailable (503, transient)                  — always with Retry-After
          └── DatabaseUnavailable (503, transient)            — cannot reach the database

Raise these from anywhere below the HTTP edge; the edge turns them into an OperationOutcome
(:func:`fkj.fhir.outcomes.outcome_for`). Faults of the storage (a database that cannot be
reached, a full disk) are raised by the drivers as their own exceptions; one function,
:func:`fkj.store.faults.fault_for`, names the error above each stands for, and the edge
(:mod:`fkj.edge`) applies it on every route. Anything else that escapes is a bug: logged, and
answered 500 with an OperationOutcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class Issue:
    """One OperationOutcome.issue."""

    severity: str
    code: str
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_fhir(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class FhirError(Exception):
    status = 500
    code = "exception"
    #: headers every response of this error carries (``Retry-After`` of a 503)
    default_headers: ClassVar[dict[str, str]] = {}

    def __init__(self, diagnostics: str, *, expression: list[str] | str | None = None,
                 issues: list[Issue] | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(diagnostics)
        if isinstance(expression, str):
            expression = [expression]
        self.diagnostics = diagnostics
        self.headers = {**self.default_headers, **(headers or {})}
        self.issues = issues or [Issue("error", code or self.code, diagnostics, expression or [])]


class BadRequest(FhirError):
    status, code = 400, "invalid"


class InvalidResource(BadRequest):
    code = "structure"


class InvalidSearch(BadRequest):
    code = "invalid"


class InvalidBundle(BadRequest):
    code = "invalid"


class Unauthorized(FhirError):
    status, code = 401, "login"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class NotFound(FhirError):
    status, code = 404, "not-found"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class NotAcceptable(FhirError):
    status, code = 406, "not-supported"


class Conflict(FhirError):
    status, code = 409, "conflict"


class Gone(FhirError):
    status, code = 410, "deleted"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class PayloadTooLarge(FhirError):
    status, code = 413, "too-costly"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class Unprocessable(FhirError):
    status, code = 422, "processing"


class InsufficientStorage(FhirError):
    """The disk of the database (or of a file the request writes) is full: nothing was
    stored; the operator must make room (RFC 4918 507)."""

    status, code = 507, "no-store"


class ServiceUnavailable(FhirError):
    """A passing condition: the client retries after ``Retry-After`` seconds."""

    status, code = 503, "transient"
    default_headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached (down, restarting, refusing connections, or the
    connection was lost under the request): nothing was confirmed."""
