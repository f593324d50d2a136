"""OperationOutcome construction, and the mapping of exceptions to responses."""

from __future__ import annotations

from fkj.errors import FhirError, Issue
from fkj.fhir.request import FhirResponse


def operation_outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def info_outcome(text: str, code: str = "informational") -> dict:
    return operation_outcome([Issue("information", code, text)])


def outcome_for(error: FhirError) -> FhirResponse:
    return FhirResponse(error.status, operation_outcome(error.issues), dict(error.headers))


def prefix_expressions(error: FhirError, prefix: str) -> FhirError:
    """Point an error's expressions into a Bundle entry.

    ``Patient.name[0]`` inside entry 3 becomes ``Bundle.entry[3].resource.name[0]``.
    """
    for issue in error.issues:
        moved = []
        for e in issue.expression:
            head, dot, rest = e.partition(".")
            if head[:1].isupper() and "[" not in head:
                moved.append(f"{prefix}.resource" + (dot + rest if rest else ""))
            else:
                moved.append(f"{prefix}.{e}")
        issue.expression = moved or [prefix]
        issue.diagnostics = f"{prefix}: {issue.diagnostics}"
    return error
