"""Property tests: on random Patients/Observations the fast walker agrees with fhirpathpy."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from search_oracle import canon, fp_component_values, fp_values

from fkj.search.extract import composite_values, extract, values
from fkj.search.registry import default_registry

REG = default_registry()

text = st.text(alphabet=st.sampled_from(list("abcÆØÅæøåéüß -'")), min_size=1, max_size=8)
ident = st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True)
system = st.sampled_from(["http://loinc.org", "http://snomed.info/sct", "urn:oid:1.2.3", "s"])
code = st.from_regex(r"[a-z0-9-]{1,5}", fullmatch=True)


def opt(d: dict) -> st.SearchStrategy:
    """dict strategy where every key is optional."""
    return st.fixed_dictionaries({}, optional=d)


coding = opt({"system": system, "code": code, "display": text})
cc = opt({"coding": st.lists(coding, max_size=2), "text": text})
year = st.integers(1900, 2100).map(str)
date = st.one_of(
    year,
    st.tuples(year, st.integers(1, 12)).map(lambda t: f"{t[0]}-{t[1]:02d}"),
    st.tuples(year, st.integers(1, 12), st.integers(1, 28)).map(
        lambda t: f"{t[0]}-{t[1]:02d}-{t[2]:02d}"))
datetime = st.one_of(date, st.tuples(
    date.filter(lambda d: len(d) == 10), st.integers(0, 23), st.integers(0, 59),
    st.integers(0, 59), st.sampled_from(["Z", "+01:00", "-05:30", "", ".123Z"])).map(
    lambda t: f"{t[0]}T{t[1]:02d}:{t[2]:02d}:{t[3]:02d}{t[4]}"))
period = opt({"start": datetime, "end": datetime})
number = st.one_of(st.integers(-1000, 1000),
                   st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)))
quantity = opt({"value": number, "unit": st.sampled_from(["mg", "kg", "mmHg"]),
                "system": st.just("http://unitsofmeasure.org"),
                "code": st.sampled_from(["mg", "kg", "mm[Hg]"]),
                "comparator": st.sampled_from(["<", ">="])})
identifier = opt({"system": system, "value": ident, "use": st.just("official"),
                  "type": cc})
reference = st.one_of(
    st.tuples(st.sampled_from(["Patient", "Group", "Practitioner", "Device", "Location"]),
              ident).map(lambda t: {"reference": f"{t[0]}/{t[1]}"}),
    ident.map(lambda i: {"reference": f"https://x.no/fhir/Patient/{i}/_history/2"}),
    st.just({"reference": "urn:uuid:9b1c1f3e-1111-4c2e-9a7b-2f1d1a1b1c1d"}),
    st.just({"reference": "#contained"}),
    st.tuples(st.sampled_from(["Patient", "Group"]), identifier).map(
        lambda t: {"type": t[0], "identifier": t[1]}),
)
name = opt({"use": st.just("official"), "family": text, "given": st.lists(text, max_size=2),
            "prefix": st.lists(text, max_size=1), "text": text})
address = opt({"line": st.lists(text, max_size=2), "city": text, "postalCode": ident,
               "country": text, "district": text, "state": text, "use": st.just("home")})
telecom = opt({"system": st.sampled_from(["phone", "email", "fax"]), "value": ident})

patient = st.fixed_dictionaries(
    {"resourceType": st.just("Patient"), "id": ident},
    optional={
        "meta": opt({"lastUpdated": datetime, "tag": st.lists(coding, max_size=2),
                     "profile": st.lists(st.just("http://x/SD/p|1"), max_size=1)}),
        "identifier": st.lists(identifier, max_size=3), "active": st.booleans(),
        "name": st.lists(name, max_size=2), "telecom": st.lists(telecom, max_size=2),
        "gender": st.sampled_from(["male", "female", "other", "unknown"]),
        "birthDate": date, "deceasedBoolean": st.booleans(), "address": st.lists(address, max_size=2),
        "generalPractitioner": st.lists(reference, max_size=2),
        "managingOrganization": reference,
        "link": st.lists(st.fixed_dictionaries({"other": reference, "type": st.just("seealso")}),
                         max_size=1),
        "communication": st.lists(st.fixed_dictionaries({"language": cc}), max_size=1),
    })
patient = st.one_of(patient, st.tuples(patient, datetime).map(
    lambda t: {**{k: v for k, v in t[0].items() if k != "deceasedBoolean"},
               "deceasedDateTime": t[1]}))

value_choice = st.one_of(
    quantity.map(lambda q: {"valueQuantity": q}), cc.map(lambda c: {"valueCodeableConcept": c}),
    text.map(lambda s: {"valueString": s}), datetime.map(lambda d: {"valueDateTime": d}),
    period.map(lambda p: {"valuePeriod": p}), st.booleans().map(lambda b: {"valueBoolean": b}),
    st.integers(0, 99).map(lambda i: {"valueInteger": i}), st.just({}))
effective = st.one_of(datetime.map(lambda d: {"effectiveDateTime": d}),
                      period.map(lambda p: {"effectivePeriod": p}),
                      st.just({"effectiveInstant": "2024-03-01T10:00:00.5Z"}), st.just({}))
component = st.tuples(cc, value_choice).map(lambda t: {"code": t[0], **t[1]})
observation = st.tuples(
    st.fixed_dictionaries(
        {"resourceType": st.just("Observation"), "id": ident,
         "status": st.sampled_from(["final", "amended"]), "code": cc},
        optional={"subject": reference, "performer": st.lists(reference, max_size=2),
                  "category": st.lists(cc, max_size=2), "identifier": st.lists(identifier, max_size=2),
                  "component": st.lists(component, max_size=3), "dataAbsentReason": cc,
                  "hasMember": st.lists(reference, max_size=1)}),
    value_choice, effective).map(lambda t: {**t[0], **t[1], **t[2]})


def _check(res: dict) -> None:
    for code, p in REG.for_type(res["resourceType"]).items():
        if not p.expression or p.type == "special":
            continue
        assert canon(values(res, code)) == canon(fp_values(res, p)), code
        if p.type == "composite":
            for source, node, comps in composite_values(res, code):
                for (_url, expr), got in zip(p.components, comps):
                    assert canon(got) == canon(fp_component_values(res, source, node, expr))
    rows = extract(res)
    assert set(rows) == {"string", "token", "reference", "date", "number", "quantity", "uri",
                         "composite"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patient)
def test_random_patients_agree_with_fhirpathpy(res):
    _check(res)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observation)
def test_random_observations_agree_with_fhirpathpy(res):
    _check(res)
