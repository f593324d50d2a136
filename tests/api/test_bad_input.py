"""Bad input, table-driven: every case names the status and the OperationOutcome expression
the server must answer with; valid Norwegian identifiers and external references pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import pytest

from fkj.model.identifiers import DNR_SYSTEM, FNR_SYSTEM
from tests.api.builders import (
    count,
    dnr,
    expressions_of,
    fnr,
    outcome,
    with_wrong_control_digit,
)
from tests.api.helpers import FHIR, create
from tests.conftest import auth_headers

MB = 1024 * 1024


def _patient(**extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": "Hansen", "given": ["Ola"]}], **extra}


def _obs(**extra) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7",
                                 "display": "Kroppsvekt"}]}, **extra}


def _nested_extensions(levels: int, coding_leaf: bool = False) -> dict:
    """A Patient whose JSON nests 3 + 2 * levels deep (+1 with a Coding leaf)."""
    ext: dict = {"url": "https://fkj.example.no/ext/blad", "valueString": "blad"}
    if coding_leaf:
        ext = {"url": "https://fkj.example.no/ext/blad",
               "valueCoding": {"system": "https://fkj.example.no/kode", "code": "x"}}
    for i in range(levels):
        ext = {"url": f"https://fkj.example.no/ext/niva{i}", "extension": [ext]}
    return _patient(extension=[ext])


@dataclass
class Case:
    id: str
    status: int
    #: the expression the OperationOutcome must name (None: only an OperationOutcome is required)
    expression: str | None = None
    method: str = "POST"
    path: str = "Patient"
    body: Any = None  # dict → JSON; bytes → raw; callable → called for a dict
    headers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


ERROR_CASES = [
    Case("malformed-json", 400, body=b'{"resourceType": "Patient", "name": [{"family": "X"}'),
    Case("trailing-garbage", 400, body=b'{"resourceType": "Patient"} x'),
    Case("empty-body", 400, body=b""),
    Case("whitespace-body", 400, body=b"   \n"),
    Case("body-over-10-MB", 413,
         body=lambda: _patient(name=[{"family": "x" * (10 * MB + 16)}])),
    Case("nesting-65-levels", 400, body=lambda: _nested_extensions(31)),
    Case("nesting-83-levels", 400, body=lambda: _nested_extensions(40)),
    Case("accept-xml", 406, method="GET", headers={"Accept": "application/fhir+xml"}),
    Case("format-xml", 406, method="GET", params={"_format": "xml"}),
    Case("format-xml-on-create", 406, body=_patient(), params={"_format": "application/fhir+xml"}),
    Case("content-type-text-plain", 415, body=orjson.dumps(_patient()),
         headers={"Content-Type": "text/plain"}),
    Case("content-type-xml", 415, body=b"<Patient xmlns='http://hl7.org/fhir'/>",
         headers={"Content-Type": "application/fhir+xml"}),
    Case("wrong-resource-type", 400, "resourceType", body=_obs()),
    Case("body-is-array", 400, body=b"[]"),
    Case("id-mismatch-on-put", 400, "Patient.id", method="PUT", path="Patient/url-id",
         body=_patient(id="body-id")),
    Case("id-missing-on-put", 400, "Patient.id", method="PUT", path="Patient/url-id",
         body=_patient()),
    Case("unknown-element", 400, "Patient.foo", body=_patient(foo="bar")),
    Case("nested-unknown-element", 400, "Patient.name[0].foo",
         body=_patient(name=[{"family": "Hansen", "foo": "bar"}])),
    Case("wrong-type-boolean", 400, "Patient.active", body=_patient(active="yes")),
    Case("invalid-date", 400, "Patient.birthDate", body=_patient(birthDate="2023-02-30")),
    Case("invalid-date-format", 400, "Patient.birthDate", body=_patient(birthDate="17.05.1984")),
    Case("invalid-id-in-url", 400, method="GET", path="Patient/ugyldig$id"),
    Case("too-long-id-in-url", 400, method="GET", path="Patient/" + "a" * 65),
    Case("invalid-decimal", 400, "Observation.valueQuantity.value", path="Observation",
         body=_obs(valueQuantity={"value": "72,5", "unit": "kg"})),
    Case("missing-required", 400, "Observation.status", path="Observation",
         body={k: v for k, v in _obs().items() if k != "status"}),
    Case("max-1-as-array", 400, "Patient.gender", body=_patient(gender=["female"])),
    Case("reference-to-missing-resource", 422, "Observation.subject.reference",
         path="Observation", body=_obs(subject={"reference": "Patient/finnes-ikke"})),
    Case("reference-to-unknown-type", 422, "Observation.subject.reference",
         path="Observation", body=_obs(subject={"reference": "Pasient/123"})),
    Case("fnr-wrong-control-digit", 400, "Patient.identifier[0].value",
         body=lambda: _patient(identifier=[{"system": FNR_SYSTEM,
                                            "value": with_wrong_control_digit(fnr())}])),
    Case("fnr-second-identifier-wrong", 400, "Patient.identifier[1].value",
         body=lambda: _patient(identifier=[
             {"system": FNR_SYSTEM, "value": fnr()},
             {"system": FNR_SYSTEM, "value": with_wrong_control_digit(fnr(date(1975, 12, 1)))}])),
    Case("fnr-impossible-date", 400, "Patient.identifier[0].value",
         body=_patient(identifier=[{"system": FNR_SYSTEM, "value": "31021234567"}])),
    Case("dnr-in-fnr-system", 400, "Patient.identifier[0].value",
         body=lambda: _patient(identifier=[{"system": FNR_SYSTEM, "value": dnr()}])),
    Case("dnr-wrong-control-digit", 400, "Patient.identifier[0].value",
         body=lambda: _patient(identifier=[{"system": DNR_SYSTEM,
                                            "value": with_wrong_control_digit(dnr())}])),
    Case("unknown-resource-type", 404, method="GET", path="Pasient"),
    Case("unknown-resource-type-create", 404, path="Pasient", body={"resourceType": "Pasient"}),
]


def _send(client, case: Case, base: str | None = None):
    body = case.body() if callable(case.body) else case.body
    kwargs: dict = {"params": case.params}
    headers = {**FHIR, **case.headers} if case.method in ("POST", "PUT") else dict(case.headers)
    if isinstance(body, (bytes, bytearray)):
        kwargs["content"] = bytes(body)
    elif body is not None:
        kwargs["content"] = orjson.dumps(body)
    return client.request(case.method, f"{base or client.base}/{case.path}", headers=headers,
                          **kwargs)


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.id for c in ERROR_CASES])
def test_bad_input_is_refused_with_operation_outcome(client, case):
    r = _send(client, case)
    assert r.status_code == case.status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    oo = outcome(r)
    assert all(i["severity"] in ("error", "fatal") for i in oo["issue"]), oo
    if case.expression is not None:
        assert case.expression in expressions_of(oo), oo
    # nothing was stored
    assert client.get(f"{client.base}/_history").json()["total"] == 0


@pytest.mark.parametrize("levels,coding_leaf", [(25, False), (30, False), (30, True)],
                         ids=["depth-53", "depth-63", "depth-64-exactly-the-limit"])
def test_nesting_within_the_limit_is_accepted(client, levels, coding_leaf):
    r = client.post(f"{client.base}/Patient", json=_nested_extensions(levels, coding_leaf),
                    headers=FHIR)
    assert r.status_code == 201, r.text


def test_reference_to_another_tenants_resource_is_422(client, db):
    other = db.new_tenant("Nabokommune")
    h = {**FHIR, **auth_headers(client.app.state.fkj, other)}
    r = client.post(f"/fhir/{other}/Patient", json=_patient(), headers=h)
    assert r.status_code == 201, r.text
    foreign = r.json()["id"]
    r = client.post(f"{client.base}/Observation",
                    json=_obs(subject={"reference": f"Patient/{foreign}"}), headers=FHIR)
    assert r.status_code == 422, r.text
    assert "Observation.subject.reference" in expressions_of(outcome(r))
    assert count(client, "Observation") == 0


def test_reference_to_existing_resource_in_own_tenant_is_accepted(client):
    p = create(client, _patient())
    r = client.post(f"{client.base}/Observation",
                    json=_obs(subject={"reference": f"Patient/{p['id']}"}), headers=FHIR)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("reference", [
    "https://fhir.helsenorge.example.no/fhir/Patient/123",
    "http://ehelse.example.no/fhir/Practitioner/9144889",
], ids=["https", "http"])
def test_absolute_external_reference_is_accepted(client, reference):
    r = client.post(f"{client.base}/Observation", json=_obs(subject={"reference": reference}),
                    headers=FHIR)
    assert r.status_code == 201, r.text
    assert r.json()["subject"]["reference"] == reference


@pytest.mark.parametrize("system,make", [
    (FNR_SYSTEM, lambda: fnr(synthetic=True)),
    (FNR_SYSTEM, lambda: fnr(date(1962, 11, 30), synthetic=False)),
    (DNR_SYSTEM, lambda: dnr(synthetic=True)),
    (DNR_SYSTEM, lambda: dnr(date(2001, 1, 31), synthetic=False)),
], ids=["synthetic-fnr-month-plus-80", "ordinary-fnr", "synthetic-dnr", "ordinary-dnr"])
def test_valid_person_numbers_are_accepted(client, system, make):
    value = make()
    r = client.post(f"{client.base}/Patient",
                    json=_patient(identifier=[{"system": system, "value": value}]), headers=FHIR)
    assert r.status_code == 201, r.text
    assert r.json()["identifier"][0]["value"] == value
    assert count(client, "Patient", {"identifier": f"{system}|{value}"}) == 1


def test_synthetic_fnr_has_month_plus_80():
    value = fnr(date(1984, 5, 17))
    assert value[:6] == "178584"


def test_unknown_tenant_is_404_operation_outcome(client):
    for path, method in (("/fhir/9999/Patient", "GET"), ("/fhir/9999/metadata", "GET"),
                         ("/fhir/9999/Patient", "POST")):
        r = client.request(method, path, json=_patient() if method == "POST" else None,
                           headers=FHIR if method == "POST" else {})
        assert r.status_code == 404, (path, r.text)
        outcome(r)
