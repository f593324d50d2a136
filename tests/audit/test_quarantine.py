"""Whatever reaches the audit log is stored, and one bad record never blocks the others.

Issue 30, item 1: a request for ``Patient/a%00b`` left a record with a NUL byte in the
journal; PostgreSQL refused it, the shipper retried that batch for ever, the records queued
behind it never reached the chain, and after 5 s every access was refused (503). These
tests put such records straight into the writer and its journal (independent of what the
HTTP edge lets through) on both backends:

* records with characters no database stores (NUL, lone surrogates) are chained, with the
  characters shown as ``\\uXXXX`` escapes, so what was attempted stays visible;
* a record that still cannot be stored (a corrupt journal line) is found by bisecting the
  shipment, the others are chained, and it is kept in quarantine: durably, hash-protected
  (its hash is chained in its place), reported by ``fkj audit verify`` and
  ``fkj audit quarantine list``, and it never makes the server refuse accesses.
"""

from __future__ import annotations

import json
import time

import orjson
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from fkj.security.audit import AuditWriter, audit_log, build_audit_event, verify_chain
from fkj.security.audit.chain import audit_row
from fkj.security.audit.facts import EventFacts
from fkj.security.audit.journal import SUFFIX, AuditJournal, database_identity
from fkj.store.backend import scope
from fkj.types import Principal
from tests.audit.helpers import read_event

NUL_PATIENT = "Patient/a\x00b"


def journal_writer(db, directory, **kw) -> AuditWriter:
    kw.setdefault("ship_interval", 3600.0)  # nothing is chained unless the test asks
    journal = AuditJournal(directory, database=database_identity(db.url))
    return AuditWriter(db.engine, journal=journal, **kw)


def inject(writer: AuditWriter, tenant: str, rows: list[dict]) -> None:
    """Write ``rows`` (audit rows as a journal holds them, unchecked) into the writer's
    journal and queue, as ``AuditWriter._write`` does with the rows it makes."""
    now = time.monotonic()
    writer.journal.append(tenant, rows,
                          then=lambda entries: writer._journaled.extend(
                              (e, now) for e in entries))


def chained_events(db, tenant) -> list[dict]:
    with scope(db.engine, tenant) as conn:
        return [json.loads(c) for c, in conn.execute(
            select(audit_log.c.content).where(audit_log.c.tenant == tenant)
            .order_by(audit_log.c.seq))]


def nul_row(tenant: str) -> dict:
    """The row the journal held for ``GET Patient/a%00b`` before the fix: NUL in the
    search columns (the content escapes it as JSON does)."""
    event = build_audit_event(Principal(kind="client", subject="unauthenticated", tenant=tenant),
                              action="R", subtype="read", resources=[NUL_PATIENT],
                              patients=[NUL_PATIENT], outcome="4",
                              description="401: Bearer token required")
    from fkj.security.audit.events import index_fields
    return {**index_fields(event),
            "content": orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()}


def corrupt_row() -> dict:
    """A journal row no database takes and nothing can repair: its content is not an
    AuditEvent and its time is out of any integer column's range."""
    return {"recorded": 2 ** 63 + 5, "patients": "", "agent": "x", "action": "R",
            "subtype": "read", "purpose": "", "outcome": "0", "content": "{not json",
            "patient_list": []}


def test_unstorable_characters_are_chained_escaped(db, tenant, tmp_path):
    """NUL (PostgreSQL stores none) and lone surrogates (not UTF-8 at all) in every part of
    a record — as an event and as a request's facts — are chained, shown as escapes."""
    writer = journal_writer(db, tmp_path)
    try:
        who = Principal(kind="client", subject="evil\x00client", tenant=tenant)
        as_event = build_audit_event(who, action="R", subtype="read",
                                     resources=[NUL_PATIENT], patients=[NUL_PATIENT],
                                     outcome="4", description="401: a\x00b \ud800 c")
        as_facts = EventFacts(who, "E", "search-type", [], [NUL_PATIENT], "4",
                              query="name=a\x00b&x=\udcff", description="400: \x00")
        writer.record(tenant, [as_event, as_facts])
        writer.flush()
    finally:
        writer.close()
    events = chained_events(db, tenant)
    assert len(events) == 2
    first, second = events
    assert first["outcomeDesc"] == "401: a\\u0000b \\ud800 c"
    assert [e["what"]["reference"] for e in first["entity"]] == ["Patient/a\\u0000b"] * 2
    assert first["agent"][0]["who"]["display"] == "evil\\u0000client"
    assert second["outcomeDesc"] == "400: \\u0000"
    assert not [s for s in strings(events) if "\x00" in s or _surrogate(s)]
    res = verify_chain(db.engine, tenant)
    assert res.ok, res.problems


def test_the_nul_record_of_the_incident_no_longer_blocks_the_chain(db, tenant, tmp_path):
    """The journal row of the incident, then ordinary accesses: all are chained (the NUL
    row with its characters escaped where the database refuses them), none waits, and
    accesses are not refused after max_lag."""
    writer = journal_writer(db, tmp_path, max_lag=0.5)
    try:
        good_before = read_event(tenant)
        writer.record(tenant, [good_before])
        inject(writer, tenant, [nul_row(tenant)])
        good_after = [read_event(tenant) for _ in range(3)]
        writer.record(tenant, good_after)
        writer.flush()
        assert writer.lag() == 0.0
        time.sleep(0.8)  # longer than max_lag: nothing waits, so nothing is refused
        late = read_event(tenant)
        writer.record(tenant, [late])
        writer.flush()
    finally:
        writer.close()
    events = chained_events(db, tenant)
    ids = [e["id"] for e in events]
    assert ids[0] == good_before["id"] and ids[2:] == [e["id"] for e in good_after + [late]]
    assert events[1]["entity"][0]["what"]["reference"] in (NUL_PATIENT, "Patient/a\\u0000b")
    res = verify_chain(db.engine, tenant)
    assert res.ok and res.quarantined == 0, res.problems


def test_a_record_that_cannot_be_stored_is_quarantined_and_the_rest_chained(db, tenant,
                                                                            tmp_path):
    writer = journal_writer(db, tmp_path, max_lag=0.5)
    try:
        before = [read_event(tenant) for _ in range(5)]
        writer.record(tenant, before)
        inject(writer, tenant, [corrupt_row()])
        after = [read_event(tenant) for _ in range(6)]
        writer.record(tenant, after)
        writer.flush()  # bisects the shipment: 11 chained, 1 quarantined
        assert writer.lag() == 0.0 and writer.quarantined == 1
        time.sleep(0.8)
        writer.record(tenant, [read_event(tenant)])  # not refused: nothing waits
    finally:
        writer.close()
    events = chained_events(db, tenant)
    ids = [e["id"] for e in events]
    assert ids[:5] == [e["id"] for e in before]
    assert ids[6:12] == [e["id"] for e in after]
    held = events[5]  # the quarantined record's place in the chain
    assert held["subtype"][-1]["code"] == "$audit-quarantine" and held["outcome"] == "8"
    res = verify_chain(db.engine, tenant)
    assert res.ok and res.quarantined == 1, res.problems
    # kept durably, hash-protected, and listed for the operator
    with scope(db.engine, tenant) as conn:
        row = conn.execute(text("SELECT seq, sha256, record FROM audit_quarantine "
                                "WHERE tenant = :t"), {"t": tenant}).one()
    assert row.seq == 6
    from fkj.security.audit.quarantine import original_bytes
    assert b'"content":"{not json"' in original_bytes(row.record)
    assert row.sha256 in json.dumps(held)
    out = CliRunner().invoke(_cli(), ["quarantine", "list", "--tenant", tenant,
                                      "--database-url", db.url])
    assert out.exit_code == 0, out.output
    assert "1 record(s) in quarantine" in out.output and row.sha256[:16] in out.output
    out = CliRunner().invoke(_cli(), ["verify", "--tenant", tenant, "--database-url", db.url,
                                      "--no-checkpoints"])
    assert out.exit_code == 0, out.output
    assert "1 record(s) in quarantine" in out.output


def test_a_tampered_quarantine_record_fails_verify(db, tenant, tmp_path):
    writer = journal_writer(db, tmp_path)
    try:
        writer.record(tenant, [read_event(tenant)])
        inject(writer, tenant, [corrupt_row()])
        writer.flush()
    finally:
        writer.close()
    from tests.audit.helpers import tampering
    with tampering(db, tenant) as conn:
        conn.execute(text("UPDATE audit_quarantine SET record = :r WHERE tenant = :t"),
                      {"r": "e30=", "t": tenant})  # base64 of "{}"
    res = verify_chain(db.engine, tenant)
    assert not res.ok
    assert any("quarantine" in p for p in res.problems), res.problems


def test_an_orphaned_journal_with_a_bad_record_is_recovered(db, tenant, tmp_path):
    """A journal left by a process that died (the incident's server, restarted): the next
    process chains its good records and quarantines the bad one, then deletes it."""
    orphan = AuditJournal(tmp_path, database=database_identity(db.url))
    good = [read_event(tenant) for _ in range(4)]
    orphan.append(tenant, [audit_row(good[0]), nul_row(tenant), audit_row(good[1]),
                           corrupt_row(), audit_row(good[2]), audit_row(good[3])])
    orphan.close(chained=False)
    writer = journal_writer(db, tmp_path)
    try:
        assert writer.recover() == 6
    finally:
        writer.close()
    events = chained_events(db, tenant)
    assert [e["id"] for i, e in enumerate(events) if i in (0, 2, 4, 5)] == \
        [e["id"] for e in good]
    assert events[3]["subtype"][-1]["code"] == "$audit-quarantine"
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []
    res = verify_chain(db.engine, tenant)
    assert res.ok and res.quarantined == 1, res.problems


def test_a_database_that_refuses_everything_quarantines_nothing(db, tenant, tmp_path):
    """When the database itself refuses appends (here: the chain head moved behind the
    log, so every append collides), no record is blamed: they wait in the journal and
    accesses fail after max_lag, as before."""
    writer = journal_writer(db, tmp_path)
    try:
        writer.record(tenant, [read_event(tenant) for _ in range(3)])
        writer.flush()
        from tests.audit.helpers import tampering
        with tampering(db, tenant) as conn:
            rewind_head(db, conn, tenant, 1)
        writer.record(tenant, [read_event(tenant) for _ in range(4)])
        from fkj.security.audit import AuditUnavailable
        with pytest.raises(AuditUnavailable):
            writer.flush()
        assert writer.quarantined == 0 and len(writer._journaled) == 4
    finally:
        writer.close()


def strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


def _surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def rewind_head(db, conn, tenant: str, seq: int, hash_: str | None = None) -> None:
    """Move ``tenant``'s chain head back (past its append-only trigger), in ``conn``'s
    transaction (a :func:`tests.audit.helpers.tampering` block)."""
    sets = "last_seq = :s" + (", last_hash = :h" if hash_ else "")
    if db.backend == "postgresql":
        conn.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        conn.execute(text(f"UPDATE audit_head SET {sets} WHERE tenant = :t"),
                     {"s": seq, "h": hash_, "t": tenant})
        conn.execute(text("ALTER TABLE audit_head ENABLE TRIGGER USER"))
    else:
        sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                                "AND name = 'audit_head_forward'")).scalar_one()
        conn.execute(text("DROP TRIGGER audit_head_forward"))
        conn.execute(text(f"UPDATE audit_head SET {sets} WHERE tenant = :t"),
                     {"s": seq, "h": hash_, "t": tenant})
        conn.execute(text(sql))


def _cli():
    from fkj.cli.audit import audit_app
    return audit_app


def test_database_mode_refuses_only_the_access_whose_record_cannot_be_stored(db, tenant):
    """``FKJ_AUDIT_READS=database``: callers share a transaction; one record that cannot be
    stored fails that caller's access only, not the others' in its batch."""
    from fkj.security.audit import AuditUnavailable
    writer = AuditWriter(db.engine)
    try:
        with writer._leader:  # the committer waits: the six records go in one batch
            first = [writer.submit(tenant, [read_event(tenant)], lead=False) for _ in range(3)]
            broken = read_event(tenant)
            del broken["recorded"]  # no time: no row can be made of it
            bad = writer.submit(tenant, [broken], lead=False)
            last = [writer.submit(tenant, [read_event(tenant)], lead=False) for _ in range(2)]
        for fut in first + last:
            fut.result(30)
        with pytest.raises(AuditUnavailable):
            bad.result(30)
    finally:
        writer.close()
    assert len(chained_events(db, tenant)) == 5
    assert verify_chain(db.engine, tenant).ok
