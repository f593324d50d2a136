"""Evidence: 20,000 writes from 8 concurrent clients over real HTTP with the audit log on;
every write answered with success is in the store and in the audit log, and the chain
verifies."""

from __future__ import annotations

import threading
import uuid
import time

import httpx
import orjson
from sqlalchemy import select

from fkj.security.audit import verify_chain
from fkj.security.audit.tables import audit_log
from fkj.store.backend import scope
from fkj.store.schema import resource as resources_table
from tests.conftest import auth_headers

CLIENTS = 8
PER_CLIENT = 2_500  # 8 × 2,500 = 20,000 writes
#: of each client's writes, this many are single POSTs; the rest go in transaction Bundles.
#: One commit per write runs at ~150-190/s here on both backends with or without the audit
#: (SQLite fsync per commit; one server process on 2 cores), so 20,000 single POSTs would
#: take ~2 minutes: Bundles keep the 20,000 writes (each its own entry, 201, AuditEvent)
#: inside a minute.
SINGLE = 200
BUNDLE = 50  # entries per transaction Bundle: 5 Patients + 45 Observations


def _obs(i: int, patient_ref: str) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "puls"},
            "valueInteger": i, "subject": {"reference": patient_ref}}


def _worker(url, headers, n, out: list, errors: list) -> None:
    patient = None
    with httpx.Client(base_url=url, headers=headers, timeout=120) as c:  # keep-alive
        for i in range(min(SINGLE, n)):
            if patient is None or i % 10 == 0:
                rtype, body = "Patient", {"resourceType": "Patient",
                                          "name": [{"family": f"Last{i}"}]}
            else:
                rtype, body = "Observation", _obs(i, f"Patient/{patient}")
            try:
                r = c.post(f"/{rtype}", content=orjson.dumps(body))
            except httpx.HTTPError as e:  # answered with no success: not counted
                errors.append(repr(e))
                continue
            if r.status_code == 201:
                rid = r.headers["location"].split("/")[-3]
                out.append((rtype, rid))
                if rtype == "Patient":
                    patient = rid
            else:
                errors.append(f"{r.status_code} {r.text[:200]}")
        left = n - SINGLE
        while left > 0:
            size = min(BUNDLE, left)
            left -= size
            entries = []
            for j in range(size):
                if j % 10 == 0:
                    ref = f"urn:uuid:{uuid.uuid4()}"
                    entries.append({"fullUrl": ref, "resource": {
                        "resourceType": "Patient", "name": [{"family": f"B{j}"}]},
                        "request": {"method": "POST", "url": "Patient"}})
                else:
                    entries.append({"resource": _obs(j, ref),
                                    "request": {"method": "POST", "url": "Observation"}})
            try:
                r = c.post("", content=orjson.dumps({"resourceType": "Bundle",
                                                     "type": "transaction", "entry": entries}))
            except httpx.HTTPError as e:
                errors.append(repr(e))
                continue
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:200]}")
                continue
            for e in r.json()["entry"]:
                resp = e["response"]
                if resp["status"].startswith("201"):
                    parts = resp["location"].split("/")
                    out.append((parts[-4], parts[-3]))
                else:
                    errors.append(str(resp))


def test_20000_concurrent_writes_are_all_stored_and_audited(audited, live_server, tenant):
    headers = {**auth_headers(audited, tenant), "Content-Type": "application/fhir+json",
               "Prefer": "return=minimal"}
    url = f"{live_server.url}/fhir/{tenant}"
    results: list[list] = [[] for _ in range(CLIENTS)]
    errors: list[str] = []
    threads = [threading.Thread(target=_worker, args=(url, headers, PER_CLIENT, results[i],
                                                      errors)) for i in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ok = [x for r in results for x in r]
    print(f"\n{len(ok)} writes in {elapsed:.1f} s ({len(ok) / elapsed:.0f}/s), "
          f"{len(errors)} not successful")
    assert not errors, errors[:5]
    assert len(ok) == CLIENTS * PER_CLIENT

    engine = audited.services.engine
    with scope(engine, tenant) as conn:
        stored = set(conn.execute(select(resources_table.c.type, resources_table.c.id).where(
            resources_table.c.tenant == tenant)).all())
        audited_refs = set()
        for (content,) in conn.execute(select(audit_log.c.content).where(
                audit_log.c.tenant == tenant, audit_log.c.action == "C",
                audit_log.c.outcome == "0")):
            for e in orjson.loads(content).get("entity") or ():
                ref = (e.get("what") or {}).get("reference", "")
                if ref.endswith("/_history/1"):
                    t, rid = ref.split("/")[:2]
                    audited_refs.add((t, rid))
    written = {(t, i) for t, i in ok}
    assert len(written) == len(ok)
    assert not written - {(t, i) for t, i in stored}, "a successful write is not in the store"
    assert not written - audited_refs, "a successful write is not in the audit log"
    res = verify_chain(engine, tenant)
    assert res.ok, res.problems[:10]
    assert res.checked >= len(ok)
