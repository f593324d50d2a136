"""Values of any length can be written and searched (issue 30, item 8), on both backends.

PostgreSQL refused index entries over 2,704 bytes: a 9,000-character family name, code,
identifier, unit or profile URL made its write a 500. Index values of 200 characters or
more are stored as bounded keys (``fkj.search.keys``); these properties write resources
with long values in every indexed type — string, token code/system/value, uri, reference
(identifier and type), quantity unit/system/code, composite (token, quantity and string
components) — and search them: equality must find exactly the value (not one that shares
its first 136 characters), starts-with and ``:contains`` must see past the key's prefix.
Long date, number and search values are refused with a 400, never a 500.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.search.semantics_helpers import ids, put_all, search

# no , | $ \ (search syntax) and no spaces at the ends; letters that fold (Å, é, ß → ss)
# and one that NFKD expands to 18 characters (ﷺ), multi-byte ones (æøå, emoji)
WORD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789æøåÆØÅéüß-._~ﷺ🙂"


def _long(alphabet: str) -> st.SearchStrategy[str]:
    # around the key's length (199, 200, 201 …) and far past PostgreSQL's entry limit
    return st.one_of(st.integers(150, 210), st.integers(1500, 9000)).flatmap(
        lambda n: st.text(alphabet=alphabet, min_size=n, max_size=n))


CODE = _long(WORD)
TEXT = st.tuples(_long(WORD), _long(WORD)).map(lambda ab: f"{ab[0]} {ab[1]}")
_n = itertools.count()


def _tweak(s: str, at: int) -> str:
    """``s`` with the character at ``at`` (clipped to the last one) replaced by one that
    differs from it also when case and accents are folded."""
    at = min(at, len(s) - 1)
    return s[:at] + ("b" if s[at].casefold() != "b" else "c") + s[at + 1:]


def _found(client, rtype: str, params: list[tuple[str, str]]) -> set[str]:
    r = search(client, rtype, params + [("_count", "1000")])
    assert r.status_code == 200, (rtype, [(k, v[:80]) for k, v in params], r.text[:300])
    return ids(r.json())


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(name=TEXT, code=CODE, path=st.tuples(CODE, CODE).map("/".join))
def test_long_values_are_stored_and_found(client, name, code, path):
    n = next(_n)
    pid, oid, sid = f"long-p{n}", f"long-o{n}", f"long-s{n}"
    system, unit_system = f"http://code.fkj.no/{path}", f"http://unit.fkj.no/{path}"
    coding = {"system": system, "code": code}
    put_all(client, [
        {"resourceType": "Patient", "id": pid,
         "meta": {"profile": [f"http://fkj.no/{path}"], "source": f"urn:fkj:{path}"},
         "identifier": [{"system": f"urn:sys:{code}", "value": name}],
         "name": [{"family": name, "given": [code]}],
         "telecom": [{"system": "email", "value": code}],
         "address": [{"city": name}]},
        {"resourceType": "Observation", "id": oid, "status": "final",
         "code": {"coding": [coding], "text": name},
         "subject": {"reference": f"Patient/{pid}"},
         "performer": [{"type": f"http://fkj.no/{path}",
                        "identifier": {"system": f"urn:p:{path}", "value": name}}],
         "valueQuantity": {"value": 5, "unit": name, "system": unit_system, "code": code},
         "component": [{"code": {"coding": [coding]},
                        "valueQuantity": {"value": 7, "system": unit_system, "code": code}}]},
        {"resourceType": "Observation", "id": sid, "status": "final",
         "code": {"coding": [coding]}, "subject": {"reference": f"Patient/{pid}"},
         "valueString": name},
    ])
    far = len(name) - 1  # past the first 136 characters a key keeps
    patient = [  # (parameter, value, found?)
        ("family", name, True), ("family", name[:40], True), ("family", name + "q", False),
        ("family", _tweak(name, far), False), ("family", name.upper(), True),
        ("family:exact", name, True), ("family:exact", name[:-1], False),
        ("family:exact", _tweak(name, far), False),
        ("family:contains", name[-60:], True), ("family:contains", name[-60:] + "q", False),
        ("given", code, True), ("address-city", name, True),
        ("identifier", f"urn:sys:{code}|{name}", True), ("identifier", name, True),
        ("identifier", f"urn:sys:{code}|{_tweak(name, far)}", False),
        ("identifier", f"urn:sys:{_tweak(code, len(code) - 1)}|{name}", False),
        ("telecom", code, True), ("telecom", _tweak(code, len(code) - 1), False),
        ("_profile", f"http://fkj.no/{path}", True),
        ("_profile", f"http://fkj.no/{_tweak(path, len(path) - 1)}", False),
        ("_profile:below", "http://fkj.no", True),
        ("_profile:below", f"http://fkj.no/{path.split('/')[0]}", True),
        ("_profile:below", f"http://fkj.no/{_tweak(path.split('/')[0], 150)}", False),
        ("_source", f"urn:fkj:{path}", True),
    ]
    bad = []
    for param, value, expected in patient:
        if (pid in _found(client, "Patient", [(param, value), ("_id", pid)])) != expected:
            bad.append(("Patient", param, value[:60], len(value), expected))
    observation = [
        ("code", f"{system}|{code}", {oid, sid}), ("code", code, {oid, sid}),
        ("code", f"{system}|{_tweak(code, len(code) - 1)}", set()),
        ("code:text", name[:30], {oid}),
        ("value-quantity", f"5|{unit_system}|{code}", {oid}),
        ("value-quantity", f"5||{code}", {oid}),
        ("value-quantity", f"5|{unit_system}|{_tweak(code, len(code) - 1)}", set()),
        ("performer:identifier", f"urn:p:{path}|{name}", {oid}),
        ("component-code-value-quantity", f"{system}|{code}$7|{unit_system}|{code}", {oid}),
        ("component-code-value-quantity",
         f"{system}|{_tweak(code, len(code) - 1)}$7|{unit_system}|{code}", set()),
        ("code-value-string", f"{system}|{code}${name[:40]}", {sid}),
        ("code-value-string", f"{system}|{code}${name}", {sid}),
        ("code-value-string", f"{system}|{code}${name}q", set()),
    ]
    for param, value, expected in observation:
        got = _found(client, "Observation", [(param, value), ("subject", f"Patient/{pid}")])
        if got != expected:
            bad.append(("Observation", param, value[:60], len(value), sorted(got)))
    # sorting on long values, and :missing
    assert _found(client, "Patient", [("_id", pid), ("_sort", "family")]) == {pid}
    assert _found(client, "Patient", [("_id", pid), ("family:missing", "false")]) == {pid}
    assert _found(client, "Patient", [("_id", pid), ("_sort", "-_profile")]) == {pid}
    assert not bad, "\n".join(map(str, bad))


def test_long_date_and_number_values_are_a_400(client):
    junk = "2020-01-01" + "9" * 5000
    r = client.post(f"{client.base}/Patient", json={"resourceType": "Patient",
                                                    "birthDate": junk})
    assert r.status_code == 400, r.text[:200]
    for rtype, param in (("Patient", "birthdate"), ("Observation", "value-quantity"),
                         ("RiskAssessment", "probability"), ("Patient", "_lastUpdated")):
        r = search(client, rtype, [(param, junk)])
        assert r.status_code == 400, (param, r.status_code, r.text[:200])
        assert r.json()["issue"][0].get("expression"), r.text[:200]


def test_long_search_values_find_nothing_and_fail_nothing(client):
    long = "ø" * 9000
    for rtype, param in (("Patient", "family"), ("Patient", "family:exact"),
                         ("Patient", "family:contains"), ("Patient", "identifier"),
                         ("Patient", "_profile"), ("Patient", "_profile:below"),
                         ("Patient", "_profile:above"), ("Observation", "code"),
                         ("Observation", "code:text"), ("Observation", "subject"),
                         ("Observation", "subject:identifier"),
                         ("Observation", "value-quantity"),
                         ("Observation", "component-code-value-quantity"),
                         ("Patient", "_id"), ("Patient", "general-practitioner.name")):
        value = {"value-quantity": f"5||{long}",
                 "component-code-value-quantity": f"{long}$5"}.get(param, long)
        r = search(client, rtype, [(param, value)], post=True)
        assert r.status_code in (200, 400), (param, r.status_code, r.text[:200])
        if r.status_code == 200:
            assert ids(r.json()) == set(), param


def test_a_search_parameter_code_that_cannot_be_indexed_is_refused(client):
    """A tenant's SearchParameter with a code longer than the index's parameter column made
    every later write of its base type a 500 on PostgreSQL."""
    sp = {"resourceType": "SearchParameter", "url": "http://fkj.no/sp/long", "name": "long",
          "status": "active", "description": "x", "code": "k" * 150, "base": ["Patient"],
          "type": "string", "expression": "Patient.name.family"}
    r = client.post(f"{client.base}/SearchParameter", json=sp)
    assert r.status_code == 400, r.text[:200]
    assert r.json()["issue"][0]["expression"] == ["SearchParameter.code"]
    r = client.post(f"{client.base}/Patient", json={"resourceType": "Patient",
                                                    "name": [{"family": "Storm"}]})
    assert r.status_code == 201, r.text[:200]
