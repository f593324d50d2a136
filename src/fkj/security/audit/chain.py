"""Appending to and verifying the per-tenant hash chain of the audit log.

``append_in_transaction(conn, tenant, events)`` runs inside the caller's transaction (opened
with :func:`fkj.store.backend.scope` for ``tenant``, ``write=True``): it locks the tenant's
chain head (``audit_head``; on SQLite the write transaction already holds the database write
lock), numbers the events gap-free after it, chains their hashes and inserts them. If the
caller's transaction rolls back, so does the audit: a write and its audit commit together.

``append_autonomous_sqlite`` / ``append_autonomous_pg`` append audit rows (:func:`audit_row`)
in a transaction of their own — the read records shipped from the audit journal — and move
the journal's watermark (``audit_journal``) in that same transaction, so that a journal's
record is chained exactly once.

``verify_chain(engine, tenant)`` walks the chain and reports every inconsistency: a changed
record (hash mismatch, or search columns that no longer match the content), a deleted record
(seq gap, prev_hash mismatch, head beyond the last record), reordered records (prev_hash and
hash mismatches, since the hash covers seq), and index rows of ``audit_patient`` that were
removed or added.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, select, text

from fkj.security.audit.events import canonical, canonical_stdlib, index_fields
from fkj.security.audit.storable import canonical_storable
from fkj.security.audit.tables import (
    GENESIS_HASH,
    audit_head,
    audit_journal,
    audit_log,
    audit_patient,
)
from fkj.store import bulk
from fkj.store.backend import scope

SEP = "\x1e"  # never appears raw in canonical JSON (control characters are escaped)
LOG_COLUMNS = ("tenant", "seq", "recorded", "patients", "agent", "action", "subtype",
               "purpose", "outcome", "content", "prev_hash", "hash")
PATIENT_COLUMNS = ("tenant", "patient", "seq")
#: at most this many problems are listed (their total is always counted)
MAX_PROBLEMS = 200


def record_hash(prev_hash: str, content: str, seq: int, tenant: str) -> str:
    """sha256(prev_hash ␞ content ␞ seq ␞ tenant), hex."""
    data = SEP.join((prev_hash, content, str(seq), tenant)).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def _lock_head(conn: Connection, tenant: str) -> tuple[int, str]:
    pg = conn.dialect.name == "postgresql"
    sql = "SELECT last_seq, last_hash FROM audit_head WHERE tenant = :t"
    row = conn.execute(text(sql + (" FOR UPDATE" if pg else "")), {"t": tenant}).first()
    if row is None:
        conn.execute(text(
            "INSERT INTO audit_head (tenant, last_seq, last_hash) VALUES (:t, 0, :g) "
            "ON CONFLICT (tenant) DO NOTHING"), {"t": tenant, "g": GENESIS_HASH})
        row = conn.execute(text(sql + (" FOR UPDATE" if pg else "")), {"t": tenant}).one()
    return int(row[0]), row[1]


def audit_row(event: dict) -> dict:
    """The stored form of an AuditEvent: its canonical JSON (what the chain hashes) and the
    search columns derived from it — storable on every backend (code points none can store
    are escaped, :mod:`fkj.security.audit.storable`)."""
    event, content = canonical_storable(event)
    f = index_fields(event)
    return {"recorded": f["recorded"], "patients": f["patients"], "agent": f["agent"],
            "action": f["action"], "subtype": f["subtype"], "purpose": f["purpose"],
            "outcome": f["outcome"], "content": content,
            "patient_list": f["patient_list"]}


def _chain_rows(tenant: str, last_seq: int, prev: str, rows: Sequence[dict]):
    """The audit_log and audit_patient rows of ``rows`` (:func:`audit_row`) chained after
    (last_seq, prev)."""
    log_rows, patient_rows, seqs = [], [], []
    for n, r in enumerate(rows, start=1):
        seq = last_seq + n
        content = r["content"]
        h = record_hash(prev, content, seq, tenant)
        log_rows.append((tenant, seq, r["recorded"], r["patients"], r["agent"], r["action"],
                         r["subtype"], r["purpose"], r["outcome"], content, prev, h))
        patient_rows.extend((tenant, p, seq) for p in dict.fromkeys(r["patient_list"]))
        seqs.append(seq)
        prev = h
    return log_rows, patient_rows, seqs, prev


def append_autonomous_sqlite(engine: Engine, tenant: str, rows: Sequence[dict],
                             watermark: tuple[str, int] | None = None, *,
                             then: Callable | None = None, dry_run: bool = False) -> None:
    """Append audit ``rows`` in a transaction of their own on a pooled DB-API connection
    (SQLite; no SQLAlchemy statement handling on the read path). ``BEGIN IMMEDIATE`` takes
    the database's write lock, which serialises appends like the head row lock does on
    PostgreSQL. ``watermark`` = (journal id, position): the journal's records of ``tenant``
    up to that position are chained, recorded in the same transaction. ``then(execute,
    seqs)`` runs in the transaction after the append (``execute(sql, params)`` with ``?``
    placeholders; ``seqs``: the rows' sequence numbers). ``dry_run``: roll back instead of
    committing (does the database take such rows now?)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        begin_immediate(cur)
        try:
            row = cur.execute("SELECT last_seq, last_hash FROM audit_head WHERE tenant = ?",
                              (tenant,)).fetchone()
            if row is None:
                cur.execute("INSERT INTO audit_head (tenant, last_seq, last_hash) "
                            "VALUES (?, 0, ?)", (tenant, GENESIS_HASH))
                row = (0, GENESIS_HASH)
            log_rows, patient_rows, seqs, prev = _chain_rows(tenant, int(row[0]), row[1], rows)
            cur.executemany(_SQLITE_LOG, log_rows)
            if patient_rows:
                cur.executemany(_SQLITE_PATIENT, patient_rows)
            cur.execute("UPDATE audit_head SET last_seq = ?, last_hash = ? WHERE tenant = ?",
                        (seqs[-1], prev, tenant))
            if watermark is not None:
                cur.execute(_SQLITE_WATERMARK, (watermark[0], tenant, watermark[1]))
            if then is not None:
                then(lambda sql, params: cur.execute(sql.replace("%s", "?"), params), seqs)
            cur.execute("ROLLBACK" if dry_run else "COMMIT")
        except BaseException:
            if raw.driver_connection.in_transaction:  # SQLite ends it itself on a full disk
                cur.execute("ROLLBACK")  # (a ROLLBACK then would hide the cause)
            raise
        finally:
            cur.close()
    finally:
        raw.close()


#: how long an append waits for SQLite's write lock before it fails (and is retried), as
#: long as the pool's busy_timeout; and how often it asks for it meanwhile
LOCK_WAIT = 30.0
LOCK_POLL = 0.0005


def begin_immediate(cur, wait: float = LOCK_WAIT) -> None:
    """``BEGIN IMMEDIATE`` on SQLite, asking for the write lock every :data:`LOCK_POLL`
    seconds until ``wait`` is over, instead of through SQLite's busy handler.

    Why: the busy handler sleeps 1, 2, 5, 10 … then 100 ms between tries, so whoever has
    waited a while asks rarely, and under a steady stream of write transactions (twelve
    clients creating) the newer writers get the lock first. The shipper, which asks once a
    second, waited 0.5–3.5 s for it per shipment, the records' lag passed
    :data:`~fkj.security.audit.writer.MAX_LAG` and reads were refused (503; issue 30, item
    11). Asking every half millisecond it gets the lock within a write transaction or two.
    """
    previous = cur.execute("PRAGMA busy_timeout").fetchone()[0]
    cur.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(LOCK_POLL)
    finally:
        cur.execute(f"PRAGMA busy_timeout = {int(previous)}")


def append_in_transaction(conn: Connection, tenant: str, events: Sequence[dict]) -> list[int]:
    """Append ``events`` (AuditEvent dicts) to ``tenant``'s chain in the open transaction.

    Returns the sequence numbers given to them. The chain head stays locked until the
    transaction ends, which serialises appends within a tenant and keeps ``seq`` gap-free.
    """
    if not events:
        return []
    last_seq, prev = _lock_head(conn, tenant)
    rows, patient_rows, seqs, prev = _chain_rows(tenant, last_seq, prev,
                                                 [audit_row(e) for e in events])
    if conn.dialect.name == "postgresql":
        # one round trip: both inserts (arrays, unnest) and the head update in one statement
        cols = list(zip(*rows))
        pcols = list(zip(*patient_rows)) if patient_rows else [(), (), ()]
        params = {f"c{i}": list(c) for i, c in enumerate(cols)}
        params.update({"pt": list(pcols[0]), "pp": list(pcols[1]), "ps": list(pcols[2]),
                       "s": seqs[-1], "h": prev, "t": tenant})
        conn.execute(_PG_APPEND, params)
        return seqs
    if conn.dialect.name == "sqlite":
        # plain SQL through the driver: no statement compilation on the read path
        conn.exec_driver_sql(_SQLITE_LOG, rows)
        if patient_rows:
            conn.exec_driver_sql(_SQLITE_PATIENT, patient_rows)
        conn.exec_driver_sql("UPDATE audit_head SET last_seq = ?, last_hash = ? "
                             "WHERE tenant = ?", (seqs[-1], prev, tenant))
        return seqs
    bulk.insert_rows(conn, audit_log, LOG_COLUMNS, rows)
    bulk.insert_rows(conn, audit_patient, PATIENT_COLUMNS, patient_rows)
    conn.execute(text("UPDATE audit_head SET last_seq = :s, last_hash = :h WHERE tenant = :t"),
                 {"s": seqs[-1], "h": prev, "t": tenant})
    return seqs


#: PostgreSQL: the whole append (tenant, durability, head lock, hashes, inserts, head, the
#: journal's watermark) in one statement, run outside an explicit transaction — one round
#: trip per batch. The hashes are chained in a loop, the rows inserted by one INSERT per
#: table (a quarter less of the database's time per record than an INSERT per record).
#: Created by migration 0012 (0010 had it without the watermark); the hash recipe is
#: :func:`record_hash`'s.
PG_APPEND_FUNCTION = r"""
CREATE OR REPLACE FUNCTION fkj_audit_append(p_tenant text, p_rows json, p_sync text,
                                            p_journal text, p_shipped bigint)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_first bigint; v_seq bigint; v_hash text; v_prev text; r record;
  v_prevs text[] := '{}'; v_hashes text[] := '{}'; v_rows jsonb := p_rows::jsonb;
BEGIN
  PERFORM set_config('fkj.tenant', p_tenant, true);
  PERFORM set_config('synchronous_commit', p_sync, true);
  SELECT last_seq, last_hash INTO v_seq, v_hash FROM audit_head
   WHERE tenant = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO audit_head (tenant, last_seq, last_hash) VALUES (p_tenant, 0, repeat('0', 64))
      ON CONFLICT (tenant) DO NOTHING;
    SELECT last_seq, last_hash INTO v_seq, v_hash FROM audit_head
     WHERE tenant = p_tenant FOR UPDATE;
  END IF;
  v_first := v_seq + 1;
  FOR r IN SELECT x.content FROM jsonb_to_recordset(v_rows) AS x(content text) LOOP
    v_seq := v_seq + 1;
    v_prevs := v_prevs || v_hash;
    v_hash := encode(sha256(convert_to(v_hash || chr(30) || r.content || chr(30)
                                       || v_seq::text || chr(30) || p_tenant, 'UTF8')), 'hex');
    v_hashes := v_hashes || v_hash;
  END LOOP;
  INSERT INTO audit_log (tenant, seq, recorded, patients, agent, action, subtype, purpose,
                         outcome, content, prev_hash, hash)
  SELECT p_tenant, v_first + x.n - 1, x.recorded, x.patients, x.agent, x.action, x.subtype,
         x.purpose, x.outcome, x.content, v_prevs[x.n], v_hashes[x.n]
    FROM ROWS FROM (jsonb_to_recordset(v_rows) AS (
      recorded bigint, patients text, agent text, action text, subtype text, purpose text,
      outcome text, content text)) WITH ORDINALITY AS x(
      recorded, patients, agent, action, subtype, purpose, outcome, content, n);
  INSERT INTO audit_patient (tenant, patient, seq)
  SELECT DISTINCT p_tenant, pl.value, v_first + x.n - 1
    FROM jsonb_array_elements(v_rows) WITH ORDINALITY AS x(row, n),
         jsonb_array_elements_text(x.row -> 'patient_list') AS pl(value);
  UPDATE audit_head SET last_seq = v_seq, last_hash = v_hash WHERE tenant = p_tenant;
  IF p_journal IS NOT NULL THEN
    INSERT INTO audit_journal (journal, tenant, shipped) VALUES (p_journal, p_tenant, p_shipped)
      ON CONFLICT (journal, tenant) DO UPDATE SET shipped = excluded.shipped;
  END IF;
  RETURN v_seq;
END
$fn$
"""


def append_autonomous_pg(engine: Engine, tenant: str, rows: Sequence[dict], sync: str = "on",
                         watermark: tuple[str, int] | None = None,
                         lines: Sequence[bytes] | None = None, *,
                         then: Callable | None = None, dry_run: bool = False) -> None:
    """Append audit ``rows`` in a transaction of their own, in one round trip
    (``fkj_audit_append``; PostgreSQL only). ``sync``: ``on`` or ``off``
    (``synchronous_commit`` of that transaction). ``watermark``, ``then`` (``%s``
    placeholders) and ``dry_run`` as for :func:`append_autonomous_sqlite`. ``lines``: the
    rows already serialised as JSON (the journal's lines; their extra keys are ignored),
    sent as they are."""
    import orjson
    payload = (b"[" + b",".join(lines) + b"]" if lines is not None
               else orjson.dumps(list(rows))).decode()
    journal, shipped = watermark if watermark is not None else (None, None)
    args = (tenant, payload, sync, journal, shipped)
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        if then is None and not dry_run:
            conn.autocommit = True
            try:
                conn.execute("SELECT fkj_audit_append(%s, %s, %s, %s, %s)", args)
            finally:
                conn.autocommit = False
            return
        try:  # more in the same transaction: the function's settings hold in all of it
            last = int(conn.execute("SELECT fkj_audit_append(%s, %s, %s, %s, %s)",
                                    args).fetchone()[0])
            if then is not None:
                then(conn.execute, list(range(last - len(rows) + 1, last + 1)))
        except BaseException:
            conn.rollback()
            raise
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    finally:
        raw.close()


def probe_append(engine: Engine, tenant: str) -> None:
    """Append a plain record to ``tenant``'s chain and roll it back: raises if the database
    does not take records now (it is down, locked, full or its chain is broken) — so that a
    record it refuses is blamed only when others would go in (see
    :mod:`fkj.security.audit.quarantine`)."""
    from fkj.security.audit.events import build_audit_event
    from fkj.types import Principal
    row = audit_row(build_audit_event(Principal.system(tenant, subject="fkj-audit"),
                                      action="E", subtype="$audit-probe", resources=[],
                                      patients=[], outcome="0"))
    if engine.dialect.name == "postgresql":
        append_autonomous_pg(engine, tenant, [row], dry_run=True)
    else:
        append_autonomous_sqlite(engine, tenant, [row], dry_run=True)


_SQLITE_LOG = (f"INSERT INTO audit_log ({', '.join(LOG_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(LOG_COLUMNS))})")
_SQLITE_PATIENT = "INSERT INTO audit_patient (tenant, patient, seq) VALUES (?, ?, ?)"
_SQLITE_WATERMARK = ("INSERT INTO audit_journal (journal, tenant, shipped) VALUES (?, ?, ?) "
                     "ON CONFLICT (journal, tenant) DO UPDATE SET shipped = excluded.shipped")


def shipped_positions(engine: Engine, journal: str, tenants: Sequence[str]) -> dict[str, int]:
    """How far each tenant's records of ``journal`` are chained (its watermark; 0: none)."""
    out = {}
    for t in tenants:
        with scope(engine, t) as conn:
            out[t] = int(conn.execute(
                select(audit_journal.c.shipped).where(audit_journal.c.journal == journal,
                                                      audit_journal.c.tenant == t)
            ).scalar() or 0)
    return out


def forget_journal(engine: Engine, journal: str, tenants: Sequence[str]) -> None:
    """Remove the watermarks of a journal that no longer exists."""
    for t in tenants:
        with scope(engine, t, write=True) as conn:
            conn.execute(audit_journal.delete().where(audit_journal.c.journal == journal,
                                                      audit_journal.c.tenant == t))


_PG_TYPES = {"seq": "bigint", "recorded": "bigint"}
_PG_APPEND = text(
    "WITH l AS (INSERT INTO audit_log (" + ", ".join(LOG_COLUMNS) + ") SELECT * FROM unnest("
    + ", ".join(f"CAST(:c{i} AS {_PG_TYPES.get(c, 'text')}[])"
                for i, c in enumerate(LOG_COLUMNS)) + ")), "
    "p AS (INSERT INTO audit_patient (tenant, patient, seq) SELECT * FROM unnest("
    "CAST(:pt AS text[]), CAST(:pp AS text[]), CAST(:ps AS bigint[]))) "
    "UPDATE audit_head SET last_seq = :s, last_hash = :h WHERE tenant = :t")


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
    #: the chain head found (last seq and hash), for anchoring outside the database
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    problem_count: int = 0
    #: records kept in quarantine (each with its stand-in in the chain; not a problem)
    quarantined: int = 0
    #: what the checkpoints said (:func:`fkj.security.audit.checkpoints.verify_checkpoints`)
    anchors: object = None

    def add(self, problem: str) -> None:
        """One more problem (found outside the walk of the chain)."""
        self.ok = False
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def verify_chain(engine: Engine, tenant: str, *, batch: int = 5000,
                 anchors: dict[int, str] | None = None) -> VerifyResult:
    """Walk ``tenant``'s audit chain and report every inconsistency found.

    ``anchors`` (seq → hash, from checkpoints kept outside the database): the record at
    each such seq must still have that hash, and the chain must reach the highest one —
    what a chain rewritten and rehashed forward, or cut at the end with its head moved
    back, cannot satisfy (:mod:`fkj.security.audit.checkpoints`)."""
    anchors = anchors or {}
    problems: list[str] = []
    count = 0

    def problem(msg: str) -> None:
        nonlocal count
        count += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(msg)

    from fkj.security.audit import quarantine
    checked, expected, prev = 0, 1, GENESIS_HASH
    patients: dict[int, set[str]] = {}
    stand_ins: dict[int, str | None] = {}
    with scope(engine, tenant) as conn:
        for seq, pat in conn.execute(
                select(audit_patient.c.seq, audit_patient.c.patient)
                .where(audit_patient.c.tenant == tenant)):
            patients.setdefault(int(seq), set()).add(pat)
        after = 0
        while True:
            rows = conn.execute(
                select(*(audit_log.c[c] for c in LOG_COLUMNS))
                .where(audit_log.c.tenant == tenant, audit_log.c.seq > after)
                .order_by(audit_log.c.seq).limit(batch)).all()
            if not rows:
                break
            for r in rows:
                checked += 1
                seq = int(r.seq)
                if seq != expected:
                    problem(f"seq {seq}: gap, records {expected}..{seq - 1} are missing "
                            "(deleted?)" if seq > expected else
                            f"seq {seq}: out of order (expected {expected})")
                if r.prev_hash != prev:
                    problem(f"seq {seq}: prev_hash does not match the hash of the record "
                            "before it (record deleted, inserted or reordered)")
                if record_hash(r.prev_hash, r.content, seq, tenant) != r.hash:
                    problem(f"seq {seq}: hash mismatch (record changed or moved)")
                anchored = anchors.get(seq)
                if anchored is not None and anchored != r.hash:
                    problem(f"seq {seq}: hash differs from the checkpoint of seq {seq} "
                            f"(records up to seq {seq} were rewritten after it was written)")
                _check_columns(r, patients.pop(seq, set()), problem)
                if r.subtype == quarantine.SUBTYPE:
                    try:
                        stand_ins[seq] = quarantine.named_sha256(json.loads(r.content))
                    except (ValueError, AttributeError, TypeError):
                        stand_ins[seq] = None
                prev, expected = r.hash, seq + 1
            after = int(rows[-1].seq)
        head = conn.execute(select(audit_head.c.last_seq, audit_head.c.last_hash)
                            .where(audit_head.c.tenant == tenant)).first()
        held = quarantine.check(conn, tenant, stand_ins, problem)
    last_seq = expected - 1
    if head is None:
        if checked:
            problem("chain head (audit_head) is missing")
    else:
        if int(head.last_seq) != last_seq:
            problem(f"chain head says last seq {head.last_seq} but the last record is "
                    f"{last_seq} (records at the end deleted?)")
        elif head.last_hash != prev:
            problem(f"chain head hash does not match record {last_seq}")
    if anchors and max(anchors) > last_seq:
        problem(f"the chain ends at seq {last_seq} but a checkpoint names seq "
                f"{max(anchors)}: records {last_seq + 1}..{max(anchors)} were deleted and the "
                "chain head moved back")
    for seq in sorted(patients):
        problem(f"seq {seq}: patient index rows without an audit record "
                f"({', '.join(sorted(patients[seq]))})")
    return VerifyResult(ok=count == 0, checked=checked, problems=problems, last_seq=last_seq,
                        last_hash=prev, problem_count=count, quarantined=held)


def _check_columns(r, indexed: set[str], problem) -> None:
    try:
        event = json.loads(r.content)
        if canonical(event) != r.content and canonical_stdlib(event) != r.content:
            problem(f"seq {r.seq}: content is not in canonical form (edited?)")
        f = index_fields(event)
    except (ValueError, KeyError, TypeError, AttributeError):
        problem(f"seq {r.seq}: content is not a readable AuditEvent")
        return
    for col in ("recorded", "patients", "agent", "action", "subtype", "purpose", "outcome"):
        if f[col] != getattr(r, col):
            problem(f"seq {r.seq}: column {col} does not match the AuditEvent content")
    if set(f["patient_list"]) != indexed and set(f["patients"].split()) != indexed:
        # (the second form: records written before references over 128 characters were
        # left out of the index, on SQLite)
        problem(f"seq {r.seq}: patient index rows do not match the AuditEvent content")
