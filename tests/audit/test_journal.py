"""The audit journal: a read's record is written before the answer and chained exactly once,
also when its process dies before chaining it; when the journal cannot be written, or the
chain has refused records for too long, the access fails.

Runs on SQLite and, with FKJ_TEST_DATABASE_URL, on PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import func, select

from fkj.security.audit import AuditUnavailable, AuditWriter, audit_log, verify_chain
from fkj.security.audit.chain import audit_row
from fkj.security.audit.journal import SUFFIX, AuditJournal, database_identity, read_segment
from fkj.security.audit.tables import audit_journal
from fkj.store.backend import scope
from tests.audit.helpers import read_event
from tests.locks import chain_head_held


def chained(db, tenant) -> list[str]:
    """The ids of the tenant's chained AuditEvents, in chain order."""
    import json
    with scope(db.engine, tenant) as conn:
        return [json.loads(c)["id"] for c, in conn.execute(
            select(audit_log.c.content).where(audit_log.c.tenant == tenant)
            .order_by(audit_log.c.seq))]


def watermarks(db, tenant) -> dict[str, int]:
    with scope(db.engine, tenant) as conn:
        return dict(conn.execute(select(audit_journal.c.journal, audit_journal.c.shipped)
                                 .where(audit_journal.c.tenant == tenant)).all())


def journal_writer(db, directory, **kw) -> AuditWriter:
    kw.setdefault("ship_interval", 3600.0)  # nothing is chained unless the test asks
    journal = AuditJournal(directory, database=database_identity(db.url),
                           sync=kw.pop("sync", "normal"))
    return AuditWriter(db.engine, journal=journal, **kw)


def crash(writer: AuditWriter) -> None:
    """What a killed process leaves: its journal file, unlocked, and nothing chained."""
    writer._closed = True  # the shipper thread stops without shipping
    with writer._wake:
        writer._wake.notify_all()
    writer.journal.close(chained=False)


def test_a_record_is_in_the_journal_before_it_is_chained(db, tenant, tmp_path):
    writer = journal_writer(db, tmp_path)
    try:
        events = [read_event(tenant) for _ in range(3)]
        writer.record(tenant, events)
        assert chained(db, tenant) == []  # written, not yet chained
        files = list(tmp_path.glob(f"*{SUFFIX}"))
        assert len(files) == 1
        fd = os.open(files[0], os.O_RDONLY)
        try:
            header, entries = read_segment(fd)
        finally:
            os.close(fd)
        assert header["database"] == writer.journal.database == database_identity(db.url)
        assert header["journal"] == writer.journal.journal_id
        assert [e.seq for e in entries] == [1, 2, 3] and {e.tenant for e in entries} == {tenant}
        assert [e.row["content"] for e in entries] == [audit_row(e)["content"] for e in events]
        writer.flush()
        assert chained(db, tenant) == [e["id"] for e in events]
        assert watermarks(db, tenant) == {writer.journal.journal_id: 3}
        assert verify_chain(db.engine, tenant).ok
    finally:
        writer.close()
    # closed with everything chained: the journal and its watermarks are gone
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []
    assert watermarks(db, tenant) == {}


def test_the_shipper_chains_records_within_its_interval(db, tenant, tmp_path):
    writer = journal_writer(db, tmp_path, ship_interval=0.02)
    try:
        events = [read_event(tenant) for _ in range(5)]
        for e in events:
            writer.record(tenant, [e])
        deadline = time.monotonic() + 5
        while len(chained(db, tenant)) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert chained(db, tenant) == [e["id"] for e in events]
        assert writer.lag() == 0.0
    finally:
        writer.close()


def test_a_crashed_processs_journal_is_chained_once_by_the_next(db, tenant, tmp_path):
    first = journal_writer(db, tmp_path)
    early = [read_event(tenant) for _ in range(2)]
    first.record(tenant, early)
    first.flush()  # chained (watermark 2) …
    late = [read_event(tenant) for _ in range(3)]
    first.record(tenant, late)  # … these only written
    crash(first)
    assert chained(db, tenant) == [e["id"] for e in early]
    second = journal_writer(db, tmp_path)
    try:
        assert second.recover() == 3  # from the watermark on: the first two are not repeated
        assert second.recover() == 0
    finally:
        second.close()
    assert chained(db, tenant) == [e["id"] for e in early + late]
    assert verify_chain(db.engine, tenant).ok
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []  # recovered journals are deleted
    assert watermarks(db, tenant) == {}


def test_a_live_processs_journal_is_not_taken_over(db, tenant, tmp_path):
    live = journal_writer(db, tmp_path)
    other = journal_writer(db, tmp_path)
    try:
        live.record(tenant, [read_event(tenant)])
        assert other.recover() == 0  # its lock is held: not an orphan
        assert chained(db, tenant) == []
        assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 1
    finally:
        live.close()
        other.close()
    assert len(chained(db, tenant)) == 1


def test_a_journal_of_another_database_is_left_alone(db, tenant, tmp_path):
    stranger = AuditJournal(tmp_path, database="postgresql://elsewhere/other")
    stranger.append(tenant, [audit_row(read_event(tenant))])
    stranger.close(chained=False)
    writer = journal_writer(db, tmp_path)
    try:
        assert writer.recover() == 0
    finally:
        writer.close()
    assert chained(db, tenant) == [] and len(list(tmp_path.glob(f"*{SUFFIX}"))) == 1


def test_a_torn_line_is_skipped_and_the_rest_recovered(db, tenant, tmp_path):
    writer = journal_writer(db, tmp_path)
    events = [read_event(tenant) for _ in range(2)]
    writer.record(tenant, events[:1])
    # a write that failed midway (ENOSPC after part of the line): its access was refused
    os.write(writer.journal._fd, b'{"recorded": 17, "con')
    writer.journal._torn = True  # as append() marks it after the failure
    writer.record(tenant, events[1:])
    crash(writer)
    second = journal_writer(db, tmp_path)
    try:
        assert second.recover() == 2
    finally:
        second.close()
    assert chained(db, tenant) == [e["id"] for e in events]


def test_an_unwritable_journal_fails_the_access(db, tenant, tmp_path):
    writer = journal_writer(db, tmp_path)
    try:
        writer.record(tenant, [read_event(tenant)])  # opens the segment
        keep = os.dup(writer.journal._fd)  # keeps the segment and its lock
        full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC (disk full)
        os.dup2(full, writer.journal._fd)
        os.close(full)
        with pytest.raises(AuditUnavailable) as exc:
            writer.record(tenant, [read_event(tenant)])
        assert exc.value.status == 503 and "journal" in str(exc.value)
    finally:
        writer.close()
        os.close(keep)


def test_accesses_fail_once_the_chain_has_refused_records_too_long(db, tenant, tmp_path):
    """The database refuses the records (its chain head is locked by another transaction):
    they wait in the journal; once the oldest is older than max_lag, new accesses fail;
    when the database takes them again, every record is chained once and accesses work."""
    writer = journal_writer(db, tmp_path, ship_interval=0.02, max_lag=0.5)
    try:
        with chain_head_held(db.engine, tenant) as let_go:
            first = read_event(tenant)
            writer.record(tenant, [first])  # written; the shipper waits for the lock
            time.sleep(0.8)
            with pytest.raises(AuditUnavailable) as exc:
                writer.record(tenant, [read_event(tenant)])
            assert "has not taken records" in str(exc.value)
            let_go()
            deadline = time.monotonic() + 30
            while writer.lag() > 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            second = read_event(tenant)
            writer.record(tenant, [second])
            writer.flush()
            # the refused access left no record; the others are chained once
            assert chained(db, tenant) == [first["id"], second["id"]]
    finally:
        writer.close()


def test_full_sync_writes_and_chains(db, tenant, tmp_path):
    writer = journal_writer(db, tmp_path, sync="full", ship_interval=0.01)
    errors = []

    def reader():
        try:
            for _ in range(25):
                writer.record(tenant, [read_event(tenant)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    writer.flush()
    writer.close()
    assert not errors
    with scope(db.engine, tenant) as conn:
        assert conn.execute(select(func.count()).select_from(audit_log).where(
            audit_log.c.tenant == tenant)).scalar_one() == 100
    assert verify_chain(db.engine, tenant).ok


def test_fkj_audit_recover_chains_orphaned_journals(db, tenant, tmp_path):
    from typer.testing import CliRunner

    from fkj.cli.audit import audit_app
    from fkj.security.audit.journal import default_directory

    directory = default_directory(db.url, tmp_path)
    orphan = AuditJournal(directory, database=database_identity(db.url))
    events = [read_event(tenant) for _ in range(4)]
    orphan.append(tenant, [audit_row(e) for e in events])
    orphan.close(chained=False)  # its process ended before chaining them
    out = CliRunner().invoke(audit_app, ["recover", "--database-url", db.url,
                                         "--journal-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "4 audit record(s) chained" in out.output
    assert chained(db, tenant) == [e["id"] for e in events]
    assert list(directory.glob(f"*{SUFFIX}")) == []


def test_postgresql_compresses_audit_records_with_lz4(db):
    if db.backend != "postgresql":
        pytest.skip("a PostgreSQL storage setting")
    from sqlalchemy import text
    with db.owner_engine.connect() as conn:
        method = conn.execute(text(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'audit_log'::regclass "
            "AND attname = 'content'")).scalar_one()
        has_lz4 = conn.execute(text(
            "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
            "AND 'lz4' = ANY(enumvals)")).scalar_one()
    assert method == ("l" if has_lz4 else "")
