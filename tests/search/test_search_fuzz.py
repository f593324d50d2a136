"""No search input produces a 500: random parameter names, modifiers, prefixes and values
(GET and POST _search) give 200 or 400, and a 400 always names a parameter."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.search.semantics_helpers import put_all, search

NAMES = ["name", "family", "gender", "identifier", "birthdate", "organization", "_id",
         "_lastUpdated", "_tag", "_profile", "_source", "_list", "_has:Observation:subject:code",
         "_has:Observation:subject:_has:Provenance:target:agent", "general-practitioner",
         "link", "subject", "date", "value-quantity", "code-value-quantity", "code",
         "_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude",
         "_include:iterate", "_cursor", "_type", "_text", "_content", "_filter", "frob",
         "subject.name", "subject:Patient.organization.partof.name", "_compartment",
         "combo-code-value-quantity", "component-code-value-quantity", "_security",
         "address-city", "phone", "language", "deceased", "patient.birthdate"]
MODS = ["", "", "", ":missing", ":not", ":exact", ":contains", ":text", ":in", ":not-in",
        ":of-type", ":below", ":above", ":identifier", ":Patient", ":iterate", ":", ":frob"]
PIECES = ["", "x", "1", "eq", "ne2024", "ap1e5", "gt-1", "sa2024-02-30", "2024-13",
          "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00+01:00", "NaN", "Infinity",
          "1e999", "-0", "|", "||", "\\,", "\\", "$", "a$b$c$d", "http://loinc.org|8480-6$gt1",
          "Patient/x", "http://h/Patient/1", "true", "maybe", "*", "Observation:subject",
          "family,-birthdate", "-", "%", "_", "'; DROP TABLE resource; --", "ø", "🙂",
          "\x00", "ValueSet/none", "a|b|c", base64.urlsafe_b64encode(b'[{"a":1},2]').decode(),
          base64.urlsafe_b64encode(b'["x",5]').decode(), "null",
          "Storm" * 60, "ø" * 3000]  # past the 200 characters of a bounded key


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=st.lists(st.tuples(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(MODS)).map("".join),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map(",".join)),
    min_size=1, max_size=3), rtype=st.sampled_from(["Patient", "Observation", ""]),
    post=st.booleans())
def test_no_search_input_gives_500(client, params, rtype, post):
    if not getattr(client, "_seeded", False):
        put_all(client, [{"resourceType": "Patient", "id": "p1", "name": [{"family": "A"}]},
                         {"resourceType": "Observation", "id": "o1", "status": "final",
                          "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}])
        client._seeded = True
    r = search(client, rtype or "", params, post=post and bool(rtype))
    assert r.status_code in (200, 400), (params, r.status_code, r.text[:300])
    if r.status_code == 400:
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert any(i.get("expression") for i in body["issue"]), (params, body)
