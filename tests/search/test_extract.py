"""Row normalisation, resource-level parameters and compile coverage."""

from __future__ import annotations

import math
from pathlib import Path
from datetime import datetime, timezone

import pytest
from search_resources import ALL, DOCREF, OBS_BP, OBS_WEIGHT, PATIENT

from fkj.search import _rows as R
from fkj.search.extract import compile_param, compile_stats, extract
from fkj.search.registry import default_registry

REG = default_registry()


def ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).replace(
        tzinfo=datetime.fromisoformat(s.replace("Z", "+00:00")).tzinfo or timezone.utc).timestamp()


# --------------------------------------------------------------------------- strings
@pytest.mark.parametrize("raw,norm", [
    ("Ærlig Østby Ågård José", "ærlig østby agard jose"),
    ("ØSTBY", "østby"), ("Åse", "ase"), ("Müller", "muller"), ("Straße", "strasse"),
    ("Sørensen-Æsøy", "sørensen-æsøy"), ("plain ascii", "plain ascii"), ("Čapek", "capek"),
])
def test_norm(raw, norm):
    assert R.norm(raw) == norm


def test_humanname_and_address_parts():
    rows = extract(PATIENT)["string"]
    name = {r[1] for r in rows if r[0] == "name"}
    assert {"østby", "ærlig", "jose", "dr.", "ærlig jose østby", "age"} <= name
    assert ("family", "østby", "Østby") in rows
    addr = {r[2] for r in rows if r[0] == "address"}
    assert {"Storgata 1", "Leil. H0201", "Tromsø", "Troms", "9008", "NO"} == addr
    assert ("address-city", "tromsø", "Tromsø") in rows


# --------------------------------------------------------------------------- dates
@pytest.mark.parametrize("value,low,high", [
    ("2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
    ("2024-03", "2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z"),
    ("2024-12", "2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z"),
    ("2024-02-29", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"),
    ("2024-03-01T10:00:00+01:00", "2024-03-01T09:00:00Z", "2024-03-01T09:00:01Z"),
    ("2024-03-01T10:00:00-05:30", "2024-03-01T15:30:00Z", "2024-03-01T15:30:01Z"),
    ("2024-03-01T10:00:00", "2024-03-01T10:00:00Z", "2024-03-01T10:00:01Z"),  # no tz → UTC
    ("2024-03-01T10:00:00.5Z", "2024-03-01T10:00:00.5Z", "2024-03-01T10:00:00.6Z"),
    ("2024-03-01T10:00:00.123Z", "2024-03-01T10:00:00.123Z", "2024-03-01T10:00:00.124Z"),
    ("1969-12-31", "1969-12-31T00:00:00Z", "1970-01-01T00:00:00Z"),
])
def test_date_range(value, low, high):
    lo, hi = R.date_range(value)
    assert lo == pytest.approx(ts(low), abs=1e-6)
    assert hi == pytest.approx(ts(high), abs=1e-6)


@pytest.mark.parametrize("bad", ["2024-13", "2024-02-30", "yesterday", "24-01-01", "", None, 5])
def test_date_invalid(bad):
    assert R.date_range(bad) is None


def test_period_open_end_and_start():
    out: list = []
    R.b_period("p", {"start": "2024-01-15"}, out)
    R.b_period("p", {"end": "2024-12-31"}, out)
    R.b_period("p", {}, out)
    assert out == [("p", ts("2024-01-15T00:00:00Z"), R.HIGH),
                   ("p", R.LOW, ts("2025-01-01T00:00:00Z"))]
    assert R.HIGH == 1e15 and R.LOW == -1e15 and not math.isinf(R.HIGH)


def test_inverted_period_covers_both_ends():
    """low <= high for every stored range (the search's index bounds rely on it)."""
    out: list = []
    R.b_period("p", {"start": "2024-06-01T23:00:00-05:00", "end": "2024-06-01"}, out)
    R.b_period("p", {"start": "2025-01-01", "end": "2024-01-01"}, out)
    assert out == [("p", ts("2024-06-01T00:00:00Z"), ts("2024-06-02T04:00:01Z")),
                   ("p", ts("2024-01-01T00:00:00Z"), ts("2025-01-02T00:00:00Z"))]
    assert all(lo <= hi for _, lo, hi in out)


def test_date_rows_from_resources():
    rows = extract(OBS_BP)["date"]
    assert ("date", ts("2024-03-01T08:30:00Z"), ts("2024-03-01T08:35:01Z")) in rows
    # _lastUpdated is the resource table's column, not an index row
    assert [r for r in rows if r[0] == "_lastUpdated"] == []
    rows = extract(OBS_WEIGHT)["date"]
    assert rows == [("date", ts("2024-03-01T00:00:00Z"), ts("2024-04-01T00:00:00Z"))]
    timing = extract(next(r for r in ALL if r["id"] == "s1"))["date"]
    assert len([r for r in timing if r[0] == "date"]) == 2


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value,low,high", [
    (100, 99.5, 100.5), (0, -0.5, 0.5), (1.5, 1.45, 1.55), (72.4, 72.35, 72.45),
    (0.001, 0.0005, 0.0015), ("100.00", 99.995, 100.005), (-3, -3.5, -2.5),
])
def test_number_precision(value, low, high):
    lo, hi = R.num_range(value)
    assert lo == pytest.approx(low) and hi == pytest.approx(high)


def test_number_rows():
    risk = next(r for r in ALL if r["resourceType"] == "RiskAssessment")
    rows = extract(risk)["number"]
    assert [_approx(r) for r in rows] == [("probability", 0.345, 0.355)]
    assert R.num_range(True) is None and R.num_range("x") is None


# --------------------------------------------------------------------------- quantities
def _approx(row: tuple) -> tuple:
    return tuple(round(x, 9) if isinstance(x, float) else x for x in row)


@pytest.mark.parametrize("q,rows", [
    ({"value": 5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
     [("q", "http://unitsofmeasure.org", "mg", 4.5, 5.5)]),
    ({"value": 5, "unit": "milligram", "system": "http://unitsofmeasure.org", "code": "mg"},
     [("q", "http://unitsofmeasure.org", "mg", 4.5, 5.5), ("q", None, "milligram", 4.5, 5.5)]),
    ({"value": 5, "unit": "tablett"}, [("q", None, "tablett", 4.5, 5.5)]),
    ({"value": 5, "comparator": "<", "code": "mg"}, [("q", None, "mg", R.LOW, 5.5)]),
    ({"value": 200.5, "currency": "NOK"},
     [("q", "urn:iso:std:iso:4217", "NOK", 200.45, 200.55)]),
    ({"low": {"value": 1, "code": "a"}, "high": {"value": 5, "code": "a"}},
     [("q", None, "a", 0.5, 5.5)]),
    ({"low": {"value": 18, "unit": "a"}}, [("q", None, "a", 17.5, R.HIGH)]),
    ({"unit": "mg"}, []),
])
def test_quantity_rows(q, rows):
    out: list = []
    R.b_qty("q", q, out)
    assert [_approx(r) for r in out] == rows


def test_observation_quantity_rows():
    rows = extract(OBS_WEIGHT)["quantity"]
    # combo-value-quantity (value | component.value) is searched through these: no own rows
    assert sorted(r[0] for r in rows) == ["value-quantity"]
    assert _approx(rows[-1]) == ("value-quantity", "http://unitsofmeasure.org", "kg", 72.35, 72.45)


# --------------------------------------------------------------------------- references
@pytest.mark.parametrize("ref,rows", [
    ({"reference": "Patient/123"}, [("r", "Patient", "123", None, None, None)]),
    ({"reference": "Patient/123/_history/4"}, [("r", "Patient", "123", None, None, None)]),
    ({"reference": "https://fhir.kommune.no/fhir/Patient/123"},
     [("r", "Patient", "123", "https://fhir.kommune.no/fhir/Patient/123", None, None)]),
    ({"reference": "urn:uuid:9b1c1f3e-1111-4c2e-9a7b-2f1d1a1b1c1d"},
     [("r", None, None, "urn:uuid:9b1c1f3e-1111-4c2e-9a7b-2f1d1a1b1c1d", None, None)]),
    ({"reference": "#x"}, []),
    ({"reference": "#x", "identifier": {"system": "s", "value": "v"}},
     [("r", None, None, None, "s", "v")]),
    ({"type": "Practitioner", "identifier": {"system": "urn:oid:hpr", "value": "9144889"}},
     [("r", "Practitioner", None, None, "urn:oid:hpr", "9144889")]),
    ({"reference": "Patient/1", "identifier": {"system": "s", "value": "v"}},
     [("r", "Patient", "1", None, "s", "v")]),
    ({"display": "only a display"}, []),
    ("http://fkj.no/ValueSet/x|1.0", [("r", None, None, "http://fkj.no/ValueSet/x|1.0", None, None),
                                      ("r", None, None, "http://fkj.no/ValueSet/x", None, None)]),
])
def test_reference_forms(ref, rows):
    out: list = []
    R.b_ref("r", ref, out)
    assert out == rows


def test_reference_rows_from_resources():
    rows = extract(PATIENT)["reference"]
    assert ("general-practitioner", "Practitioner", "dr1", None, None, None) in rows
    assert ("general-practitioner", "Practitioner", None, None,
            "urn:oid:2.16.578.1.12.4.1.4.4", "9144889") in rows
    assert ("link", None, None, "urn:uuid:9b1c1f3e-1111-4c2e-9a7b-2f1d1a1b1c1d", None, None) in rows
    obs = extract(OBS_BP)["reference"]
    # where(resolve() is Patient): 'patient' only sees Patient references
    assert [r for r in obs if r[0] == "patient"] == [("patient", "Patient", "p1", None, None, None)]
    assert ("performer", "Patient", "p1", None, None, None) in obs
    care_team = next(r for r in ALL if r["resourceType"] == "CareTeam")
    assert not [r for r in extract(care_team)["reference"] if r[2] == "rp"]
    bundle = next(r for r in ALL if r["resourceType"] == "Bundle")
    assert ("composition", "Composition", "comp1", None, None, None) in extract(bundle)["reference"]


# --------------------------------------------------------------------------- tokens
def test_identifier_of_type():
    rows = extract(PATIENT)["token"]
    assert ("identifier", "urn:oid:2.16.578.1.12.4.1.4.1", "13031353453", "fødselsnummer") in rows
    assert ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|NI",
            "13031353453", None) in rows


def test_token_forms():
    out: list = []
    R.b_cc("t", {"coding": [{"system": "s", "code": "c", "display": "Ærlig"}, {"code": "d"}],
                 "text": "Blodtrykk Åse"}, out)
    assert out == [("t", "s", "c", "ærlig"), ("t", None, "d", None),
                   ("t", None, None, "blodtrykk ase")]
    out = []
    R.b_code("t", True, out)
    R.b_code("t", "final", out)
    R.b_contact("t", {"system": "phone", "value": "+47 1"}, out)
    R.b_coding("t", {"system": "s"}, out)
    assert out == [("t", None, "true", None), ("t", None, "final", None),
                   ("t", None, "+47 1", None), ("t", "s", None, None)]


def test_patient_tokens():
    rows = extract(PATIENT)["token"]
    for row in [("gender", "http://hl7.org/fhir/administrative-gender", "male", None),
                ("active", None, "true", None),
                ("deceased", None, "true", None), ("phone", None, "+47 99887766", None),
                ("email", None, "aerlig@example.no", None),
                ("_tag", "http://fkj.no/tag", "test", "testdata"),
                ("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R",
                 None),
                ("language", "urn:ietf:bcp:47", "nb", None)]:
        assert row in rows
    assert [r for r in rows if r[0] == "_id"] == []  # the resource table's id column
    assert ("phone", None, "aerlig@example.no", None) not in rows
    p2 = next(r for r in ALL if r["id"] == "p2")
    assert ("deceased", None, "false", None) in extract(p2)["token"]


def test_resource_level_uri_rows():
    rows = extract(PATIENT)
    prof = "http://hl7.no/fhir/StructureDefinition/no-basis-Patient|2.0.0"
    assert ("_profile", prof) in rows["uri"]
    assert ("_profile", None, None, prof, None, None) in rows["reference"]
    assert ("_source", "urn:fkj:import#1") in rows["uri"]


# --------------------------------------------------------------------------- composites
def test_composite_rows():
    rows = extract(OBS_BP)["composite"]
    assert ("component-code-value-quantity", ("http://loinc.org", "8480-6", "systolic"),
            ("http://unitsofmeasure.org", "mm[Hg]", 106.5, 107.5)) in rows
    assert not [r for r in rows if r[0] == "code-value-quantity"]  # panel has no value
    # an Observation's own code-value-* pairs get no rows: they are searched as code and
    # value (fkj.search.extract.INTERSECTION_PARAMS); its components' pairs keep theirs
    measured = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org",
                                  "code": "mm[Hg]"}}
    got = extract(measured)
    assert not [r for r in got["composite"] if r[0].startswith("code-value")]
    assert ("code", "http://loinc.org", "8480-6", None) in got["token"]
    assert [r for r in got["quantity"] if r[0] == "value-quantity"]
    rows = extract(DOCREF)["composite"]
    assert rows == [("relationship", ("http://hl7.org/fhir/document-relationship-type",
                                      "replaces", None),
                     ("DocumentReference", "dr0", None, None, None))]


def test_documentreference_relationship_errata_fixed():
    p = REG.get("DocumentReference", "relationship")
    assert [e for _, e in p.components] == ["code", "target"]
    assert REG.by_url(p.components[0][0]).type == "token"
    assert REG.by_url(p.components[1][0]).type == "reference"


# --------------------------------------------------------------------------- whole resources
def test_rows_are_deduplicated_and_well_formed():
    widths = {"string": 3, "token": 4, "reference": 6, "date": 3, "number": 3, "quantity": 5,
              "uri": 2}
    for res in ALL:
        out = extract(res)
        for table, rows in out.items():
            assert len(rows) == len(set(rows))
            for r in rows:
                assert isinstance(r[0], str)
                if table in widths:
                    assert len(r) == widths[table], (table, r)
                if table in ("date", "number"):
                    assert r[1] <= r[2]


def test_unknown_resource_type_gives_only_resource_level_rows():
    out = extract({"resourceType": "Nonsense", "id": "x", "meta": {
        "tag": [{"system": "http://fkj.no/tag", "code": "test"}]}})
    assert out["token"] == [("_tag", "http://fkj.no/tag", "test", None)]
    assert all(v == [] for k, v in out.items() if k != "token")


def test_custom_search_parameter():
    reg = REG.with_custom([{
        "resourceType": "SearchParameter", "url": "http://fkj.no/sp/kommune", "code": "kommune",
        "base": ["Patient"], "type": "token",
        "expression": "Patient.extension.where(url='http://fkj.no/kommune').value"}])
    pat = {"resourceType": "Patient", "id": "x", "extension": [
        {"url": "http://fkj.no/kommune", "valueCoding": {"system": "urn:kommune", "code": "5401"}},
        {"url": "http://other", "valueString": "no"}]}
    assert ("kommune", "urn:kommune", "5401", None) in extract(pat, reg)["token"]
    assert REG.get("Patient", "kommune") is None
    assert reg.get("Patient", "name") is not None


# --------------------------------------------------------------------------- compilation
def test_every_parameter_compiles():
    fast = fallback = 0
    for rtype in REG.resource_types():
        for p in REG.for_type(rtype).values():
            cp = compile_param(p, rtype)
            if cp is not None:
                fast += cp.fast
                fallback += not cp.fast
    stats = compile_stats()
    assert stats["fast"] == fast and stats["fallback"] == fallback
    print(f"\ncompiled (type, param) pairs: fast={fast} fallback={fallback} "
          f"typed parts={stats['typed_parts']} untyped={stats['untyped_parts']}")
    assert fast > 2400 and fallback < 10


def test_fallback_path_runs():
    from fkj.search import _compile as C
    [part] = C.compile_part("Patient.name.where(given.exists()).family", "Patient")
    assert not part.fast
    assert part.fn(PATIENT, PATIENT) == ["Østby"]


# --------------------------------------------------------------------------- implicit systems
REFERENCE = next((p for p in (Path(__file__).resolve().parents[3] / "shared/reference/fhir",
                              Path("/work/shared/reference/fhir")) if p.is_dir()), None)


def test_code_elements_carry_their_implicit_system():
    """A code element's system is its required binding's one CodeSystem (R4 token search);
    other bindings, several systems or no binding leave it empty."""
    def tokens(res, code):
        return [r[1:3] for r in extract(res)["token"] if r[0] == code]
    assert tokens({"resourceType": "Observation", "id": "o", "status": "final",
                   "code": {"text": "x"}}, "status") == [
        ("http://hl7.org/fhir/observation-status", "final")]
    assert tokens({"resourceType": "ServiceRequest", "id": "s", "status": "active",
                   "intent": "order", "subject": {"reference": "Patient/p"}}, "intent") == [
        ("http://hl7.org/fhir/request-intent", "order")]
    # Task.intent: task-intent and request-intent; Resource.language: a preferred binding
    assert tokens({"resourceType": "Task", "id": "t", "status": "draft", "intent": "order"},
                  "intent") == [(None, "order")]
    assert tokens({"resourceType": "SearchParameter", "id": "sp", "code": "x", "url": "u",
                   "name": "n", "status": "draft", "description": "d", "base": ["Patient"],
                   "type": "token"}, "code") == [(None, "x")]
    # composite components too (Observation.component.code is a CodeableConcept; the
    # DocumentReference relationship composite's code is relatesTo.code, a code)
    rows = extract(DOCREF)["composite"]
    assert rows[0][1][:2] == ("http://hl7.org/fhir/document-relationship-type", "replaces")


@pytest.mark.skipif(REFERENCE is None, reason="the shared reference files are not here")
def test_code_system_table_is_generated_from_the_reference():
    from fkj.search._code_systems import SYSTEMS
    from fkj.search.code_systems import build
    assert build(REFERENCE) == SYSTEMS
    assert SYSTEMS["Patient.gender"] == "http://hl7.org/fhir/administrative-gender"
    assert "Resource.language" not in SYSTEMS and "Task.intent" not in SYSTEMS


def test_param_rows_equal_the_full_extraction_filtered():
    """The restricted extractor the access policy uses (patient references, periods) makes
    exactly the rows the full extraction makes for those parameters, on every resource of a
    synthetic municipality."""
    from fkj.search.extract import extract, param_rows
    from fkj.security.policy.decision import _links_of
    from fkj.seed.generator import generate

    checked = 0
    for res in generate("4601", 15, 7):
        rt = res["resourceType"]
        full = extract(res)
        links = _links_of(rt)
        if links:
            assert param_rows(res, links, "reference") == \
                [r for r in full["reference"] if r[0] in links]
            checked += 1
        for param in ("date", "period"):
            assert param_rows(res, frozenset((param,)), "date") == \
                [r for r in full["date"] if r[0] == param]
    assert checked > 100
