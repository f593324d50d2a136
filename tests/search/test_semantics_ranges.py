"""Search semantics through HTTP: date/dateTime/instant/Period with every prefix and the
precision rules, number and quantity with prefixes and units, composite parameters, token
:in/:not-in against tenant ValueSets. Every row asserts the exact set of ids returned."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.search.semantics_helpers import check_table, expressions, put_all, search

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def obs(id_, code="1-1", **extra):
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]}, **extra}


def test_date_prefixes_and_precision(client):
    put_all(client, [
        obs("o1", effectiveDateTime="2024-03-15"),
        obs("o2", effectiveDateTime="2024-03"),
        obs("o3", effectiveDateTime="2024-03-15T10:30:00Z"),
        obs("o4", effectivePeriod={"start": "2024-03-10", "end": "2024-03-20"}),
        obs("o5", effectivePeriod={"start": "2024-04-01"}),
        obs("o6", effectiveInstant="2023-12-31T23:59:59.500Z"),
        obs("o7"),
        {"resourceType": "Patient", "id": "p1", "birthDate": "1980-05-17"},
        {"resourceType": "Patient", "id": "p2", "birthDate": "1980-05"},
        {"resourceType": "Patient", "id": "p3", "birthDate": "1975"},
        {"resourceType": "Patient", "id": "p4"},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
         "onsetPeriod": {"start": "2020-01-01", "end": "2020-06-30"}},
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"},
         "onsetDateTime": "2021-02-03T04:05:06+01:00"},
        {"resourceType": "Condition", "id": "c3", "subject": {"reference": "Patient/p1"},
         "onsetPeriod": {"end": "2019-05-01"}},
    ])
    everything = {"o1", "o2", "o3", "o4", "o5", "o6"}
    check_table(client, "Observation", [
        ("date=2024-03-15", {"o1", "o3"}),
        ("date=eq2024-03-15", {"o1", "o3"}),
        ("date=2024-03", {"o1", "o2", "o3", "o4"}),
        ("date=2024", {"o1", "o2", "o3", "o4"}),
        ("date=ne2024-03", {"o5", "o6"}),
        ("date=gt2024-03-15", {"o2", "o4", "o5"}),
        ("date=lt2024-03-15", {"o2", "o4", "o6"}),
        ("date=ge2024-03-15", {"o1", "o2", "o3", "o4", "o5"}),
        ("date=le2024-03-15", {"o1", "o2", "o3", "o4", "o6"}),
        ("date=sa2024-03-15", {"o5"}),
        ("date=eb2024-03-15", {"o6"}),
        ("date=sa2024-02", everything - {"o6"}),
        ("date=eb2024-04", everything - {"o5"}),
        ("date=2024-03-15T10:30:00Z", {"o3"}),
        ("date=2024-03-15T10:30Z", {"o3"}),
        ("date=2024-03-15T12:30:00+02:00", {"o3"}),
        ("date=2024-03-15T10:30:01Z", set()),
        ("date=2023-12-31T23:59:59Z", {"o6"}),
        ("date=2023-12-31T23:59:59.5Z", {"o6"}),
        ("date=gt2023-12-31T23:59:59.5Z", everything - {"o6"}),
        ("date=lt2024-01-01&date=gt2023", set()),
        ("date=lt2024-01-01&date=ge2023", {"o6"}),
        ("date=2023,2024-03-15", {"o1", "o3", "o6"}),
        ("date=ne2024-03,eq2024-03-15", {"o1", "o3", "o5", "o6"}),
        ("date:missing=true", {"o7"}),
    ])
    check_table(client, "Patient", [
        ("birthdate=1980", {"p1", "p2"}),
        ("birthdate=1980-05", {"p1", "p2"}),
        ("birthdate=1980-05-17", {"p1"}),
        ("birthdate=gt1980-05-16", {"p1", "p2"}),
        ("birthdate=lt1980-05-17", {"p2", "p3"}),
        ("birthdate=ge1980-05-17", {"p1", "p2"}),
        ("birthdate=le1979", {"p3"}),
        ("birthdate=ne1980-05-17", {"p2", "p3"}),
        ("birthdate=sa1976", {"p1", "p2"}),
        ("birthdate=eb1980-05-17", {"p3"}),
    ])
    check_table(client, "Condition", [
        ("onset-date=2020", {"c1"}),
        ("onset-date=2020-03", set()),
        ("onset-date=ge2020-03", {"c1", "c2"}),
        ("onset-date=2021-02-03T03:05:06Z", {"c2"}),
        ("onset-date=2021-02-03", {"c2"}),
        ("onset-date=lt2019-01-01", {"c3"}),
        ("onset-date=eb2020", {"c3"}),
        ("onset-date=sa2019", {"c1", "c2"}),
        ("onset-date=sa2020-01-01", {"c2"}),
        ("onset-date=le2020-02", {"c1", "c3"}),
    ])


def test_date_approximately(client):
    now = datetime.now(timezone.utc)
    today = now.date().isoformat()
    put_all(client, [obs("recent", effectiveDateTime=today),
                     obs("old", effectiveDateTime=(now - timedelta(days=5 * 366)).date().isoformat()),
                     obs("week", effectiveDateTime=(now - timedelta(days=7)).date().isoformat())])
    # 10 % of a distance of about a day from now is a couple of hours: only today's overlaps
    check_table(client, "Observation", [
        (f"date=ap{today}", {"recent"}),
        # 10 % of ~5 years (~half a year) around a date a month after the old one
        (f"date=ap{(now - timedelta(days=5 * 366 - 30)).date().isoformat()}", {"old"}),
        (f"date=ap{(now - timedelta(days=5 * 366 - 400)).date().isoformat()}", set()),
    ])


def test_number_quantity_composite_and_valueset_modifiers(client):
    bp = [{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
           "valueQuantity": {"value": 130, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
          {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
           "valueQuantity": {"value": 85, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}]
    put_all(client, [
        {"resourceType": "Patient", "id": "pp"},
        obs("q1", "8480-6", valueQuantity={"value": 120, "system": UCUM, "code": "mm[Hg]"}),
        obs("q2", "8480-6", valueQuantity={"value": 95, "system": UCUM, "code": "mm[Hg]"}),
        obs("q3", "2345-7", valueQuantity={"value": 5.4, "unit": "mmol/L", "system": UCUM,
                                           "code": "mmol/L"}),
        obs("q4", "29463-7", valueQuantity={"value": 120, "unit": "kg"}),
        obs("q5", "85354-9", component=bp) | {"status": "amended"},
        {"resourceType": "RiskAssessment", "id": "r1", "status": "final",
         "subject": {"reference": "Patient/pp"}, "prediction": [{"probabilityDecimal": 0.8}]},
        {"resourceType": "RiskAssessment", "id": "r2", "status": "final",
         "subject": {"reference": "Patient/pp"}, "prediction": [{"probabilityDecimal": 0.25}]},
        {"resourceType": "RiskAssessment", "id": "r3", "status": "final",
         "subject": {"reference": "Patient/pp"}, "prediction": [{"probabilityDecimal": 0.5}]},
        {"resourceType": "RiskAssessment", "id": "r4", "status": "final",
         "subject": {"reference": "Patient/pp"}},
        {"resourceType": "ValueSet", "id": "vs1", "url": "http://example.org/vs/bp",
         "status": "active",
         "compose": {"include": [{"system": LOINC, "concept": [{"code": "8480-6"},
                                                                {"code": "8462-4"}]}]}},
        {"resourceType": "ValueSet", "id": "vs2", "url": "http://example.org/vs/lab",
         "status": "active",
         "expansion": {"timestamp": "2024-01-01T00:00:00Z",
                       "contains": [{"system": LOINC, "code": "2345-7"},
                                    {"system": "http://other", "code": "29463-7"}]}},
        {"resourceType": "ValueSet", "id": "vs3", "url": "http://example.org/vs/changed",
         "status": "active",
         "compose": {"include": [{"system": "http://hl7.org/fhir/observation-status",
                                  "concept": [{"code": "amended"}, {"code": "corrected"}]}]}},
        {"resourceType": "ValueSet", "id": "vs4", "url": "http://example.org/vs/nosystem",
         "status": "active",
         "compose": {"include": [{"system": "http://elsewhere", "concept": [{"code": "final"}]}]}},
    ])
    check_table(client, "RiskAssessment", [
        ("probability=0.8", {"r1"}),
        ("probability=0.5", {"r3"}),
        ("probability=0.50", set()),               # more precise than the stored value
        ("probability=gt0.5", {"r1"}),
        ("probability=lt0.5", {"r2"}),
        ("probability=ge0.5", {"r1", "r3"}),
        ("probability=le0.5", {"r2", "r3"}),
        ("probability=ne0.8", {"r2", "r3"}),
        ("probability=sa0.5", {"r1"}),
        ("probability=eb0.5", {"r2"}),
        ("probability=ap0.8", {"r1"}),
        ("probability=ap0.3", {"r2"}),
        ("probability=0.25,0.8", {"r1", "r2"}),
        ("probability=gt0.2&probability=lt0.6", {"r2", "r3"}),
        ("probability:missing=true", {"r4"}),
    ])
    check_table(client, "Observation", [
        ("value-quantity=120", {"q1", "q4"}),
        (f"value-quantity=120|{UCUM}|mm[Hg]", {"q1"}),
        ("value-quantity=120||kg", {"q4"}),
        ("value-quantity=120||mm[Hg]", {"q1"}),
        ("value-quantity=gt100", {"q1", "q4"}),
        ("value-quantity=lt100", {"q2", "q3"}),
        ("value-quantity=le95", {"q2", "q3"}),
        (f"value-quantity=ge95|{UCUM}|mm[Hg]", {"q1", "q2"}),
        ("value-quantity=ap100", {"q2"}),
        ("value-quantity=ne120", {"q2", "q3"}),
        ("value-quantity=sa95", {"q1", "q4"}),
        ("value-quantity=eb95", {"q3"}),
        ("value-quantity=5.4", {"q3"}),
        ("value-quantity=5.40", set()),
        (f"value-quantity=5.4|{UCUM}|mmol/L", {"q3"}),
        ("value-quantity=1.2e2", {"q1", "q4"}),
        ("value-quantity:missing=true", {"q5"}),
        # composite
        (f"code-value-quantity={LOINC}|8480-6$gt100", {"q1"}),
        (f"code-value-quantity={LOINC}|8480-6$gt100,{LOINC}|2345-7$lt10", {"q1", "q3"}),
        ("code-value-quantity=8480-6$95", {"q2"}),
        (f"code-value-quantity=8480-6$gt100|{UCUM}|mm[Hg]", {"q1"}),
        (f"code-value-quantity=8480-6$gt100|{UCUM}|kg", set()),
        (f"component-code-value-quantity={LOINC}|8480-6$gt100", {"q5"}),
        (f"component-code-value-quantity={LOINC}|8462-4$gt100", set()),  # same component
        (f"component-code-value-quantity={LOINC}|8462-4$lt90", {"q5"}),
        ("combo-code-value-quantity=8480-6$ge120", {"q1", "q5"}),
        # combo-* are the union of the resource's and its components' values (no own rows)
        (f"combo-code={LOINC}|8462-4", {"q5"}),
        ("combo-code=8480-6", {"q1", "q2", "q5"}),
        ("combo-code=85354-9", {"q5"}),
        (f"combo-code:not={LOINC}|8480-6", {"q3", "q4"}),
        ("combo-code:missing=true", set()),
        ("combo-value-quantity=85", {"q5"}),
        ("combo-value-quantity=gt125", {"q5"}),
        (f"combo-value-quantity=5.4|{UCUM}|mmol/L", {"q3"}),
        ("combo-value-quantity:missing=true", set()),
        ("combo-code-value-quantity=8462-4$85", {"q5"}),
        ("combo-code-value-quantity=8462-4$130", set()),  # the same component only
        ("code-value-quantity:missing=true", {"q5"}),
        ("component-code-value-quantity:missing=false", {"q5"}),
        # token :in / :not-in against ValueSets stored in the tenant
        ("code:in=http://example.org/vs/bp", {"q1", "q2"}),
        ("code:in=ValueSet/vs1", {"q1", "q2"}),
        ("code:in=http://example.org/vs/lab", {"q3"}),
        ("code:not-in=http://example.org/vs/bp", {"q3", "q4", "q5"}),
        ("code:in=http://example.org/vs/bp,http://example.org/vs/lab", {"q1", "q2", "q3"}),
        ("code:in=http://example.org/vs/bp&code=8480-6", {"q1", "q2"}),
        # on a code element, against its implicit system (the binding's CodeSystem)
        ("status:in=http://example.org/vs/changed", {"q5"}),
        ("status:not-in=http://example.org/vs/changed", {"q1", "q2", "q3", "q4"}),
        ("status:in=http://example.org/vs/nosystem", set()),
        # token :text and :not on CodeableConcept
        (f"code:not={LOINC}|8480-6", {"q3", "q4", "q5"}),
    ])
    # sorting by a combo parameter: the smallest of the resource's and its components' codes
    r = search(client, "Observation", "_sort=combo-code&_count=10")
    assert r.status_code == 200, r.text
    ids = [e["resource"]["id"] for e in r.json()["entry"]]
    assert ids[:3] == ["q3", "q4", "q5"] and set(ids[3:]) == {"q1", "q2"}, ids
    for query, expr in [("code-value-quantity=8480-6", "code-value-quantity"),
                        ("code-value-quantity=8480-6$abc", "code-value-quantity"),
                        ("value-quantity=gtabc", "value-quantity"),
                        ("value-quantity=1e99999", "value-quantity"),
                        ("code:in=http://example.org/vs/none", "code:in"),
                        ("_sort=code-value-quantity", "_sort")]:
        r = search(client, "Observation", query)
        assert r.status_code == 400, (query, r.text)
        assert expressions(r) == [expr], query


def test_code_value_composites_are_searched_as_code_and_value(client):
    """``code-value-quantity`` / ``code-value-concept`` have no rows of their own: a value
    ``a$b`` matches where the Observation's code matches ``a`` and its value ``b`` (each of
    the resource itself, never of a component); several values pair up one by one."""
    snomed = "http://snomed.info/sct"
    bp = [{"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
           "valueQuantity": {"value": 150, "system": UCUM, "code": "mm[Hg]"}}]
    put_all(client, [
        obs("i1", "8480-6", valueQuantity={"value": 150, "system": UCUM, "code": "mm[Hg]"})
        | {"code": {"coding": [{"system": LOINC, "code": "8480-6"},
                               {"system": "http://example.org/local", "code": "sys"}]}},
        obs("i2", "72166-2", valueCodeableConcept={"coding": [{"system": snomed,
                                                               "code": "8517006"}]}),
        obs("i3", "8480-6", dataAbsentReason={"text": "målt ikke"}),
        obs("i4", "8480-6", valueQuantity={"value": 90, "system": UCUM, "code": "mm[Hg]"},
            component=bp),
    ])
    check_table(client, "Observation", [
        ("code-value-quantity=8480-6$150", {"i1"}),
        ("code-value-quantity=http://example.org/local|sys$gt100", {"i1"}),
        ("code-value-quantity=sys$lt100", set()),          # the code matches, the value not
        ("code-value-quantity=8480-6$gt100,8480-6$lt95", {"i1", "i4"}),
        ("code-value-quantity=sys$lt100,8462-4$90", set()),  # no value pairs up
        ("code-value-quantity=8462-4$150", set()),          # a component's code and value
        (f"code-value-quantity=8480-6$150|{UCUM}|mm[Hg]", {"i1"}),
        (f"code-value-quantity=8480-6$150|{UCUM}|kg", set()),
        ("code-value-quantity:missing=true", {"i2", "i3"}),
        ("code-value-quantity:missing=false", {"i1", "i4"}),
        (f"code-value-concept=72166-2${snomed}|8517006", {"i2"}),
        ("code-value-concept=8480-6$8517006,72166-2$8517006", {"i2"}),
        ("code-value-concept=8480-6$8517006", set()),
        ("code-value-concept:missing=false", {"i2"}),
        ("code-value-quantity=8480-6$150&code-value-concept:missing=true", {"i1"}),
        # combo: the resource's pair or a component's pair
        ("combo-code-value-quantity=8462-4$150", {"i4"}),
        ("combo-code-value-quantity=8480-6$90", {"i4"}),
        ("combo-code-value-quantity=8480-6$150", {"i1"}),
        ("combo-code-value-quantity=8462-4$90", set()),
        ("combo-code-value-quantity:missing=true", {"i2", "i3"}),
        ("combo-code-value-concept=72166-2$8517006", {"i2"}),
    ])
    # the same through a reverse chain: the Observation's own pair decides
    put_all(client, [{"resourceType": "Patient", "id": "ip"},
                     obs("i5", "8480-6", valueQuantity={"value": 170}) |
                     {"subject": {"reference": "Patient/ip"}}])
    check_table(client, "Patient", [
        ("_has:Observation:subject:code-value-quantity=8480-6$gt160", {"ip"}),
        ("_has:Observation:subject:code-value-quantity=8480-6$lt160", set()),
    ])
