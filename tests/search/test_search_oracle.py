"""Property-based oracle for search: random Patients, Observations and Conditions are stored
through the API in a fresh tenant, random queries are run through the API, and the ids
returned must equal a brute-force evaluation in Python over every stored resource, where the
values come from evaluating each parameter's FHIRPath expression with fhirpathpy directly
(tests/search/search_oracle.fp_values) and ranges are compared with the engine's own prefix
semantics (fkj.search.params.ranges.matches)."""

from __future__ import annotations

import time
from decimal import Decimal

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fkj.search.normalise import normalise_text
from fkj.search.params.date import date_range
from fkj.search.params.number import number_range
from fkj.search.params.ranges import matches
from fkj.search.parse import split_pipe, split_prefix
from fkj.search.registry import default_registry
from tests.search.search_oracle import fp_values
from tests.search.semantics_helpers import FHIR, ids

REG = default_registry()
LOW, HIGH = -1e15, 1e15
LOINC, SNOMED, MRN, UCUM = ("http://loinc.org", "http://snomed.info/sct",
                            "http://example.org/mrn", "http://unitsofmeasure.org")
FAMILIES = ["Ågård", "Aagaard", "Berg", "Bergersen", "Øvre", "José", "Nordmann", "Dæhli"]
GIVENS = ["Kari", "Åse", "Ola", "Éric", "Anne", "Jon"]
CITIES = ["Tromsø", "Bergen", "Ålesund", "Oslo"]
OBS_CODES = [(LOINC, "8480-6"), (LOINC, "8462-4"), (LOINC, "2345-7"), ("http://other", "8480-6")]
COND_CODES = [(SNOMED, "38341003"), (SNOMED, "44054006"), ("http://icd", "E11")]
UNITS = [(UCUM, "mm[Hg]"), (UCUM, "mmol/L"), (None, "kg")]
PREFIXES = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
#: the implicit system of the code elements searched (the CodeSystem of their required
#: binding's ValueSet, from the R4 definitions of Patient.gender and Observation.status)
IMPLICIT = {("Patient", "gender"): "http://hl7.org/fhir/administrative-gender",
            ("Observation", "status"): "http://hl7.org/fhir/observation-status"}

# ------------------------------------------------------------------------- data generation
years = st.integers(2019, 2021)


@st.composite
def fhir_date(draw, with_time=True):
    y = draw(years)
    kinds = ["y", "m", "d"] + (["min", "s", "tz"] if with_time else [])
    kind = draw(st.sampled_from(kinds))
    mo, d = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    hh, mi, ss = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    if kind == "y":
        return f"{y}"
    if kind == "m":
        return f"{y}-{mo:02d}"
    if kind == "d":
        return f"{y}-{mo:02d}-{d:02d}"
    if kind == "min":
        return f"{y}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:00Z"
    if kind == "s":
        return f"{y}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}Z"
    return f"{y}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}+01:00"


@st.composite
def period(draw):
    a, b = draw(st.one_of(st.none(), fhir_date())), draw(st.one_of(st.none(), fhir_date()))
    if a is None and b is None:
        a = draw(fhir_date())
    if a and b and date_range(a)[0] > date_range(b)[1]:
        a, b = b, a
    if a and b and date_range(a)[0] > date_range(b)[0]:
        b = None
    return {k: v for k, v in (("start", a), ("end", b)) if v}


def opt(draw, strategy, p=0.8):
    return draw(strategy) if draw(st.floats(0, 1)) < p else None


@st.composite
def patient(draw, i):
    res = {"resourceType": "Patient", "id": f"pat{i}"}
    if draw(st.booleans()) or i == 0:
        names = []
        for _ in range(draw(st.integers(1, 2))):
            n = {"family": draw(st.sampled_from(FAMILIES))}
            g = draw(st.lists(st.sampled_from(GIVENS), max_size=2, unique=True))
            if g:
                n["given"] = g
            names.append(n)
        res["name"] = names
    g = opt(draw, st.sampled_from(["male", "female", "other", "unknown"]))
    if g:
        res["gender"] = g
    b = opt(draw, fhir_date(with_time=False))
    if b:
        res["birthDate"] = b
    ident = []
    for _ in range(draw(st.integers(0, 2))):
        system = draw(st.sampled_from([MRN, "http://other", None]))
        v = {"value": draw(st.sampled_from(["A1", "A2", "B7", "X"]))}
        if system:
            v["system"] = system
        ident.append(v)
    if ident:
        res["identifier"] = ident
    city = opt(draw, st.sampled_from(CITIES), 0.5)
    if city:
        res["address"] = [{"city": city}]
    return res


def _qty(draw):
    system, code = draw(st.sampled_from(UNITS))
    value = draw(st.sampled_from([80, 95, 100, 120, 120.5, 5.4, 5.45, 7, 0.8]))
    q = {"value": value}
    if system:
        q.update(system=system, code=code, unit=code)
    else:
        q["unit"] = code
    return q


@st.composite
def observation(draw, i, n_patients):
    system, code = draw(st.sampled_from(OBS_CODES))
    res = {"resourceType": "Observation", "id": f"obs{i}",
           "status": draw(st.sampled_from(["final", "preliminary"])),
           "code": {"coding": [{"system": system, "code": code}]}}
    if draw(st.floats(0, 1)) < 0.85:
        res["subject"] = {"reference": f"Patient/pat{draw(st.integers(0, n_patients - 1))}"}
    eff = draw(st.sampled_from(["dt", "period", "instant", None]))
    if eff == "dt":
        res["effectiveDateTime"] = draw(fhir_date())
    elif eff == "period":
        res["effectivePeriod"] = draw(period())
    elif eff == "instant":
        res["effectiveInstant"] = draw(fhir_date().filter(lambda d: "T" in d))
    if draw(st.floats(0, 1)) < 0.75:
        res["valueQuantity"] = _qty(draw)
    return res


@st.composite
def condition(draw, i, n_patients):
    system, code = draw(st.sampled_from(COND_CODES))
    res = {"resourceType": "Condition", "id": f"cond{i}",
           "subject": {"reference": f"Patient/pat{draw(st.integers(0, n_patients - 1))}"},
           "code": {"coding": [{"system": system, "code": code}]}}
    onset = draw(st.sampled_from(["dt", "period", None]))
    if onset == "dt":
        res["onsetDateTime"] = draw(fhir_date())
    elif onset == "period":
        res["onsetPeriod"] = draw(period())
    return res


@st.composite
def dataset(draw):
    n_pat, n_obs, n_cond = 12, 16, 12
    pats = [draw(patient(i)) for i in range(n_pat)]
    obs = [draw(observation(i, n_pat)) for i in range(n_obs)]
    conds = [draw(condition(i, n_pat)) for i in range(n_cond)]
    return pats + obs + conds


# ------------------------------------------------------------------------- queries
STRING_PARAMS = {"Patient": ["name", "family", "given", "address-city"]}
TOKEN_PARAMS = {"Patient": ["gender", "identifier"], "Observation": ["code", "status"],
                "Condition": ["code"]}
DATE_PARAMS = {"Patient": ["birthdate"], "Observation": ["date"], "Condition": ["onset-date"]}
REF_PARAMS = {"Observation": ["subject", "patient"], "Condition": ["subject", "patient"]}


def _accent_variant(draw, text):
    t = draw(st.sampled_from([text, text.upper(), text.lower(), normalise_text(text)]))
    return t[:draw(st.integers(1, max(1, len(t))))]


@st.composite
def string_value(draw, modifier):
    word = draw(st.sampled_from(FAMILIES + GIVENS + CITIES))
    if modifier == "exact":
        return draw(st.sampled_from([word, word.lower()]))
    if modifier == "contains":
        k = draw(st.integers(0, max(0, len(word) - 2)))
        return _accent_variant(draw, word[k:])
    return _accent_variant(draw, word)


@st.composite
def token_value(draw, rtype, param):
    if (rtype, param) in IMPLICIT:
        value = draw(st.sampled_from(["male", "female", "other", "unknown"] if param == "gender"
                                     else ["final", "preliminary", "amended"]))
        system = draw(st.sampled_from([IMPLICIT[rtype, param], "http://other"]))
        form = draw(st.sampled_from(["code", "code", "sys|code", "sys|", "|code"]))
    elif param == "identifier":
        system = draw(st.sampled_from([MRN, "http://other", ""]))
        value = draw(st.sampled_from(["A1", "A2", "B7", "X"]))
        form = draw(st.sampled_from(["code", "sys|code", "sys|"]))
    else:
        system, value = draw(st.sampled_from(OBS_CODES if rtype == "Observation"
                                             else COND_CODES))
        form = draw(st.sampled_from(["code", "sys|code", "sys|", "|code"]))
    if form == "code":
        return value
    if form == "|code":
        return f"|{value}"
    if form == "sys|":
        return f"{system}|" if system else f"|{value}"
    return f"{system}|{value}"


@st.composite
def date_value(draw):
    return draw(st.sampled_from(PREFIXES)) + draw(fhir_date())


@st.composite
def quantity_value(draw):
    prefix = draw(st.sampled_from(PREFIXES))
    number = draw(st.sampled_from(["100", "120", "95", "5.4", "5", "120.5", "1.2e2", "0.8",
                                   "7", "80"]))
    unit = draw(st.sampled_from([None, None, *UNITS]))
    if unit is None:
        return prefix + number
    system, code = unit
    return f"{prefix}{number}|{system or ''}|{code}"


@st.composite
def criterion(draw, rtype, depth=0):
    """One (name, value) pair for ``rtype``."""
    kinds = ["token", "date", "missing"]
    if rtype in STRING_PARAMS:
        kinds.append("string")
    if rtype == "Observation":
        kinds.append("quantity")
    if rtype in REF_PARAMS:
        kinds += ["reference", "chain", "chain"]
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(1, 3))
    if kind == "string":
        param = draw(st.sampled_from(STRING_PARAMS[rtype]))
        mod = draw(st.sampled_from([None, None, "exact", "contains"]))
        vals = [draw(string_value(mod)) for _ in range(n)]
        return (param + (f":{mod}" if mod else ""), ",".join(vals))
    if kind == "token":
        param = draw(st.sampled_from(TOKEN_PARAMS[rtype]))
        mod = draw(st.sampled_from([None, None, "not"]))
        vals = [draw(token_value(rtype, param)) for _ in range(n)]
        return (param + (f":{mod}" if mod else ""), ",".join(vals))
    if kind == "date":
        param = draw(st.sampled_from(DATE_PARAMS[rtype]))
        return (param, ",".join(draw(date_value()) for _ in range(n)))
    if kind == "quantity":
        return ("value-quantity", ",".join(draw(quantity_value()) for _ in range(n)))
    if kind == "reference":
        param = draw(st.sampled_from(REF_PARAMS[rtype]))
        vals = [draw(st.sampled_from([f"pat{k}", f"Patient/pat{k}"]))
                for k in draw(st.lists(st.integers(0, 13), min_size=1, max_size=3))]
        return (param, ",".join(vals))
    if kind == "chain":
        param = draw(st.sampled_from(REF_PARAMS[rtype]))
        head = draw(st.sampled_from([param, f"{param}:Patient"]))
        inner_name, inner_value = draw(criterion("Patient", depth + 1))
        return (f"{head}.{inner_name}", inner_value)
    # :missing on any kind
    param = draw(st.sampled_from(
        DATE_PARAMS[rtype] + TOKEN_PARAMS[rtype] + STRING_PARAMS.get(rtype, [])
        + REF_PARAMS.get(rtype, []) + (["value-quantity"] if rtype == "Observation" else [])))
    return (f"{param}:missing", draw(st.sampled_from(["true", "false"])))


@st.composite
def query(draw):
    rtype = draw(st.sampled_from(["Patient", "Observation", "Condition"]))
    crits = draw(st.lists(criterion(rtype), min_size=1, max_size=2))
    return rtype, crits


# ------------------------------------------------------------------------- the oracle
def _strings(v) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        out = []
        for k in ("family", "given", "prefix", "suffix", "text", "line", "city", "district",
                  "state", "postalCode", "country"):
            x = v.get(k)
            out += x if isinstance(x, list) else ([x] if x else [])
        return out
    return []


def _tokens(v, implicit: str | None = None) -> list[tuple]:
    if isinstance(v, str):
        return [(implicit, v)]
    if isinstance(v, dict):
        if "coding" in v or "text" in v:
            return [(c.get("system"), c.get("code")) for c in v.get("coding", [])]
        if "value" in v:  # Identifier
            return [(v.get("system"), v.get("value"))]
        if "code" in v:
            return [(v.get("system"), v.get("code"))]
    return []


def _range(v) -> tuple[float, float] | None:
    if isinstance(v, dict):  # Period
        lo = date_range(v["start"])[0] if v.get("start") else LOW
        hi = date_range(v["end"])[1] if v.get("end") else HIGH
        return lo, hi
    return date_range(str(v))


def _quantities(v) -> list[tuple]:
    value = v.get("value")
    if value is None:
        return []
    lo, hi = number_range(str(value) if not isinstance(value, float) else repr(value))
    code = v.get("code") or v.get("unit")
    return [(v.get("system"), code, lo, hi)] + (
        [(None, v["unit"], lo, hi)] if v.get("code") and v.get("unit")
        and v["unit"] != v["code"] else [])


def _ref_key(v) -> tuple[str, str] | None:
    ref = v.get("reference", "") if isinstance(v, dict) else ""
    if "/" in ref:
        t, i = ref.split("/")[-2:]
        return t, i
    return None


class Oracle:
    def __init__(self, stored: list[dict]):
        self.by_key = {(r["resourceType"], r["id"]): r for r in stored}

    def values(self, res, code):
        p = REG.get(res["resourceType"], code)
        return fp_values(res, p), p

    def match(self, res, name, value) -> bool:
        rtype = res["resourceType"]
        head, dot, rest = name.partition(".")
        code, _, mod = head.partition(":")
        vals, p = self.values(res, code)
        if dot:
            targets = []
            for v in vals:
                k = _ref_key(v)
                if k and (not mod or k[0] == mod) and k in self.by_key:
                    targets.append(self.by_key[k])
            return any(self.match(t, rest, value) for t in targets if t["resourceType"] in
                       ([mod] if mod else list(p.target)))
        if mod == "missing":
            return (not vals) == (value == "true")
        alts = value.split(",")
        if p.type == "string":
            strs = [s for v in vals for s in _strings(v)]
            if mod == "exact":
                return any(s == a for s in strs for a in alts)
            if mod == "contains":
                return any(normalise_text(a) in normalise_text(s) for s in strs for a in alts)
            return any(normalise_text(s).startswith(normalise_text(a)) for s in strs
                       for a in alts)
        if p.type == "token":
            toks = [t for v in vals for t in _tokens(v, IMPLICIT.get((rtype, code)))]
            hit = any(self._token_hit(t, a) for t in toks for a in alts)
            return not hit if mod == "not" else hit
        if p.type == "reference":
            keys = [_ref_key(v) for v in vals]
            return any(k and (a == k[1] or a == f"{k[0]}/{k[1]}") for k in keys for a in alts)
        if p.type == "date":
            ranges = [_range(v) for v in vals]
            return any(self._ranged(ranges, a, lambda x: date_range(x), True) for a in alts)
        if p.type == "quantity":
            return any(self._quantity(vals, a) for a in alts)
        raise AssertionError(p.type)

    @staticmethod
    def _token_hit(tok, a) -> bool:
        system, code = split_pipe(a)
        if system is None:
            return tok[1] == code
        if system == "":
            return tok[0] is None and tok[1] == code
        if code == "":
            return tok[0] == system
        return tok == (system, code)

    @staticmethod
    def _ranged(ranges, a, parse, is_date) -> bool:
        prefix, text = split_prefix(a)
        lo, hi = parse(text)
        approx = abs(time.time() - lo) * 0.1 if is_date else abs((lo + hi) / 2) * 0.1
        if prefix == "ne":
            return bool(ranges) and not any(matches(l, h, "eq", lo, hi, approx)
                                            for l, h in ranges)
        return any(matches(l, h, prefix, lo, hi, approx) for l, h in ranges)

    def _quantity(self, vals, a) -> bool:
        number, _, units = a.partition("|")
        qs = [q for v in vals for q in _quantities(v)]
        if units:
            system, code = split_pipe(units)
            qs = [q for q in qs if (not system or q[0] == system) and (not code or q[1] == code)]
        return self._ranged([(q[2], q[3]) for q in qs], number,
                            lambda x: number_range(str(Decimal(x))) if "e" in x
                            else number_range(x), False)

    def run(self, rtype, crits) -> set[str]:
        return {r["id"] for (t, _), r in self.by_key.items() if t == rtype
                and all(self.match(r, n, v) for n, v in crits)}


def _store(client, resources):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": x, "request": {"method": "PUT", "url": f"{x['resourceType']}/{x['id']}"}}
        for x in resources]}
    r = client.post(client.base, json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text


def _stored(client) -> list[dict]:
    out = []
    for t in ("Patient", "Observation", "Condition"):
        r = client.get(f"{client.base}/{t}", params={"_count": "1000"})
        out += [e["resource"] for e in r.json().get("entry", [])]
    return out


@settings(max_examples=1, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
def test_search_matches_fhirpath_oracle(client, data):
    _store(client, data.draw(dataset(), label="resources"))
    oracle = Oracle(_stored(client))
    failures, stats = [], []
    for _ in range(60):
        rtype, crits = data.draw(query())
        get = client.get(f"{client.base}/{rtype}", params=crits + [("_count", "1000")])
        assert get.status_code == 200, (rtype, crits, get.text)
        got, want = ids(get.json()), oracle.run(rtype, crits)
        if got != want:
            failures.append((rtype, crits, sorted(got - want), sorted(want - got)))
        stats.append(len(want))
    assert not failures, "\n".join(map(str, failures))
    # the queries are not trivially empty
    assert sum(1 for n in stats if n) >= 10, stats
