"""Behaviour of fkj.model.validation: each kind of bad input -> exactly the expected issue."""

import copy

import pytest
from model_examples import VALID

from fkj.model.validation import RESOURCE_TYPES, is_known_type, validate_resource

P = {"resourceType": "Patient"}
OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "puls"}}


def pat(**kw):
    return dict(P, **kw)


def obs(**kw):
    return dict(OBS, **kw)


def found(resource, expected_type=None):
    return sorted((i.code, i.expression[0] if i.expression else "")
                  for i in validate_resource(resource, expected_type))


BAD = [
    # unknown elements
    ("unknown top-level element", pat(foo=1), [("structure", "Patient.foo")]),
    ("unknown nested element", pat(name=[{"family": "N", "foo": 1}]),
     [("structure", "Patient.name[0].foo")]),
    ("two unknown elements", pat(foo=1, bar=2),
     [("structure", "Patient.bar"), ("structure", "Patient.foo")]),
    ("unknown element in backbone", pat(contact=[{"gender": "male", "x": 1}]),
     [("structure", "Patient.contact[0].x")]),
    # wrong JSON types
    ("boolean as string", pat(active="yes"), [("value", "Patient.active")]),
    ("number as string", obs(valueQuantity={"value": "1"}),
     [("value", "Observation.valueQuantity.value")]),
    ("number as boolean", obs(valueQuantity={"value": True}),
     [("value", "Observation.valueQuantity.value")]),
    ("string as number", pat(name=[{"family": 5}]), [("value", "Patient.name[0].family")]),
    ("object where primitive", pat(gender={"x": 1}), [("value", "Patient.gender")]),
    ("primitive where object", pat(maritalStatus="M"), [("structure", "Patient.maritalStatus")]),
    # codes and primitive values
    ("bad gender code", pat(gender="xx"), [("value", "Patient.gender")]),
    ("bad status code", {"resourceType": "Observation", "status": "done", "code": {"text": "x"}},
     [("value", "Observation.status")]),
    ("invalid date", pat(birthDate="2023-02-30"), [("value", "Patient.birthDate")]),
    ("1900 is no leap year", pat(birthDate="1900-02-29"), [("value", "Patient.birthDate")]),
    ("date with bad shape", pat(birthDate="13.09.1972"), [("value", "Patient.birthDate")]),
    ("invalid dateTime day", obs(effectiveDateTime="2023-04-31T10:00:00Z"),
     [("value", "Observation.effectiveDateTime")]),
    ("dateTime without zone", obs(effectiveDateTime="2023-04-01T10:00:00"),
     [("value", "Observation.effectiveDateTime")]),
    ("invalid instant", obs(issued="2023-02-29T10:00:00Z"), [("value", "Observation.issued")]),
    ("invalid period start", obs(effectivePeriod={"start": "2023-06-31"}),
     [("value", "Observation.effectivePeriod.start")]),
    ("bad id chars", pat(id="a_b"), [("value", "Patient.id")]),
    ("id too long", pat(id="x" * 65), [("value", "Patient.id")]),
    ("bad decimal", obs(valueQuantity={"value": "1,5"}),
     [("value", "Observation.valueQuantity.value")]),
    ("integer with fraction", obs(valueInteger=1.5), [("value", "Observation.valueInteger")]),
    ("integer out of range", obs(valueInteger=2147483648), [("value", "Observation.valueInteger")]),
    ("positiveInt zero", pat(multipleBirthInteger=1, photo=[{"size": -1}]),
     [("value", "Patient.photo[0].size")]),
    ("boolean as number", pat(active=1), [("value", "Patient.active")]),
    # required (min >= 1)
    ("Observation without status", {"resourceType": "Observation", "code": {"text": "x"}},
     [("required", "Observation.status")]),
    ("Observation without code", {"resourceType": "Observation", "status": "final"},
     [("required", "Observation.code")]),
    ("Observation without both", {"resourceType": "Observation"},
     [("required", "Observation.code"), ("required", "Observation.status")]),
    ("Bundle without type", {"resourceType": "Bundle"}, [("required", "Bundle.type")]),
    ("required in backbone", pat(link=[{"other": {"reference": "Patient/2"}}]),
     [("required", "Patient.link[0].type")]),
    ("required choice", {"resourceType": "MedicationRequest", "status": "active",
                         "intent": "order", "subject": {"reference": "Patient/1"}},
     [("required", "MedicationRequest.medication[x]")]),
    ("Narrative.status", pat(text={"div": "<div>x</div>"}), [("required", "Patient.text.status")]),
    ("Extension.url", pat(extension=[{"valueString": "x"}]),
     [("required", "Patient.extension[0].url")]),
    ("nested Extension.url", pat(name=[{"family": "N", "extension": [{"valueString": "x"}]}]),
     [("required", "Patient.name[0].extension[0].url")]),
    ("datatype required (Annotation.text)", obs(note=[{"authorString": "x"}]),
     [("required", "Observation.note[0].text")]),
    ("recursive backbone (Questionnaire.item.item)",
     {"resourceType": "Questionnaire", "status": "draft",
      "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1"}]}]},
     [("required", "Questionnaire.item[0].item[0].type")]),
    # cardinality shape
    ("max-1 given as array (code)", pat(gender=["male"]), [("structure", "Patient.gender")]),
    ("max-1 given as array (complex)", pat(maritalStatus=[{"text": "gift"}]),
     [("structure", "Patient.maritalStatus")]),
    ("array given as object", pat(name={"family": "N"}), [("structure", "Patient.name")]),
    ("array given as string", pat(name="N"), [("structure", "Patient.name")]),
    # empties and null
    ("empty string", pat(name=[{"family": ""}]), [("value", "Patient.name[0].family")]),
    ("empty uri", pat(identifier=[{"system": "", "value": "1"}]),
     [("value", "Patient.identifier[0].system")]),
    ("empty array", pat(name=[]), [("structure", "Patient.name")]),
    ("empty nested array", pat(name=[{"given": []}]), [("structure", "Patient.name[0].given")]),
    ("empty object", pat(name=[{}]), [("structure", "Patient.name[0]")]),
    ("empty complex object", pat(maritalStatus={}), [("structure", "Patient.maritalStatus")]),
    ("null value", pat(birthDate=None), [("structure", "Patient.birthDate")]),
    ("null in complex array", pat(name=[None]), [("structure", "Patient.name[0]")]),
    ("null complex", pat(maritalStatus=None), [("structure", "Patient.maritalStatus")]),
    # embedded resources
    ("contained unknown element",
     pat(contained=[{"resourceType": "Organization", "name": "x"},
                    {"resourceType": "Organization", "foo": 1}]),
     [("structure", "Patient.contained[1].foo")]),
    ("contained missing required",
     pat(contained=[{"resourceType": "Observation", "status": "final"}]),
     [("required", "Patient.contained[0].code")]),
    ("contained not an object", pat(contained=["x"]), [("structure", "Patient.contained[0]")]),
    ("contained unknown type", pat(contained=[{"resourceType": "Foo"}]),
     [("value", "Patient.contained[0].resourceType")]),
    ("contained without resourceType", pat(contained=[{"id": "a"}]),
     [("required", "Patient.contained[0].resourceType")]),
    ("bundle entries", {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "x"}},
        {"resource": {"resourceType": "Observation", "code": {"text": "x"}}}]},
     [("required", "Bundle.entry[2].resource.status"),
      ("value", "Bundle.entry[1].resource.gender")]),
    ("bundle entry deep path", {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "N", "foo": 1}]}}]},
     [("structure", "Bundle.entry[0].resource.name[0].foo")]),
    ("bundle in bundle", {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "active": "no"}}]}}]},
     [("value", "Bundle.entry[0].resource.entry[0].resource.active")]),
    ("bundle response outcome", {"resourceType": "Bundle", "type": "transaction-response",
                                 "entry": [{"response": {"status": "400", "outcome": {
                                     "resourceType": "OperationOutcome", "issue": [{}]}}}]},
     [("structure", "Bundle.entry[0].response.outcome.issue[0]")]),
    ("parameters resource", {"resourceType": "Parameters", "parameter": [
        {"name": "a", "resource": {"resourceType": "Patient", "x": 1}}]},
     [("structure", "Parameters.parameter[0].resource.x")]),
    ("parameters part resource", {"resourceType": "Parameters", "parameter": [
        {"name": "a", "part": [{"name": "b", "resource": {"resourceType": "Flag"}}]}]},
     [("required", "Parameters.parameter[0].part[0].resource.code"),
      ("required", "Parameters.parameter[0].part[0].resource.status"),
      ("required", "Parameters.parameter[0].part[0].resource.subject")]),
    # resourceType
    ("wrong resourceType vs expected", P, [("invalid", "resourceType")]),
    ("unknown resourceType", {"resourceType": "Pasient"}, [("value", "resourceType")]),
    ("missing resourceType", {"name": []}, [("required", "resourceType")]),
    ("non-string resourceType", {"resourceType": ["Patient"]}, [("structure", "resourceType")]),
]


@pytest.mark.parametrize("label,resource,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_expected_issue(label, resource, expected):
    expected_type = "Observation" if label == "wrong resourceType vs expected" else None
    assert found(resource, expected_type) == sorted(expected)


@pytest.mark.parametrize("resource", VALID,
                         ids=[f"{r['resourceType']}-{i}" for i, r in enumerate(VALID)])
def test_valid_examples_pass(resource):
    assert validate_resource(resource) == []
    assert validate_resource(resource, resource["resourceType"]) == []


def test_valid_examples_cover_requested_types():
    wanted = {"Patient", "Practitioner", "PractitionerRole", "Organization", "HealthcareService",
              "Location", "ServiceRequest", "EpisodeOfCare", "CareTeam", "AllergyIntolerance",
              "Consent", "Condition", "Procedure", "DeviceUseStatement", "Flag", "Encounter",
              "MedicationStatement", "MedicationRequest", "MedicationAdministration",
              "Observation", "DiagnosticReport", "QuestionnaireResponse", "Device",
              "DocumentReference", "Binary", "RelatedPerson", "AuditEvent", "Provenance",
              "Bundle", "SearchParameter", "ValueSet", "Subscription"}
    assert wanted <= {r["resourceType"] for r in VALID}


def test_validation_does_not_mutate_input():
    for r in VALID:
        before = copy.deepcopy(r)
        validate_resource(r)
        assert r == before


def test_primitive_array_nulls_allowed_for_extensions():
    r = pat(name=[{"given": ["A", None], "_given": [None, {"id": "g2"}]}])
    assert validate_resource(r) == []


def test_primitive_present_via_underscore_only():
    r = {"resourceType": "Observation", "code": {"text": "x"},
         "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                    "valueCode": "unknown"}]}}
    assert validate_resource(r) == []


def test_leap_day_valid():
    assert validate_resource(pat(birthDate="2024-02-29")) == []
    assert validate_resource(pat(birthDate="2000-02-29")) == []
    assert validate_resource(pat(birthDate="1972")) == []
    assert validate_resource(pat(birthDate="1972-09")) == []


@pytest.mark.parametrize("value", [None, "x", 1, 1.5, True, [], [1, 2], {}, {"resourceType": None},
                                   {"resourceType": "Patient", 1: 2}, float("nan"),
                                   {"resourceType": "Patient", "name": [[[]]]}])
def test_never_raises(value):
    issues = validate_resource(value)
    assert issues and all(i.severity == "error" for i in issues)


def _deep_extension(depth):
    ext = {"url": "http://x.no/e", "valueString": "bunn"}
    for _ in range(depth):
        ext = {"url": "http://x.no/e", "extension": [ext]}
    return pat(extension=[ext])


@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_nesting_gives_issue_not_recursion_error(depth):
    issues = validate_resource(_deep_extension(depth))
    assert len(issues) == 1 and issues[0].code == "structure"
    assert "deeply" in issues[0].diagnostics


def test_deep_bundles():
    b = {"resourceType": "Patient"}
    for _ in range(300):
        b = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": b}]}
    issues = validate_resource(b)
    assert len(issues) == 1 and "deeply" in issues[0].diagnostics


def test_moderate_nesting_is_fine():
    assert validate_resource(_deep_extension(20)) == []


def test_resource_types():
    assert len(RESOURCE_TYPES) == 146
    assert is_known_type("Patient") and is_known_type("VisionPrescription")
    assert not is_known_type("Resource") and not is_known_type("DomainResource")
    assert not is_known_type("patient") and not is_known_type(None)  # type: ignore[arg-type]


def test_issue_to_fhir_shape():
    (issue,) = validate_resource(pat(active="yes"))
    assert issue.to_fhir() == {"severity": "error", "code": "value",
                               "diagnostics": issue.diagnostics,
                               "expression": ["Patient.active"]}
