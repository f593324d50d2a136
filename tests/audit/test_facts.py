"""A request's record is written as its facts and built into the AuditEvent when chained
(fkj.security.audit.facts): the event built from the journal line is the one the request
would have built itself, bad facts are refused when recorded, and facts that cannot be built
still give a record."""

from __future__ import annotations

import os

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fkj.model.validation import validate_resource
from fkj.security.audit.chain import audit_row
from fkj.security.audit.events import add_compact_entities, build_audit_event, index_fields
from fkj.security.audit.facts import COMPACT_OVER, EventFacts, event_of
from fkj.security.audit.journal import SUFFIX, read_segment
from fkj.types import Principal
from tests.audit.helpers import practitioner
from tests.audit.test_journal import chained, crash, journal_writer

CITIZEN = Principal(kind="citizen", subject="idporten-1", tenant="4601", pid="05076600324",
                    client_id="helsenorge")
BACKEND = Principal(kind="client", subject="vendor-x", tenant="4601", client_id="vendor-x",
                    organisation="Organization/vendor", purpose_of_use="HOPERAT")
PRINCIPALS = [practitioner("4601"), practitioner("4601", purpose_of_use="ETREAT"), CITIZEN,
              BACKEND, Principal.system("4601")]

refs = st.lists(st.sampled_from([f"Observation/o{i}/_history/{i % 3 + 1}" for i in range(40)]
                                + ["https://kj.example/fhir/MedicationStatement/1"]),
                max_size=45)


@settings(max_examples=150, deadline=None)
@given(principal=st.sampled_from(PRINCIPALS),
       kind=st.sampled_from([("R", "read"), ("R", "vread"), ("E", "search-type"),
                             ("R", "history-instance"), ("E", "$everything")]),
       resources=refs,
       patients=st.lists(st.sampled_from(["Patient/a", "Patient/b", "Patient/c"]), max_size=3),
       outcome=st.sampled_from(["0", "4"]),
       purpose=st.sampled_from([None, "BTG", "ETREAT BTG"]),
       query=st.sampled_from([None, "Observation?subject=Patient%2Fa"]),
       description=st.sampled_from([None, "403: sperret"]))
def test_the_event_built_from_the_journal_line_is_the_requests_event(
        principal, kind, resources, patients, outcome, purpose, query, description):
    action, subtype = kind
    facts = EventFacts(principal, action, subtype, resources, patients, outcome, purpose,
                       query, description)
    line = orjson.dumps({"f": facts.to_json()})
    built = event_of(orjson.loads(line)["f"])
    # what the request would have built at once (the same compact rule as before)
    compact = len(resources) > (COMPACT_OVER if subtype in ("read", "vread") else 1)
    expected = build_audit_event(principal, action=action, subtype=subtype,
                                 resources=[] if compact else resources, patients=patients,
                                 outcome=outcome, description=description, purpose=purpose,
                                 query=query, recorded_us=facts.recorded_us)
    expected["id"] = facts.id
    if compact:
        add_compact_entities(expected, resources)
    assert built == expected
    assert validate_resource(built) == []


@pytest.mark.parametrize("action,subtype,outcome", [("X", "read", "0"), ("R", "peek", "0"),
                                                    ("R", "read", "2")])
def test_bad_facts_are_refused_when_recorded(action, subtype, outcome):
    with pytest.raises(ValueError):
        EventFacts(practitioner("4601"), action, subtype, [], [], outcome)


def test_facts_that_cannot_be_built_still_give_a_record():
    facts = EventFacts(practitioner("4601"), "R", "read", ["Observation/1"], ["Patient/a"],
                       "0").to_json()
    facts["p"]["colour"] = "blue"  # not a principal's attribute: Principal(**…) fails
    event = event_of(facts)
    assert validate_resource(event) == []
    assert "incomplete facts" in event["outcomeDesc"] and "Patient/a" in event["outcomeDesc"]
    assert index_fields(event)["patients"] == "Patient/a"
    assert index_fields(event)["recorded"] == facts["ts"]


def test_a_requests_facts_are_journaled_and_chained_as_its_event(db, tenant, tmp_path):
    writer = journal_writer(db, tmp_path)
    facts = [EventFacts(practitioner(tenant), "E", "search-type",
                        [f"Observation/o{i}/_history/1" for i in range(3)], ["Patient/p1"],
                        "0", query="Observation?subject=Patient%2Fp1") for _ in range(2)]
    try:
        writer.record(tenant, facts)
        (path,) = tmp_path.glob(f"*{SUFFIX}")
        fd = os.open(path, os.O_RDONLY)
        try:
            _, entries = read_segment(fd)
        finally:
            os.close(fd)
        assert [e.row["f"]["id"] for e in entries] == [f.id for f in facts]
        assert "content" not in entries[0].row  # the event is not built before the answer
        writer.flush()
        assert chained(db, tenant) == [f.id for f in facts]
    finally:
        writer.close()


def test_facts_in_a_crashed_processs_journal_are_built_by_the_next(db, tenant, tmp_path):
    first = journal_writer(db, tmp_path)
    facts = EventFacts(CITIZEN, "R", "read", ["Patient/p9/_history/1"], ["Patient/p9"], "0")
    first.record(tenant, [facts])
    crash(first)
    second = journal_writer(db, tmp_path)
    try:
        assert second.recover() == 1
        assert chained(db, tenant) == [facts.id]
        from sqlalchemy import select

        from fkj.security.audit import audit_log
        from fkj.store.backend import scope
        with scope(db.engine, tenant) as conn:
            content = conn.execute(select(audit_log.c.content)
                                   .where(audit_log.c.tenant == tenant)).scalar_one()
        assert content == audit_row(facts.build())["content"]
    finally:
        second.close()
