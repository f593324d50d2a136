"""A server killed after answering reads whose records were not yet chained: the next server
started on the same database chains them, exactly once (both backends, real processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from sqlalchemy import select

from fkj.security.audit import audit_log, verify_chain
from fkj.security.dev import mint_dev_token
from fkj.store.backend import scope
from tests.locks import chain_head_held


def _start(db, journal_dir) -> tuple[subprocess.Popen, str]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FKJ_DATABASE_URL": db.url, "FKJ_DEMO": "1", "FKJ_BASE_URL": base,
           "FKJ_WORKERS": "1", "FKJ_AUDIT_JOURNAL_DIR": str(journal_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "fkj", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"{base}/fhir/0000/metadata", timeout=1).status_code in (200, 404):
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fkj serve did not start")


def _reads_chained(db, tenant, patient_id: str) -> list[dict]:
    with scope(db.engine, tenant) as conn:
        events = [json.loads(c) for c, in conn.execute(
            select(audit_log.c.content).where(audit_log.c.tenant == tenant)
            .order_by(audit_log.c.seq))]
    return [e for e in events if e["action"] == "R" and any(
        (x.get("what") or {}).get("reference", "").startswith(f"Patient/{patient_id}")
        for x in e.get("entity") or ())]


def test_reads_answered_by_a_killed_server_are_chained_by_the_next(db, tenant, tmp_path):
    proc, base = _start(db, tmp_path)
    try:
        token = mint_dev_token(db.engine, tenant, "system/*.cruds", demo=True, base_url=base)
        h = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"{base}/fhir/{tenant}/Patient", headers=h,
                       json={"resourceType": "Patient", "name": [{"family": "Krasj"}]})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        # the chain head is held by another transaction: the server cannot chain anything
        with chain_head_held(db.engine, tenant):
            for _ in range(5):  # answered: each record is in the journal before the answer
                assert httpx.get(f"{base}/fhir/{tenant}/Patient/{pid}", headers=h,
                                 timeout=10).status_code == 200
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            if db.backend == "postgresql":
                # the dead server's session still waits for the lock and would finish its
                # append once the lock is free (PostgreSQL notices a vanished client only when
                # it next talks to it): end it, as a database would end a broken connection.
                # Only that session: idle pooled sessions of this test process whose last
                # statement was an append match the text too (ending them once cost a later
                # test a 500, before the pool learnt to replace ended connections)
                with db.owner_engine.connect() as conn:
                    from sqlalchemy import text
                    ended = conn.execute(text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE '%fkj_audit_append%' AND state = 'active' "
                        "AND wait_event_type = 'Lock' AND datname = current_database() "
                        "AND pid <> pg_backend_pid()")).all()
                    assert len(ended) <= 1, ended  # none if its append had not begun
        assert _reads_chained(db, tenant, pid) == []  # the killed server chained none
        assert len(list(tmp_path.glob("*/*.audit-journal"))) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    nxt, _ = _start(db, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while len(_reads_chained(db, tenant, pid)) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # had anything been chained twice, it would show by now
        reads = _reads_chained(db, tenant, pid)
        assert len(reads) == 5 and len({e["id"] for e in reads}) == 5
        assert verify_chain(db.engine, tenant).ok
        assert list(tmp_path.glob("*/*.audit-journal")) == []  # recovered and deleted
    finally:
        nxt.send_signal(signal.SIGTERM)
        nxt.wait(20)
