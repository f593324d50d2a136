"""Search semantics through HTTP: string, token, reference, uri, resource-level parameters,
:missing, comma-OR / repeated-AND, GET ≡ POST _search, warnings and errors.
Every row asserts the exact set of ids returned."""

from __future__ import annotations

import pytest

from tests.search.semantics_helpers import check_table, expressions, ids, put_all, search

MRN = "http://example.org/mrn"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SD = "http://example.org/StructureDefinition"


def _patients(client):
    own = f"http://testserver{client.base}"
    return [
        {"resourceType": "Organization", "id": "org1", "name": "Bergen legevakt",
         "identifier": [{"system": "http://orgnr", "value": "123"}]},
        {"resourceType": "Practitioner", "id": "prac1", "name": [{"family": "Lege"}],
         "identifier": [{"system": "http://hpr", "value": "9001"}]},
        {"resourceType": "Patient", "id": "p1", "active": True, "gender": "female",
         "birthDate": "1980-05-17",
         "name": [{"family": "Ågård", "given": ["José"]}],
         "identifier": [{"system": MRN, "value": "A1"}],
         "telecom": [{"system": "phone", "value": "12345678"}],
         "address": [{"city": "Tromsø"}],
         "managingOrganization": {"reference": "Organization/org1"},
         "generalPractitioner": [{"reference": "Practitioner/prac1"}],
         "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "nb"}],
                                         "text": "Norsk bokmål"}}],
         "meta": {"tag": [{"system": "http://t", "code": "vip"}],
                  "profile": [f"{SD}/p-a"],
                  "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                "code": "R"}],
                  "source": "http://src.example/a#1"}},
        {"resourceType": "Patient", "id": "p2", "active": False, "gender": "male",
         "birthDate": "1975",
         "name": [{"family": "Aagaard", "given": ["Jose"]}],
         "identifier": [{"system": MRN, "value": "A2",
                         "type": {"coding": [{"system": V2, "code": "MR"}],
                                  "text": "Medical record"}}],
         "address": [{"city": "Bergen"}],
         "generalPractitioner": [{"reference": "Organization/org1"}],
         "meta": {"profile": [f"{SD}/p-b/v2"], "source": "http://src.example/b"}},
        {"resourceType": "Patient", "id": "p3",
         "name": [{"family": "Berg", "given": ["Kari", "Anne"]}],
         "identifier": [{"system": "http://other", "value": "X"}],
         "managingOrganization": {"reference": f"{own}/Organization/org1"},
         "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}]},
        {"resourceType": "Patient", "id": "p4", "gender": "other", "birthDate": "1980-05",
         "name": [{"text": "Ole Bergersen", "family": "Bergersen"}],
         "identifier": [{"value": "NOSYS"}],
         "managingOrganization": {"reference": "http://other.example/fhir/Organization/zz"},
         "generalPractitioner": [{"identifier": {"system": "http://hpr", "value": "9001"}}]},
        {"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
         "entry": [{"item": {"reference": "Patient/p2"}}, {"item": {"reference": "Patient/p3"}}]},
    ]


ALL = {"p1", "p2", "p3", "p4"}


def test_string_token_reference_uri_and_resource_params(client):
    put_all(client, _patients(client))
    own = f"http://testserver{client.base}"
    check_table(client, "Patient", [
        # string: starts-with, case- and accent-insensitive; :exact; :contains
        ("name=aga", {"p1"}),
        ("name=AGÅ", {"p1"}),
        ("name=jose", {"p1", "p2"}),
        ("name=JOSÉ", {"p1", "p2"}),
        ("name=ole", {"p4"}),                      # HumanName.text
        ("family=berg", {"p3", "p4"}),
        ("family:exact=Berg", {"p3"}),
        ("family:exact=berg", set()),
        ("name:exact=Ågård", {"p1"}),
        ("name:exact=Agard", set()),
        ("name:contains=ERG", {"p3", "p4"}),
        ("name:contains=gaar", {"p2"}),
        ("given=anne", {"p3"}),
        ("address-city=TROMSØ", {"p1"}),
        ("address=berg", {"p2"}),
        # comma OR, repeated AND
        ("family=berg,aag", {"p2", "p3", "p4"}),
        ("family=berg&given=kari", {"p3"}),
        ("family=berg&family=bergersen", {"p4"}),
        # token
        ("gender=female", {"p1"}),
        ("gender=male,female", {"p1", "p2"}),
        ("gender:not=male", {"p1", "p3", "p4"}),
        ("gender:not=male,female", {"p3", "p4"}),
        ("gender=http://wrong|male", set()),
        # a code element's implicit system: its required binding's one CodeSystem
        ("gender=http://hl7.org/fhir/administrative-gender|male", {"p2"}),
        ("gender=http://hl7.org/fhir/administrative-gender|", {"p1", "p2", "p4"}),
        ("gender=http://hl7.org/fhir/administrative-gender|male,female", {"p1", "p2"}),
        ("gender=|male", set()),                     # the code has a system (implicit)
        ("gender:not=http://hl7.org/fhir/administrative-gender|male", {"p1", "p3", "p4"}),
        ("active=true", {"p1"}),
        ("active:not=true", {"p2", "p3", "p4"}),
        (f"identifier={MRN}|A2", {"p2"}),
        ("identifier=A2", {"p2"}),
        (f"identifier={MRN}|", {"p1", "p2"}),
        ("identifier=|NOSYS", {"p4"}),
        ("identifier=|X", set()),
        (f"identifier:of-type={V2}|MR|A2", {"p2"}),
        (f"identifier:of-type={V2}|MR|A1", set()),
        ("identifier:text=medical", {"p2"}),
        ("phone=12345678", {"p1"}),
        ("telecom=12345678", {"p1"}),
        ("language=urn:ietf:bcp:47|nb", {"p1"}),
        ("language:text=norsk", {"p1"}),
        ("language:text=bokmal", set()),           # :text is starts-with
        # reference
        ("organization=org1", {"p1", "p3"}),
        ("organization=Organization/org1", {"p1", "p3"}),
        (f"organization={own}/Organization/org1", {"p1", "p3"}),
        ("organization=http://other.example/fhir/Organization/zz", {"p4"}),
        ("general-practitioner:Practitioner=prac1", {"p1"}),
        ("general-practitioner:Organization=org1", {"p2"}),
        ("general-practitioner=Organization/org1", {"p2"}),
        ("general-practitioner=Practitioner/prac1,Organization/org1", {"p1", "p2"}),
        ("general-practitioner:identifier=http://hpr|9001", {"p4"}),
        ("general-practitioner:identifier=9001", {"p4"}),
        ("link=Patient/p1", {"p3"}),
        # :missing on every type
        ("gender:missing=true", {"p3"}),
        ("gender:missing=false", {"p1", "p2", "p4"}),
        ("birthdate:missing=true", {"p3"}),
        ("organization:missing=true", {"p2"}),
        ("address-city:missing=false", {"p1", "p2"}),
        ("_profile:missing=true", {"p3", "p4"}),
        ("general-practitioner:missing=true", {"p3"}),
        # resource-level
        ("_id=p1,p2", {"p1", "p2"}),
        ("_id=p9", set()),
        ("_tag=http://t|vip", {"p1"}),
        ("_tag=vip", {"p1"}),
        ("_tag:not=http://t|vip", {"p2", "p3", "p4"}),
        ("_security=R", {"p1"}),
        (f"_profile={SD}/p-a", {"p1"}),
        (f"_profile:below={SD}", {"p1", "p2"}),
        (f"_profile:above={SD}/p-b/v2/extra", {"p2"}),
        ("_source=http://src.example/b", {"p2"}),
        ("_source:below=http://src.example", {"p1", "p2"}),
        ("_list=l1", {"p2", "p3"}),
        ("_list=l1&gender=male", {"p2"}),
        ("_lastUpdated=gt2000-01-01", ALL),
        ("_lastUpdated=lt2000", set()),
        ("_lastUpdated=ge2000-01-01T00:00:00Z,lt1999", ALL),
    ])
    # Organization/Practitioner token and string
    check_table(client, "Organization", [("identifier=http://orgnr|123", {"org1"}),
                                         ("name=bergen leg", {"org1"})])


def test_system_level_search_with_type(client):
    put_all(client, _patients(client))
    r = search(client, "", "_type=Patient,Organization&_id=p1,org1,prac1")
    assert r.status_code == 200, r.text
    assert ids(r.json()) == {"p1", "org1"}
    r = search(client, "", "_type=Nonsense")
    assert r.status_code == 400
    assert expressions(r) == ["_type"]


def test_unknown_parameter_warns_or_refuses_when_strict(client):
    put_all(client, _patients(client))
    r = search(client, "Patient", "gender=male&frobnicate=1")
    assert r.status_code == 200
    body = r.json()
    assert ids(body) == {"p2"}
    outcomes = [e for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1
    assert outcomes[0]["resource"]["resourceType"] == "OperationOutcome"
    assert outcomes[0]["resource"]["issue"][0]["severity"] == "warning"
    r = search(client, "Patient", "gender=male&frobnicate=1",
               headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert expressions(r) == ["frobnicate"]
    # unknown parameter inside a chain: a warning, or 400 when strict
    r = search(client, "Patient", "organization.frob=1")
    assert r.status_code == 200
    r = search(client, "Patient", "organization.frob=1", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400


@pytest.mark.parametrize("query, expression", [
    ("birthdate=not-a-date", "birthdate"),
    ("birthdate=2024-13-45", "birthdate"),
    ("birthdate=xx2024", "birthdate"),
    ("birthdate:exact=2024", "birthdate:exact"),
    ("gender:frob=male", "gender:frob"),
    ("name:missing=maybe", "name:missing"),
    ("name=", "name"),
    ("gender=male,", "gender"),
    ("organization:text=x", "organization:text"),
    ("identifier:of-type=onlyone", "identifier:of-type"),
    ("_count=ten", "_count"),
    ("_count=-1", "_count"),
    ("_sort=frob", "_sort"),
    ("_sort=-", "_sort"),
    ("_total=some", "_total"),
    ("_summary=maybe", "_summary"),
    ("_cursor=garbage!!", "_cursor"),
    ("_include=Patient", "_include"),
    ("_has:Observation:subject=1", "_has:Observation:subject"),
    ("_has:Frob:subject:code=1", "_has:Frob:subject:code"),
    ("_has:Observation:frob:code=1", "_has:Observation:frob:code"),
    ("name.family=x", "name.family"),
    ("organization:Patient.name=x", "organization:Patient.name"),
    ("_lastUpdated=yesterday", "_lastUpdated"),
    ("_lastUpdated:missing=true", "_lastUpdated:missing"),
    ("language:in=http://nowhere/vs", "language:in"),
    ("_id:exact=p1", "_id:exact"),
])
def test_malformed_values_give_400_naming_the_parameter(client, query, expression):
    r = search(client, "Patient", query)
    assert r.status_code == 400, r.text
    assert expressions(r) == [expression]
    r = search(client, "Patient", query, post=True)
    assert r.status_code == 400, r.text
