"""The audit chain anchored outside the database (issue 30, item 9).

Someone with write access to the database can rewrite a record and compute every later hash
again, or delete the last records and move the chain head back: the chain is consistent
again and ``verify_chain`` finds nothing (each attack test first shows that). Signed
checkpoints of the chain heads, appended to files the database cannot reach, make both
visible; so do edits of the checkpoint files, forged signatures and a deleted file.

Runs on SQLite and, with FKJ_TEST_DATABASE_URL, on PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import select, text
from typer.testing import CliRunner

from fkj.cli.audit import audit_app
from fkj.security.audit import AuditWriter, audit_log, record_hash, verify_chain
from fkj.security.audit.checkpoints import (
    INDEX,
    Checkpoint,
    Checkpointer,
    Store,
    default_directory,
    verify_checkpoints,
)
from fkj.security.audit.events import index_fields
from fkj.security.audit.journal import AuditJournal, database_identity
from fkj.store.backend import scope
from tests.audit.helpers import fill, read_event, tampering
from tests.audit.test_quarantine import rewind_head

runner = CliRunner()


@pytest.fixture
def store(db, tmp_path):
    """The checkpoint files, where ``--checkpoint-dir tmp_path`` puts them."""
    return Store(default_directory(db.url, tmp_path))


def checkpointer(db, store) -> Checkpointer:
    return Checkpointer(db.engine, store, database_identity(db.url), interval=3600)


def verify(db, tenant, store):
    return verify_checkpoints(db.engine, tenant, store, database_identity(db.url))


def cli_verify(db, tenant, store):
    args = ["verify", "--tenant", tenant, "--database-url", db.url,
            "--checkpoint-dir", str(store.directory.parent)]
    if store.witness is not None:
        args += ["--witness-dir", str(store.witness.parent)]
    return runner.invoke(audit_app, args)


def anchored(db, tenant, store, n: int = 10) -> None:
    fill(db, tenant, n)
    assert checkpointer(db, store).run(tenants=[tenant]) == 1


def rehash_forward(db, tenant: str, seq: int) -> None:
    """The attack: change record ``seq`` (who looked: another HPR-nummer), then compute the
    hash of it and of every later record again, and move the head's hash along — with the
    search columns made to match, so the chain is consistent."""
    with tampering(db, tenant) as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.tenant == tenant,
                                                    audit_log.c.seq >= seq - 1)
                            .order_by(audit_log.c.seq)).all()
        prev = rows[0].hash if rows[0].seq == seq - 1 else "0" * 64
        for r in rows:
            if r.seq < seq:
                continue
            content = r.content
            if r.seq == seq:
                event = json.loads(content)
                event["agent"][0]["who"]["identifier"]["value"] = "1111111"
                content = orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()
            h = record_hash(prev, content, r.seq, tenant)
            conn.execute(text("UPDATE audit_log SET content = :c, agent = :a, prev_hash = :p, "
                              "hash = :h WHERE tenant = :t AND seq = :s"),
                         {"c": content, "a": index_fields(json.loads(content))["agent"],
                          "p": prev, "h": h, "t": tenant, "s": r.seq})
            prev = h
        conn.execute(text("UPDATE audit_head SET last_hash = :h WHERE tenant = :t"),
                     {"h": prev, "t": tenant})


def cut_tail(db, tenant: str, keep: int) -> None:
    """The attack: delete every record after ``keep`` and move the chain head back to it."""
    with tampering(db, tenant) as conn:
        last_hash = conn.execute(text("SELECT hash FROM audit_log WHERE tenant = :t AND "
                                      "seq = :s"), {"t": tenant, "s": keep}).scalar_one()
        conn.execute(text("DELETE FROM audit_patient WHERE tenant = :t AND seq > :s"),
                     {"t": tenant, "s": keep})
        conn.execute(text("DELETE FROM audit_log WHERE tenant = :t AND seq > :s"),
                     {"t": tenant, "s": keep})
        rewind_head(db, conn, tenant, keep, last_hash)


def test_an_anchored_chain_verifies(db, tenant, store):
    anchored(db, tenant, store)
    r = verify(db, tenant, store)
    assert r.ok, r.problems
    assert r.anchors.last[0] == 10 and r.anchors.lines == 1 and r.anchors.notes == []
    out = cli_verify(db, tenant, store)
    assert out.exit_code == 0, out.output
    assert "anchored up to seq 10" in out.output


def test_rewrite_and_rehash_forward_is_detected(db, tenant, store):
    anchored(db, tenant, store)
    rehash_forward(db, tenant, 4)
    assert verify_chain(db.engine, tenant).ok  # the blind spot: consistent on its own
    r = verify(db, tenant, store)
    assert not r.ok
    assert any("seq 10: hash differs from the checkpoint" in p for p in r.problems), r.problems
    out = cli_verify(db, tenant, store)
    assert out.exit_code == 1 and "TAMPERED" in out.output


def test_tail_truncation_and_head_rewind_is_detected(db, tenant, store):
    anchored(db, tenant, store)
    cut_tail(db, tenant, 7)
    assert verify_chain(db.engine, tenant).ok  # the blind spot
    r = verify(db, tenant, store)
    assert not r.ok
    assert any("ends at seq 7 but a checkpoint names seq 10" in p for p in r.problems), \
        r.problems
    assert cli_verify(db, tenant, store).exit_code == 1


def test_a_cut_tail_written_over_is_detected(db, tenant, store):
    """The tail cut and new records appended in its place: the chain reaches the
    checkpointed seq again, with other hashes; a checkpoint of the new head is written too
    (the server keeps checkpointing): both show."""
    anchored(db, tenant, store)
    cut_tail(db, tenant, 7)
    fill(db, tenant, 5)
    assert verify_chain(db.engine, tenant).ok
    assert checkpointer(db, store).run(tenants=[tenant]) == 1
    r = verify(db, tenant, store)
    assert not r.ok
    assert any("seq 10: hash differs from the checkpoint" in p for p in r.problems), r.problems


def test_records_after_the_last_checkpoint_are_noted_not_failed(db, tenant, store):
    """What checkpoints cannot see (documented): records after the last checkpoint."""
    anchored(db, tenant, store)
    fill(db, tenant, 3)
    r = verify(db, tenant, store)
    assert r.ok and r.anchors.notes == [
        "3 record(s) after the last checkpoint (seq 10) are not anchored yet"]
    cut_tail(db, tenant, 11)  # within the interval: not detectable
    assert verify(db, tenant, store).ok


def _line(store, tenant, n=0) -> str:
    return store.path(store.directory, tenant).read_text().splitlines()[n]


def _write_lines(store, tenant, lines) -> None:
    store.path(store.directory, tenant).write_text("".join(x + "\n" for x in lines))


def test_an_edited_checkpoint_is_detected(db, tenant, store):
    anchored(db, tenant, store)
    head, payload, sig = _line(store, tenant).split(".")
    obj = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    obj["seq"] = 5  # an attacker who cut the tail to 5 would want this
    forged = base64.urlsafe_b64encode(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)) \
        .decode().rstrip("=")
    _write_lines(store, tenant, [f"{head}.{forged}.{sig}"])
    r = verify(db, tenant, store)
    assert not r.ok
    assert any("signature does not verify" in p for p in r.problems), r.problems


def test_a_checkpoint_signed_with_another_key_is_detected(db, tenant, store):
    anchored(db, tenant, store)
    for kid in (None, "platform"):
        key = ECKey.generate_key("P-256", auto_kid=True)
        if kid == "platform":  # claims the platform key's kid
            kid = json.loads(base64.urlsafe_b64decode(
                _line(store, tenant).split(".")[0] + "==="))["kid"]
        cp = Checkpoint(tenant, 5, "0" * 64, 1, database_identity(db.url))
        token = jws.serialize_compact({"alg": "ES256", "kid": kid or key.kid,
                                       "typ": "fkj-audit-checkpoint"}, cp.payload(), key)
        with open(store.path(store.directory, tenant), "a") as f:
            f.write(token + "\n")
    r = verify(db, tenant, store)
    assert not r.ok
    assert any("a key the platform does not have" in p for p in r.problems), r.problems
    assert any("signature does not verify" in p for p in r.problems), r.problems


def test_a_checkpoint_of_another_tenant_is_not_taken(db, tenant, store):
    other = db.new_tenant()
    anchored(db, tenant, store)
    fill(db, other, 10)
    checkpointer(db, store).run(tenants=[other])
    # the other tenant's (genuinely signed) checkpoint copied into this tenant's file
    with open(store.path(store.directory, tenant), "a") as f:
        f.write(_line(store, other) + "\n")
    r = verify(db, tenant, store)
    assert not r.ok and any("copied from elsewhere" in p for p in r.problems), r.problems


def test_a_deleted_checkpoint_file_is_detected(db, tenant, store):
    anchored(db, tenant, store)
    store.path(store.directory, tenant).unlink()
    r = verify(db, tenant, store)
    assert not r.ok
    assert any("is missing, but the index lists" in p for p in r.problems), r.problems
    out = cli_verify(db, tenant, store)
    assert out.exit_code == 1 and "is missing" in out.output


def test_a_deleted_index_is_detected(db, tenant, store):
    anchored(db, tenant, store)
    (store.directory / INDEX).unlink()
    r = verify(db, tenant, store)
    assert not r.ok and any("not in the index" in p for p in r.problems), r.problems


def test_the_witness_shows_a_location_removed_whole(db, tenant, tmp_path):
    import shutil
    store = Store(default_directory(db.url, tmp_path / "a"),
                  default_directory(db.url, tmp_path / "b"))
    anchored(db, tenant, store)
    assert store.path(store.witness, tenant).read_text() == \
        store.path(store.directory, tenant).read_text()
    assert verify(db, tenant, store).ok
    shutil.rmtree(store.directory)  # the first location lost, its index with it
    r = verify(db, tenant, store)
    assert not r.ok
    assert any("missing but the other location has one" in p for p in r.problems), r.problems


def test_checkpoints_are_written_only_when_a_head_moved(db, tenant, store):
    fill(db, tenant, 3)
    cp = checkpointer(db, store)
    assert cp.run(tenants=[tenant]) == 1
    assert cp.run(tenants=[tenant]) == 0  # nothing new
    # another process (another checkpointer on the same files) sees the last line too
    assert checkpointer(db, store).run(tenants=[tenant]) == 0
    fill(db, tenant, 1)
    assert cp.run(tenants=[tenant]) == 1
    lines = store.path(store.directory, tenant).read_text().splitlines()
    seqs = [json.loads(base64.urlsafe_b64decode(x.split(".")[1] + "==="))["seq"] for x in lines]
    assert seqs == [3, 4]
    assert verify(db, tenant, store).ok


def test_a_stopping_writer_writes_a_last_checkpoint(db, tenant, store, tmp_path):
    journal = AuditJournal(tmp_path / "j", database=database_identity(db.url))
    writer = AuditWriter(db.engine, journal=journal, ship_interval=3600.0,
                         checkpointer=checkpointer(db, store))
    writer.record(tenant, [read_event(tenant) for _ in range(4)])
    writer.close()  # chains the four and anchors them
    r = verify(db, tenant, store)
    assert r.ok and r.anchors.last[0] == 4, (r.problems, r.anchors.notes)


def test_fkj_audit_checkpoint_and_verify_use_the_same_place(db, tenant, tmp_path, monkeypatch):
    monkeypatch.setenv("FKJ_AUDIT_CHECKPOINT_DIR", str(tmp_path / "anchor"))
    fill(db, tenant, 2)
    out = runner.invoke(audit_app, ["checkpoint", "--tenant", tenant, "--database-url", db.url])
    assert out.exit_code == 0 and "1 checkpoint(s) written" in out.output, out.output
    out = runner.invoke(audit_app, ["verify", "--tenant", tenant, "--database-url", db.url])
    assert out.exit_code == 0 and "anchored up to seq 2" in out.output, out.output
    with scope(db.engine, tenant) as conn:
        assert conn.execute(select(audit_log.c.seq).where(audit_log.c.tenant == tenant)
                            .order_by(audit_log.c.seq.desc())).first()[0] == 2
