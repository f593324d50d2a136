"""AuditWriter: group commit for read audits; the read fails if its audit cannot be written."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import func, select

from fkj.security.audit import (
    AuditUnavailable,
    AuditWriter,
    append_in_transaction,
    audit_log,
    verify_chain,
)
from fkj.store.backend import scope
from fkj.store.engine import make_engine
from tests.audit.helpers import read_event


def count(db, tenant):
    with scope(db.engine, tenant) as conn:
        return conn.execute(select(func.count()).select_from(audit_log)
                            .where(audit_log.c.tenant == tenant)).scalar_one()


def seqs(db, tenant):
    with scope(db.engine, tenant) as conn:
        return [r[0] for r in conn.execute(select(audit_log.c.seq)
                                           .where(audit_log.c.tenant == tenant)
                                           .order_by(audit_log.c.seq))]


def test_record_blocks_until_committed(db, tenant):
    writer = AuditWriter(db.engine)
    try:
        writer.record(tenant, [read_event(tenant)])
        assert count(db, tenant) == 1  # visible to another connection at once
    finally:
        writer.close()


def test_eight_concurrent_readers_gap_free_chain(db, tenant):
    """8 threads × 200 records: every record committed, seq 1..1600, the chain verifies,
    and the records were grouped into far fewer transactions than records."""
    writer = AuditWriter(db.engine)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def reader(i: int) -> None:
        try:
            start.wait()
            for n in range(200):
                writer.record(tenant, [read_event(tenant, patient=f"Patient/t{i}")])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    writer.close()
    assert not errors, errors
    assert seqs(db, tenant) == list(range(1, 1601))
    result = verify_chain(db.engine, tenant)
    assert result.ok and result.checked == 1600, result.problems
    assert writer.records == 1600
    assert writer.commits < 1600, "records from concurrent readers share transactions"


def test_writer_and_write_transactions_share_one_chain(db):
    """Reads (AuditWriter) and writes (append_in_transaction) interleave on one tenant's
    chain, across two tenants, and every chain stays gap-free."""
    a, b = db.new_tenant(), db.new_tenant()
    writer = AuditWriter(db.engine)
    errors: list[BaseException] = []

    def reads(tenant):
        try:
            for _ in range(60):
                writer.record(tenant, [read_event(tenant)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def writes(tenant):
        try:
            for _ in range(30):
                with scope(db.engine, tenant, write=True) as conn:
                    append_in_transaction(conn, tenant, [read_event(tenant), read_event(tenant)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=f, args=(t,))
               for t in (a, b) for f in (reads, reads, writes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    writer.close()
    assert not errors, errors
    for t in (a, b):
        assert seqs(db, t) == list(range(1, 181))
        assert verify_chain(db.engine, t).ok


def test_record_async(db, tenant):
    writer = AuditWriter(db.engine)

    async def main():
        await asyncio.gather(*(writer.record_async(tenant, [read_event(tenant)])
                               for _ in range(10)))

    try:
        asyncio.run(main())
    finally:
        writer.close()
    assert count(db, tenant) == 10 and verify_chain(db.engine, tenant).ok


def test_failed_audit_fails_the_read(tmp_path):
    """If the audit cannot be committed, record() raises (and the caller must not answer)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'no-schema.sqlite'}")  # no audit tables
    writer = AuditWriter(engine)
    try:
        with pytest.raises(AuditUnavailable) as exc:
            writer.record("4601", [read_event("4601")])
        assert exc.value.status == 503
        # the writer keeps working for later records (here: still failing, not hanging)
        with pytest.raises(AuditUnavailable):
            writer.record("4601", [read_event("4601")])
    finally:
        writer.close()
        engine.dispose()


def test_disabled_writer_writes_nothing(db, tenant):
    writer = AuditWriter(db.engine, enabled=False)
    writer.record(tenant, [read_event(tenant)])
    assert count(db, tenant) == 0
    writer.enabled = True
    writer.record(tenant, [read_event(tenant)])
    writer.close()
    assert count(db, tenant) == 1


def test_closed_writer_refuses(db, tenant):
    writer = AuditWriter(db.engine)
    writer.close()
    with pytest.raises(AuditUnavailable):
        writer.record(tenant, [read_event(tenant)])
