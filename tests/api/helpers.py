"""Small helpers for API tests."""

from __future__ import annotations

FHIR = {"Content-Type": "application/fhir+json"}


def patient(family: str = "Nordmann", **extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Kari"]}], **extra}


def create(client, resource: dict, **headers) -> dict:
    r = client.post(f"{client.base}/{resource['resourceType']}", json=resource,
                    headers={**FHIR, **headers})
    assert r.status_code == 201, r.text
    return r.json()


def issue_expressions(response) -> list[str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [e for i in body["issue"] for e in i.get("expression", [])]
