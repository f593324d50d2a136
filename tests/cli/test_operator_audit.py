"""Writes made from the command line are audited like writes over REST, the operator named
(issue 30, item 11): ``fkj seed`` left no audit record for the thousands of resources it
wrote. Now each written resource has its AuditEvent (BALP's create/update pattern: one
resource per event), committed with it, with the tool as the requestor and the person who
ran it as the responsible party; tenant changes are recorded in their own transaction; the
chain is checkpointed when the tool finishes and ``fkj audit verify`` passes.

Real ``fkj`` processes, on SQLite and (with FKJ_TEST_DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select

from fkj.security.audit import search_audit
from fkj.store.backend import scope
from fkj.store.schema import resource

OPERATOR_SYSTEM = "urn:fkj:operator"  # fkj.security.audit.events.OPERATOR_SYSTEM


def fkj(*args, url: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "fkj", *args], capture_output=True, text=True,
                          check=False,
                          timeout=timeout,
                          env={**os.environ, "FKJ_DATABASE_URL": url, **(env or {})})


def operator_of(event: dict) -> str | None:
    for a in event["agent"]:
        ident = (a.get("who") or {}).get("identifier") or {}
        if ident.get("system") == OPERATOR_SYSTEM:
            assert a["requestor"] is False and a["type"]["coding"][0]["code"] == "RESP"
            return ident["value"]
    return None


def test_fkj_seed_audits_every_resource_it_writes(db, tenant):
    r = fkj("seed", "--tenant", tenant, "--patients", "3", url=db.url,
            env={"FKJ_OPERATOR": "ola.nordmann"})
    assert r.returncode == 0, r.stdout + r.stderr
    with scope(db.engine, tenant) as conn:
        stored = {f"{t}/{i}/_history/{v}" for t, i, v in conn.execute(
            select(resource.c.type, resource.c.id, resource.c.version)
            .where(resource.c.tenant == tenant))}
    assert len(stored) > 20
    rows = search_audit(db.engine, tenant, limit=100_000)
    writes = [x for x in rows if x["subtype"] == "create"]
    audited = [e["what"]["reference"] for x in writes for e in x["event"]["entity"]
               if e["role"]["code"] == "4"]
    assert sorted(audited) == sorted(stored)  # one record per written resource, each once
    assert {x["agent"] for x in writes} == {"fkj-seed"}  # the tool is the requestor …
    operators = {operator_of(x["event"]) for x in writes}
    assert len(operators) == 1
    (who,) = operators
    assert who.startswith("ola.nordmann@")  # … and the operator is named
    assert {x["purpose"] for x in writes} == {"HSYSADMIN"}
    # the patients of what was written find it in their log
    patient = next(s.rsplit("/_history", 1)[0] for s in stored if s.startswith("Patient/"))
    assert search_audit(db.engine, tenant, patient=patient)
    # the tenant settings it changed (demo logins) are recorded too
    (settings,) = [x for x in rows if x["subtype"] == "$tenant-settings"]
    assert settings["action"] == "U" and "demo_people" in settings["event"]["outcomeDesc"]
    # checkpointed when it finished; the chain verifies against it
    v = fkj("audit", "verify", "--tenant", tenant, url=db.url)
    assert v.returncode == 0, v.stdout + v.stderr
    head = max(x["seq"] for x in rows)
    assert f"anchored up to seq {head}" in " ".join(v.stdout.split())


def test_fkj_tenant_create_is_audited(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert fkj("migrate", url=url).returncode == 0
    r = fkj("tenant", "create", "4601", "--name", "Bergen", url=url)
    assert r.returncode == 0, r.stdout + r.stderr
    from fkj.store.engine import make_engine
    engine = make_engine(url)
    try:
        (row,) = search_audit(engine, "4601")
        assert (row["action"], row["subtype"], row["agent"]) == ("C", "$tenant-create",
                                                                  "fkj-tenant")
        assert operator_of(row["event"]) and "Bergen" in row["event"]["outcomeDesc"]
    finally:
        engine.dispose()
    v = fkj("audit", "verify", "--tenant", "4601", url=url)
    assert v.returncode == 0 and "anchored up to seq 1" in " ".join(v.stdout.split()), v.stdout


def test_fkj_reindex_is_audited(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert fkj("migrate", url=url).returncode == 0
    assert fkj("tenant", "create", "4601", "--name", "Bergen", url=url).returncode == 0
    assert fkj("seed", "--tenant", "4601", "--patients", "2", url=url).returncode == 0
    r = fkj("reindex", "--tenant", "4601", url=url)
    assert r.returncode == 0, r.stderr
    from fkj.store.engine import make_engine
    engine = make_engine(url)
    try:
        (row,) = [x for x in search_audit(engine, "4601", limit=10_000)
                  if x["subtype"] == "$reindex"]
        assert row["agent"] == "fkj-reindex" and operator_of(row["event"])
    finally:
        engine.dispose()
    assert fkj("audit", "verify", "--tenant", "4601", url=url).returncode == 0
