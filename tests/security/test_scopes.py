import pytest

from fkj.security.scopes import covered, normalize_scopes, parse_scope, permits, scope_contexts


@pytest.mark.parametrize("raw, expected", [
    ("patient/Observation.read", {"patient/Observation.rs"}),
    ("user/*.write", {"user/*.cud"}),
    ("system/Patient.*", {"system/Patient.cruds"}),
    ("patient/*.rs", {"patient/*.rs"}),
    ("user/Observation.cruds", {"user/Observation.cruds"}),
    ("patient/Observation.rs?category=laboratory",
     {"patient/Observation.rs?category=laboratory"}),
    ("openid fhirUser launch/patient", {"openid", "fhirUser", "launch/patient"}),
    ("patient/Observation.sr", set()),          # letters out of order
    ("patient/Observation.rr", set()),          # duplicate letter
    ("patient/Observation.", set()),            # no permission
    ("doctor/Observation.rs", {"doctor/Observation.rs"}),  # not a resource scope: kept opaque
    ("patient/observation.rs", set()),          # type must be capitalised
    ("patient/Observation.read?x=1", set()),    # v1 has no params
    ("user/Observation.x", set()),
])
def test_normalize(raw, expected):
    assert normalize_scopes(raw) == frozenset(expected)


@pytest.mark.parametrize("scopes, context, interaction, rtype, ok", [
    ({"patient/Observation.rs"}, "patient", "read", "Observation", True),
    ({"patient/Observation.rs"}, "patient", "vread", "Observation", True),
    ({"patient/Observation.rs"}, "patient", "history-instance", "Observation", True),
    ({"patient/Observation.rs"}, "patient", "search-type", "Observation", True),
    ({"patient/Observation.rs"}, "patient", "history-type", "Observation", True),
    ({"patient/Observation.rs"}, "patient", "create", "Observation", False),
    ({"patient/Observation.rs"}, "patient", "update", "Observation", False),
    ({"patient/Observation.rs"}, "user", "read", "Observation", False),
    ({"patient/Observation.rs"}, None, "read", "Observation", True),
    ({"patient/Observation.rs"}, "patient", "read", "Condition", False),
    ({"patient/Observation.r"}, "patient", "search-type", "Observation", False),
    ({"patient/Observation.s"}, "patient", "read", "Observation", False),
    ({"user/*.cud"}, "user", "create", "Patient", True),
    ({"user/*.cud"}, "user", "patch", "Patient", True),
    ({"user/*.cud"}, "user", "update", "Patient", True),
    ({"user/*.cud"}, "user", "delete", "Patient", True),
    ({"user/*.cud"}, "user", "read", "Patient", False),
    ({"user/Patient.u"}, "user", "patch", "Patient", True),
    ({"user/Patient.u"}, "user", "delete", "Patient", False),
    ({"system/*.s"}, "system", "search-system", None, True),
    ({"system/Patient.s"}, "system", "search-system", None, False),
    ({"system/Patient.s"}, "system", "search-system", "Patient", True),
    ({"system/*.s"}, "system", "history-system", "*", True),
    ({"system/*.rs"}, "system", "operation", "Patient", True),
    ({"system/*.r"}, "system", "operation", "Patient", False),
    ({"system/*.cruds"}, "system", "frobnicate", "Patient", False),
    ({"patient/Observation.rs?category=laboratory"}, "patient", "read", "Observation", False),
    ({"openid", "launch"}, None, "read", "Patient", False),
    (set(), None, "read", "Patient", False),
])
def test_permits(scopes, context, interaction, rtype, ok):
    assert permits(normalize_scopes(scopes), context, interaction, rtype) is ok


def test_scope_contexts():
    scopes = normalize_scopes("patient/Observation.rs user/*.r system/Patient.cruds")
    assert scope_contexts(scopes, "read", "Observation") == {"patient", "user"}
    assert scope_contexts(scopes, "search-type", "Observation") == {"patient"}
    assert scope_contexts(scopes, "delete", "Patient") == {"system"}
    assert scope_contexts(scopes, "delete", "Observation") == frozenset()


@pytest.mark.parametrize("requested, granted, ok", [
    ("patient/Observation.rs", ["patient/*.rs"], True),
    ("patient/Observation.r", ["patient/Observation.rs"], True),
    ("patient/Observation.rs", ["patient/Observation.r"], False),
    ("user/Observation.rs", ["patient/*.cruds"], False),
    ("patient/*.rs", ["patient/Observation.rs"], False),
    ("offline_access", ["offline_access"], True),
    ("offline_access", ["openid"], False),
    ("patient/Observation.rs?category=lab", ["patient/Observation.rs"], True),
    ("patient/Observation.rs", ["patient/Observation.rs?category=lab"], False),
])
def test_covered(requested, granted, ok):
    assert covered(requested, granted) is ok


def test_parse_scope_fields():
    sc = parse_scope("patient/Observation.rs?category=laboratory&code=1")
    assert sc is not None and sc.context == "patient" and sc.resource_type == "Observation"
    assert sc.permissions == "rs" and sc.params == (("category", "laboratory"), ("code", "1"))
