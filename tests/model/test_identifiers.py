from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fkj.model.identifiers import (
    DNR_SYSTEM,
    FNR_SYSTEM,
    HPR_SYSTEM,
    check_person_number,
    identifier_issues,
    make_dnr,
    make_fnr,
    person_number_variant,
)

# 13097248022: real-format fnr (13.09.72, individual 480) - computed with the mod-11 rule
VALID_FNR = "13097248022"


def _with_controls(base9: str) -> str:
    w1, w2 = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    d = [int(c) for c in base9]
    k1 = (11 - sum(a * b for a, b in zip(w1, d)) % 11) % 11
    k2 = (11 - sum(a * b for a, b in zip(w2, d + [k1])) % 11) % 11
    assert k1 != 10 and k2 != 10
    return f"{base9}{k1}{k2}"


def _first(ddmmyy: str) -> str:
    """The first number with this date part (individual 480 upwards) whose controls exist."""
    for ind in range(480, 1480):
        try:
            return _with_controls(f"{ddmmyy}{ind % 1000:03d}")
        except AssertionError:
            continue
    raise AssertionError("unreachable")


def test_valid_real_format_fnr():
    assert check_person_number(VALID_FNR, "fnr") is None
    assert person_number_variant(VALID_FNR, "fnr") == ""


@pytest.mark.parametrize("ddmmyy,variant", [
    ("138972", "synthetic-tenor"),    # month + 80 (Test-Norge / Tenor)
    ("137472", "synthetic-syntpop"),  # month + 65 (SyntPop)
    ("134972", "synthetic-h/dolly"),  # month + 40 (H-nummer / Dolly)
    ("139272", "synthetic-tenor"),    # December + 80
])
def test_synthetic_fnr_accepted(ddmmyy, variant):
    number = _first(ddmmyy)
    assert check_person_number(number, "fnr") is None
    assert person_number_variant(number, "fnr") == variant


def test_d_number():
    number = _first("530972")  # day 13 + 40
    assert check_person_number(number, "dnr") is None
    assert "D-number" in check_person_number(number, "fnr")
    assert check_person_number(VALID_FNR, "dnr") is not None
    synthetic = _first("538972")  # D-nummer in Tenor (month + 80)
    assert check_person_number(synthetic, "dnr") is None


def test_wrong_check_digits_rejected():
    assert check_person_number(VALID_FNR[:10] + "3", "fnr") == "wrong control digit (K2)"
    bad_k1 = VALID_FNR[:9] + "9" + VALID_FNR[10]
    assert check_person_number(bad_k1, "fnr") is not None


@pytest.mark.parametrize("ddmmyy", ["300272", "290201", "310472", "001072", "131372",
                                    "320172", "139372", "137872", "290289"])
def test_invalid_date_rejected(ddmmyy):
    number = _first(ddmmyy)
    reason = check_person_number(number, "fnr")
    assert reason is not None and ("date" in reason or "day" in reason or "month" in reason)


def test_leap_day_any_century():
    assert check_person_number(_first("290200"), "fnr") is None  # 2000 leap year
    assert check_person_number(_first("290296"), "fnr") is None
    assert check_person_number(_first("298296"), "fnr") is None  # synthetic leap day


@pytest.mark.parametrize("value", ["", "1309724802", "130972480220", "1309724802a",
                                   "１３０９７２４８０２２", None, 13097248022])
def test_malformed(value):
    assert check_person_number(value, "fnr") is not None


def test_fh_number_not_fnr():
    assert "FH-number" in check_person_number(_with_controls("812345678"), "fnr")


def test_2032_rule_k1_remainders():
    # K1 whose weighted remainder (incl. K1) is 1..3 is accepted under the 2032 rule,
    # with K2 computed over the actual K1.
    w1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
    w2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    base = [int(c) for c in "130972480"]
    s = sum(a * b for a, b in zip(w1, base))
    accepted = 0
    for k1 in range(10):
        r = (s + k1) % 11
        k2 = (11 - sum(a * b for a, b in zip(w2, base + [k1])) % 11) % 11
        if k2 == 10:
            continue
        number = "130972480" + f"{k1}{k2}"
        if r in (0, 1, 2, 3):
            accepted += 1
            assert check_person_number(number, "fnr") is None
            if r:
                assert check_person_number(number, "fnr", allow_2032=False) is not None
        else:
            assert check_person_number(number, "fnr") == "wrong control digit (K1)"
    assert accepted >= 2


def test_make_returns_none_when_control_is_10():
    results = [make_fnr(date(1990, 5, 17), i) for i in range(1000)]
    assert any(r is None for r in results)
    assert all(r is None or check_person_number(r, "fnr") is None for r in results)


dates = st.dates(min_value=date(1854, 1, 1), max_value=date(2039, 12, 31))


@settings(max_examples=300)
@given(dates, st.integers(0, 999), st.booleans(), st.booleans(), st.data())
def test_generated_numbers_validate_and_single_digit_changes_fail(d, ind, synthetic, dnr, data):
    maker, kind = (make_dnr, "dnr") if dnr else (make_fnr, "fnr")
    number = maker(d, ind, synthetic)
    if number is None:
        return
    assert check_person_number(number, kind) is None
    assert person_number_variant(number, kind) == ("synthetic-tenor" if synthetic else "")
    pos = data.draw(st.integers(0, 10))
    digit = data.draw(st.sampled_from([c for c in "0123456789" if c != number[pos]]))
    changed = number[:pos] + digit + number[pos + 1:]
    # K2 stays exact (weights 1..7, never 0 mod 11), so even with the 2032 rule for K1
    # every single-digit change is detected.
    assert check_person_number(changed, kind) is not None


def test_identifier_issues():
    bad = VALID_FNR[:10] + "3"
    patient = {"resourceType": "Patient", "identifier": [
        {"system": HPR_SYSTEM, "value": "123"},
        {"system": FNR_SYSTEM, "value": bad},
        {"system": DNR_SYSTEM, "value": VALID_FNR},
        {"system": FNR_SYSTEM, "value": VALID_FNR}]}
    issues = identifier_issues(patient)
    assert [(i.code, i.expression) for i in issues] == [
        ("value", ["Patient.identifier[1].value"]), ("value", ["Patient.identifier[2].value"])]
    enc = {"resourceType": "Encounter", "subject": {"identifier": {"system": FNR_SYSTEM,
                                                                   "value": bad}},
           "participant": [{"individual": {"identifier": {"system": FNR_SYSTEM,
                                                         "value": VALID_FNR}}}]}
    assert [i.expression for i in identifier_issues(enc)] == [["Encounter.subject.identifier.value"]]
    assert identifier_issues({"resourceType": "Patient", "identifier": "x"}) == []
    assert identifier_issues("x") == []  # type: ignore[arg-type]
    assert identifier_issues({"resourceType": "Practitioner", "identifier": [
        {"system": FNR_SYSTEM, "value": 5}]})[0].expression == ["Practitioner.identifier[0].value"]
