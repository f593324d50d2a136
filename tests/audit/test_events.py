"""AuditEvent resources: IHE BALP structure, valid FHIR R4."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fkj.model.validation import validate_resource
from fkj.security.audit import build_audit_event
from fkj.security.audit.events import index_fields
from fkj.types import Principal
from tests.audit.helpers import practitioner

CITIZEN = Principal(kind="citizen", subject="idporten-1", tenant="4601", pid="05076600324",
                    client_id="helsenorge", patient="p1")
BACKEND = Principal(kind="client", subject="vendor-x", tenant="4601", client_id="vendor-x",
                    organisation="987654321")


def codes(items):
    return [c["code"] for i in items for c in i["coding"]]


@pytest.mark.parametrize("principal", [
    practitioner("4601"), CITIZEN, BACKEND, Principal.system("4601")],
    ids=["practitioner", "citizen", "backend", "system"])
@pytest.mark.parametrize("action,subtype,outcome", [
    ("R", "read", "0"), ("R", "vread", "0"), ("E", "search-type", "0"), ("C", "create", "0"),
    ("U", "update", "0"), ("D", "delete", "0"), ("R", "history", "0"),
    ("E", "operation", "0"), ("E", "$everything", "0"), ("R", "read", "4"),
    ("C", "create", "8")])
def test_events_are_valid_fhir(principal, action, subtype, outcome):
    e = build_audit_event(principal, action=action, subtype=subtype,
                          resources=["Observation/o1", "Observation/o2"],
                          patients=["Patient/p1"], outcome=outcome,
                          description="denied: no care relation" if outcome != "0" else None,
                          purpose=None, query="Observation?patient=p1" if "search" in subtype
                          else None)
    assert validate_resource(e) == [], validate_resource(e)
    assert e["action"] == action and e["outcome"] == outcome
    assert sum(1 for a in e["agent"] if a["requestor"]) == 1


def test_practitioner_read_follows_balp():
    e = build_audit_event(practitioner("4601"), action="R", subtype="read",
                          resources=["Observation/o1"], patients=["Patient/p1"], outcome="0",
                          description=None, purpose=None)
    assert e["resourceType"] == "AuditEvent"
    assert e["type"]["code"] == "rest"
    assert e["subtype"][0] == {"system": "http://hl7.org/fhir/restful-interaction",
                               "code": "read", "display": "read"}
    assert e["recorded"].endswith("Z")
    user, client, server = e["agent"]
    assert user["requestor"] is True
    assert user["who"]["identifier"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.4",
                                         "value": "9144897"}
    assert user["who"]["reference"] == "Practitioner/9144897"
    assert user["role"] == [{"text": "sykepleier"}] and user["location"]["display"] == "HER:81234"
    assert client["who"]["identifier"]["value"] == "ehr-app" and client["requestor"] is False
    assert client["type"]["coding"][0]["code"] == "110153"
    assert server["type"]["coding"][0]["code"] == "110152"
    assert e["source"]["observer"]["display"] == "FKJ-plattformen"
    patient, data = e["entity"]
    assert patient["what"]["reference"] == "Patient/p1" and patient["role"]["code"] == "1"
    assert data["what"]["reference"] == "Observation/o1" and data["role"]["code"] == "4"
    assert codes(e["purposeOfEvent"]) == ["TREAT"]
    # HL7 Norway: the patient extension
    assert e["extension"][0]["valueReference"] == {"reference": "Patient/p1"}


def test_emergency_access_and_denial():
    p = practitioner("4601", purpose_of_use="ETREAT")
    e = build_audit_event(p, action="R", subtype="search-type", resources=[],
                          patients=["Patient/p1"], outcome="4",
                          description="blocked (sperring)", purpose="ETREAT BTG",
                          query="Condition?patient=p1")
    assert validate_resource(e) == []
    assert codes(e["purposeOfEvent"]) == ["ETREAT", "BTG"]
    assert codes(e["agent"][0]["purposeOfUse"]) == ["ETREAT", "BTG"]
    assert e["outcome"] == "4" and e["outcomeDesc"] == "blocked (sperring)"
    query = next(x for x in e["entity"] if x["role"]["code"] == "24")
    assert base64.b64decode(query["query"]).decode() == "Condition?patient=p1"
    f = index_fields(e)
    assert f["purpose"] == "ETREAT BTG" and f["agent"] == "9144897" and f["outcome"] == "4"


def test_citizen_and_backend_agents():
    e = build_audit_event(CITIZEN, action="R", subtype="read", resources=["Patient/p1"],
                          patients=["Patient/p1"], outcome="0", description=None, purpose=None)
    assert e["agent"][0]["who"]["identifier"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.1",
                                                  "value": "05076600324"}
    assert index_fields(e)["agent"] == "05076600324"
    e = build_audit_event(BACKEND, action="C", subtype="create", resources=["Observation/1"],
                          patients=[], outcome="0", description=None, purpose="HOPERAT")
    client = e["agent"][0]
    assert client["requestor"] is True and client["who"]["identifier"]["value"] == "vendor-x"
    assert index_fields(e)["agent"] == "vendor-x"
    assert "extension" not in e  # no patient


@pytest.mark.parametrize("kw", [{"action": "X"}, {"outcome": "1"}, {"subtype": "frobnicate"}])
def test_bad_codes_are_refused(kw):
    args = {"action": "R", "subtype": "read", "resources": [], "patients": [], "outcome": "0",
                "description": None, "purpose": None}
    args.update(kw)
    with pytest.raises(ValueError):
        build_audit_event(practitioner("4601"), **args)


def test_validator_would_catch_a_broken_event():
    """The validity checks above are meaningful: the validator rejects a broken AuditEvent."""
    e = build_audit_event(practitioner("4601"), action="R", subtype="read", resources=[],
                          patients=[], outcome="0", description=None, purpose=None)
    del e["agent"][0]["requestor"]
    assert validate_resource(e)


def test_write_events_for_prepared_operations():
    from fkj.model.validation import validate_resource as validate
    from fkj.repository.unit_of_work import Prepared
    from fkj.security.audit.hooks import write_events

    ops = [
        Prepared(type="Patient", id="p1", version=1, last_updated=1_767_225_600_000_000,
                 method="POST", content="{}", action="create"),
        Prepared(type="Observation", id="o1", version=2, last_updated=1_767_225_600_000_001,
                 method="PUT", content="{}", action="update",
                 index={"reference": [("subject", "Patient", "p1", None, None, None),
                                      ("performer", "Practitioner", "x", None, None, None)]}),
        Prepared(type="Observation", id="o2", version=3, last_updated=1_767_225_600_000_002,
                 method="DELETE", content="{}", deleted=True, action="delete"),
    ]
    events = write_events(practitioner("4601"), ops)
    assert [e["action"] for e in events] == ["C", "U", "D"]
    assert [e["subtype"][0]["code"] for e in events] == ["create", "update", "delete"]
    assert [index_fields(e)["patients"] for e in events] == ["Patient/p1", "Patient/p1", ""]
    assert events[1]["entity"][1]["what"]["reference"] == "Observation/o1/_history/2"
    assert events[0]["recorded"] == "2026-01-01T00:00:00.000000Z"
    assert all(validate(e) == [] for e in events)


def test_event_ids_are_version_4_uuids_and_differ_in_a_forked_process():
    """Event ids come from the random module (no GIL release per id): unique, RFC 4122
    version 4, and a forked server process does not repeat its parent's sequence."""
    import os
    import uuid

    from fkj.security.audit.events import new_id

    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids[:100])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids
        os.write(write, " ".join(new_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    parent = [new_id() for _ in range(5)]
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode().split()
    os.close(read)
    assert len(child) == 5 and not set(child) & set(parent)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=4_102_444_800_000_000))
def test_recorded_instants_round_trip(us):
    """``recorded`` is the instant of the access to the microsecond, whichever second the
    formatter saw before (it keeps the last one)."""
    from datetime import UTC, datetime, timedelta

    from fkj.security.audit.events import iso_instant, parse_instant
    expected = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
                ).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert iso_instant(us) == expected
    assert iso_instant(us + 1_000_000)[:19] != expected[:19]
    assert iso_instant(us) == expected and parse_instant(expected) == us


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=24)), max_size=4))
def test_the_recorded_query_is_urlencoded(query):
    """The query entity holds the search as ``urlencode`` writes it, also on the fast path
    for plain names and values."""
    from urllib.parse import urlencode

    from fkj.security.audit.wiring import _urlencode
    assert _urlencode(query) == urlencode(query)
    plain = [("subject", "Patient/p-1"), ("_count", "10")]
    assert _urlencode(plain) == urlencode(plain) == "subject=Patient%2Fp-1&_count=10"
