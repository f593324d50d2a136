"""The hash-chained, append-only audit log: appends, rollback, verification and tampering.

Runs on SQLite and, with FKJ_TEST_DATABASE_URL, on PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from typer.testing import CliRunner

from fkj.cli.audit import audit_app
from fkj.security.audit import (
    GENESIS_HASH,
    append_in_transaction,
    audit_head,
    audit_log,
    record_hash,
    verify_chain,
)
from fkj.store.backend import now_us, scope
from fkj.store.schema import resource
from tests.audit.helpers import fill, read_event, tampering

runner = CliRunner()


def cli_verify(db, tenant):
    return runner.invoke(audit_app, ["verify", "--tenant", tenant, "--database-url", db.url])


def rows(db, tenant):
    with scope(db.engine, tenant) as conn:
        return conn.execute(select(audit_log).where(audit_log.c.tenant == tenant)
                            .order_by(audit_log.c.seq)).all()


def test_chain_builds_and_verifies(db, tenant):
    fill(db, tenant, 10)
    rs = rows(db, tenant)
    assert [r.seq for r in rs] == list(range(1, 11))
    prev = GENESIS_HASH
    for r in rs:
        assert r.prev_hash == prev
        assert r.hash == record_hash(prev, r.content, r.seq, tenant)
        assert json.loads(r.content)["resourceType"] == "AuditEvent"
        prev = r.hash
    with scope(db.engine, tenant) as conn:
        head = conn.execute(select(audit_head).where(audit_head.c.tenant == tenant)).one()
    assert (head.last_seq, head.last_hash) == (10, prev)
    result = verify_chain(db.engine, tenant)
    assert result.ok and result.checked == 10 and result.problems == []
    out = cli_verify(db, tenant)
    assert out.exit_code == 0, out.output
    assert "OK" in out.output and "10 audit records verified" in out.output


def test_empty_chain_verifies(db, tenant):
    r = verify_chain(db.engine, tenant)
    assert r.ok and r.checked == 0


def test_chains_are_per_tenant(db):
    a, b = db.new_tenant(), db.new_tenant()
    fill(db, a, 4)
    fill(db, b, 2)
    assert [r.seq for r in rows(db, a)] == [1, 2, 3, 4]
    assert [r.seq for r in rows(db, b)] == [1, 2]
    assert verify_chain(db.engine, a).ok and verify_chain(db.engine, b).ok


def test_rollback_leaves_neither_write_nor_audit(db, tenant):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), scope(db.engine, tenant, write=True) as conn:
        conn.execute(insert(resource).values(
            tenant=tenant, type="Observation", id="rolled-back", version=1,
            last_updated=now_us(), deleted=False, content="{}"))
        seqs = append_in_transaction(conn, tenant, [read_event(tenant)])
        assert seqs == [1]
        # inside the transaction both are visible
        assert conn.execute(select(audit_log.c.seq)
                            .where(audit_log.c.tenant == tenant)).all() == [(1,)]
        raise Boom
    with scope(db.engine, tenant) as conn:
        assert conn.execute(select(resource.c.id).where(
            resource.c.tenant == tenant, resource.c.id == "rolled-back")).first() is None
        assert conn.execute(select(audit_log.c.seq)
                            .where(audit_log.c.tenant == tenant)).first() is None
    # the chain continues gap-free after the rollback
    with scope(db.engine, tenant, write=True) as conn:
        conn.execute(insert(resource).values(
            tenant=tenant, type="Observation", id="kept", version=1,
            last_updated=now_us(), deleted=False, content="{}"))
        assert append_in_transaction(conn, tenant, [read_event(tenant)]) == [1]
    assert verify_chain(db.engine, tenant).ok


# ------------------------------------------------------------------ append-only protection

def test_app_cannot_update_or_delete_audit(db, tenant):
    fill(db, tenant, 2)
    for sql in ("UPDATE audit_log SET agent = 'x' WHERE tenant = :t",
                "DELETE FROM audit_log WHERE tenant = :t",
                "DELETE FROM audit_patient WHERE tenant = :t",
                "UPDATE audit_head SET last_seq = 0 WHERE tenant = :t",
                "DELETE FROM audit_head WHERE tenant = :t"):
        with pytest.raises(Exception) as exc, scope(db.engine, tenant, write=True) as conn:
            conn.execute(text(sql), {"t": tenant})
        msg = str(exc.value).lower()
        if db.backend == "postgresql" and "audit_head" not in sql:
            assert "permission denied" in msg  # the app role has no such privilege
        else:
            assert "append-only" in msg or "forward" in msg or "permission denied" in msg
    if db.backend == "postgresql":
        with pytest.raises(Exception, match="permission denied"), \
                scope(db.engine, tenant, write=True) as conn:
            conn.execute(text("TRUNCATE audit_log"))
    assert verify_chain(db.engine, tenant).ok


def test_even_the_owner_is_stopped_by_the_trigger(db, tenant):
    fill(db, tenant, 2)
    for sql in ("UPDATE audit_log SET content = '{}' WHERE tenant = :t AND seq = 1",
                "DELETE FROM audit_log WHERE tenant = :t AND seq = 2"):
        with pytest.raises(Exception, match="append-only"), \
                scope(db.owner_engine, tenant, write=True) as conn:
            conn.execute(text(sql), {"t": tenant})
    assert verify_chain(db.engine, tenant).ok and len(rows(db, tenant)) == 2


# ------------------------------------------------------------------ tampering is detected

def test_changed_record_is_detected(db, tenant):
    fill(db, tenant, 5)
    original = rows(db, tenant)[2]
    forged = json.loads(original.content)
    forged["agent"][0]["who"]["identifier"]["value"] = "1234567"
    with tampering(db, tenant) as conn:
        conn.execute(text("UPDATE audit_log SET content = :c WHERE tenant = :t AND seq = 3"),
                     {"c": json.dumps(forged, sort_keys=True, separators=(",", ":")),
                      "t": tenant})
    r = verify_chain(db.engine, tenant)
    assert not r.ok and r.checked == 5
    assert any("seq 3: hash mismatch" in p for p in r.problems), r.problems
    out = cli_verify(db, tenant)
    assert out.exit_code == 1
    assert "TAMPERED" in out.output and "seq 3: hash mismatch" in out.output


def test_changed_record_with_recomputed_hash_is_detected(db, tenant):
    """An attacker who recomputes the edited record's hash breaks the next link instead."""
    fill(db, tenant, 4)
    r2 = rows(db, tenant)[1]
    content = r2.content.replace('"outcome":"0"', '"outcome":"4"')
    with tampering(db, tenant) as conn:
        conn.execute(text("UPDATE audit_log SET content = :c, outcome = '4', hash = :h "
                          "WHERE tenant = :t AND seq = 2"),
                     {"c": content, "h": record_hash(r2.prev_hash, content, 2, tenant),
                      "t": tenant})
    r = verify_chain(db.engine, tenant)
    assert not r.ok
    assert any(p.startswith("seq 3: prev_hash") for p in r.problems), r.problems
    assert cli_verify(db, tenant).exit_code == 1


def test_changed_search_column_is_detected(db, tenant):
    """Hiding a record from `audit search` by editing its agent column is noticed too."""
    fill(db, tenant, 3)
    with tampering(db, tenant) as conn:
        conn.execute(text("UPDATE audit_log SET agent = 'someone-else' "
                          "WHERE tenant = :t AND seq = 2"), {"t": tenant})
        conn.execute(text("DELETE FROM audit_patient WHERE tenant = :t AND seq = 3"),
                     {"t": tenant})
    r = verify_chain(db.engine, tenant)
    assert not r.ok
    assert any("seq 2: column agent" in p for p in r.problems), r.problems
    assert any("seq 3: patient index rows" in p for p in r.problems), r.problems


def test_deleted_record_is_detected(db, tenant):
    fill(db, tenant, 6)
    with tampering(db, tenant) as conn:
        conn.execute(text("DELETE FROM audit_patient WHERE tenant = :t AND seq = 4"),
                     {"t": tenant})
        conn.execute(text("DELETE FROM audit_log WHERE tenant = :t AND seq = 4"), {"t": tenant})
    r = verify_chain(db.engine, tenant)
    assert not r.ok and r.checked == 5
    assert any("seq 5: gap, records 4..4 are missing" in p for p in r.problems), r.problems
    assert any("seq 5: prev_hash" in p for p in r.problems), r.problems
    out = cli_verify(db, tenant)
    assert out.exit_code == 1 and "missing" in out.output


def test_deleted_last_record_is_detected(db, tenant):
    fill(db, tenant, 3)
    with tampering(db, tenant) as conn:
        conn.execute(text("DELETE FROM audit_patient WHERE tenant = :t AND seq = 3"),
                     {"t": tenant})
        conn.execute(text("DELETE FROM audit_log WHERE tenant = :t AND seq = 3"), {"t": tenant})
    r = verify_chain(db.engine, tenant)
    assert not r.ok
    assert any("chain head says last seq 3 but the last record is 2" in p
               for p in r.problems), r.problems


def test_swapped_records_are_detected(db, tenant):
    fill(db, tenant, 5)
    with tampering(db, tenant) as conn:
        for old, new in ((2, -1), (3, 2), (-1, 3)):
            conn.execute(text("UPDATE audit_log SET seq = :n WHERE tenant = :t AND seq = :o"),
                         {"n": new, "o": old, "t": tenant})
    r = verify_chain(db.engine, tenant)
    assert not r.ok and r.checked == 5
    for seq in (2, 3):
        assert any(f"seq {seq}: hash mismatch" in p for p in r.problems), r.problems
        assert any(f"seq {seq}: prev_hash" in p for p in r.problems), r.problems
    out = cli_verify(db, tenant)
    assert out.exit_code == 1 and "seq 2: hash mismatch" in out.output


def test_other_tenants_unaffected_by_tampering(db):
    a, b = db.new_tenant(), db.new_tenant()
    fill(db, a, 3)
    fill(db, b, 3)
    with tampering(db, a) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE tenant = :t AND seq = 1"), {"t": a})
    assert not verify_chain(db.engine, a).ok
    assert verify_chain(db.engine, b).ok




@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20))
def test_canonical_form_is_the_one_older_records_were_written_in(value):
    """canonical() (orjson) writes exactly what the stdlib form wrote, so chains written
    before the switch still verify byte for byte."""
    from fkj.security.audit.events import canonical, canonical_stdlib
    try:
        new = canonical({"v": value})
    except TypeError:  # lone surrogates: orjson refuses them (the platform never writes one)
        return
    assert new == canonical_stdlib({"v": value})
