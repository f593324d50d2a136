"""``fkj import``: NDJSON and Bundles, references in any order, error report, exit status,
dry run, resumability (including SIGKILL of a real subprocess) and idempotency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from fkj.bulk.synthetic import write_ndjson
from fkj.bulk.tables import bulk_import_file
from fkj.store.backend import scope
from fkj.store.schema import event_log, resource, resource_version

from .conftest import run_import

ROOT = Path(__file__).resolve().parents[2]


def counts(db, tenant, table=resource) -> dict[str, int]:
    with scope(db.engine, tenant) as conn:
        rows = conn.execute(select(table.c.type, func.count()).where(table.c.tenant == tenant)
                            .group_by(table.c.type)).all()
    return {t: n for t, n in rows}


def event_count(db, tenant) -> int:
    with scope(db.engine, tenant) as conn:
        return conn.execute(select(func.count()).select_from(event_log)
                            .where(event_log.c.tenant == tenant)).scalar_one()


def test_ndjson_directory_with_forward_references(db, tenant, tmp_path):
    expected = write_ndjson(tmp_path / "in", 12)
    # the directory is read in name order: Encounter and Observation come before Patient
    result = run_import(db, tenant, [tmp_path / "in"], report_dir=tmp_path / "report")
    assert result.exit_code == 0, result.summary()
    assert result.loaded == sum(expected.values()) == 120
    assert counts(db, tenant) == expected
    assert counts(db, tenant, resource_version) == expected
    assert event_count(db, tenant) == 120
    summary = (tmp_path / "report" / "summary.txt").read_text()
    assert "loaded 120" in summary and "exit status 0" in summary


def test_rerun_is_idempotent(db, tenant, tmp_path):
    write_ndjson(tmp_path / "in", 5)
    first = run_import(db, tenant, [tmp_path / "in"])
    second = run_import(db, tenant, [tmp_path / "in"])
    assert first.exit_code == second.exit_code == 0
    assert second.loaded == 0 and second.read == 0
    assert counts(db, tenant, resource_version) == counts(db, tenant)
    assert event_count(db, tenant) == 50


def test_same_data_in_another_file_updates_instead_of_duplicating(db, tenant, tmp_path):
    write_ndjson(tmp_path / "a", 3)
    write_ndjson(tmp_path / "b", 3)  # the same resources again, other files
    assert run_import(db, tenant, [tmp_path / "a"]).exit_code == 0
    assert run_import(db, tenant, [tmp_path / "b"]).exit_code == 0
    assert counts(db, tenant) == {"Patient": 3, "Encounter": 6, "Observation": 21}
    assert counts(db, tenant, resource_version) == {"Patient": 6, "Encounter": 12,
                                                    "Observation": 42}


def test_duplicate_lines_in_one_file(db, tenant, tmp_path):
    p = {"resourceType": "Patient", "id": "dup", "gender": "male"}
    q = dict(p, gender="female")
    f = tmp_path / "dup.ndjson"
    f.write_bytes(orjson.dumps(p) + b"\n" + orjson.dumps(q) + b"\n")
    assert run_import(db, tenant, [f]).exit_code == 0
    with scope(db.engine, tenant) as conn:
        row = conn.execute(select(resource.c.version, resource.c.content).where(
            resource.c.tenant == tenant, resource.c.id == "dup")).one()
    assert row.version == 2 and '"female"' in row.content


def test_bad_lines_are_reported_and_good_ones_load(db, tenant, tmp_path):
    f = tmp_path / "mixed.ndjson"
    lines = [
        orjson.dumps({"resourceType": "Patient", "id": "ok1"}),
        b"{not json",
        orjson.dumps({"resourceType": "Patient", "id": "bad", "gender": "xx"}),
        b"",
        orjson.dumps({"resourceType": "Observation", "id": "dangling", "status": "final",
                      "code": {"text": "x"}, "subject": {"reference": "Patient/nobody"}}),
        orjson.dumps({"resourceType": "Observation", "id": "ok2", "status": "final",
                      "code": {"text": "x"}, "subject": {"reference": "Patient/ok1"}}),
        orjson.dumps([1, 2]),
    ]
    f.write_bytes(b"\n".join(lines) + b"\n")
    report = tmp_path / "report"
    result = run_import(db, tenant, [f], report_dir=report)
    assert result.exit_code == 1
    assert (result.loaded, result.failed) == (2, 4)
    assert counts(db, tenant) == {"Patient": 1, "Observation": 1}
    outcomes = [orjson.loads(x) for x in (report / "errors.ndjson").read_bytes().splitlines()]
    assert [o["resourceType"] for o in outcomes] == ["OperationOutcome"] * 4
    where = sorted(o["issue"][0]["location"][0] for o in outcomes)
    assert where == sorted(f"{f}:{n}" for n in (2, 3, 5, 7))
    by_line = {next(e["valueInteger"] for e in o["extension"][0]["extension"]
                    if e["url"] == "line"): o for o in outcomes}
    assert "Patient/nobody" in by_line[5]["issue"][0]["diagnostics"]
    assert "gender" in orjson.dumps(by_line[3]).decode()
    summary = (report / "summary.txt").read_text()
    assert "rejected 4" in summary and "exit status 1" in summary
    # a rerun loads nothing more and still says 1 (the rejected lines are still rejected)
    again = run_import(db, tenant, [f], report_dir=report)
    assert again.exit_code == 1 and again.read == 0


def _bundle(btype: str) -> dict:
    pat = "urn:uuid:4b2c8e0e-1f5e-4a3b-9a55-0c6f2d7e9a10"
    return {"resourceType": "Bundle", "type": btype, "entry": [
        {"fullUrl": "urn:uuid:9d1e5f2a-7b3c-4d8e-8f6a-1a2b3c4d5e6f",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "puls"},
                      "subject": {"reference": pat}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": pat, "resource": {"resourceType": "Patient", "gender": "female"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "male"},
         "request": {"method": "PUT", "url": "Patient/fixed-id"}},
    ]}


@pytest.mark.parametrize("btype", ["transaction", "batch", "collection"])
def test_bundles_get_deterministic_ids_and_rewritten_references(db, tenant, tmp_path, btype):
    f = tmp_path / "bundle.json"
    f.write_bytes(orjson.dumps(_bundle(btype)))
    assert run_import(db, tenant, [f]).exit_code == 0
    with scope(db.engine, tenant) as conn:
        rows = {(r.type, r.id): orjson.loads(r.content) for r in conn.execute(
            select(resource.c.type, resource.c.id, resource.c.content)
            .where(resource.c.tenant == tenant))}
    assert ("Patient", "fixed-id") in rows and len(rows) == 3
    obs = next(v for (t, _), v in rows.items() if t == "Observation")
    ref = obs["subject"]["reference"]
    assert ref.startswith("Patient/") and ("Patient", ref.split("/")[1]) in rows
    ids_before = set(rows)
    # the same file in another directory: the same ids (uuid5 of file name and fullUrl)
    g = tmp_path / "again"
    g.mkdir()
    (g / "bundle.json").write_bytes(f.read_bytes())
    assert run_import(db, tenant, [g]).exit_code == 0
    assert set(counts(db, tenant)) == {"Patient", "Observation"}
    assert sum(counts(db, tenant).values()) == len(ids_before)


def test_urn_references_across_files(db, tenant, tmp_path):
    pat = "urn:uuid:0f0e0d0c-0b0a-4909-8807-060504030201"
    (tmp_path / "a.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "batch",
        "entry": [{"fullUrl": "urn:uuid:11111111-2222-4333-8444-555555555555",
                   "resource": {"resourceType": "Observation", "status": "final",
                                "code": {"text": "x"}, "subject": {"reference": pat}}}]}))
    (tmp_path / "b.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "batch",
        "entry": [{"fullUrl": pat, "resource": {"resourceType": "Patient"}}]}))
    result = run_import(db, tenant, [tmp_path])
    assert result.exit_code == 0, result.summary()
    assert counts(db, tenant) == {"Patient": 1, "Observation": 1}


def test_dry_run_stores_nothing(db, tenant, tmp_path):
    write_ndjson(tmp_path / "in", 3)
    (tmp_path / "in" / "bad.ndjson").write_bytes(b'{"resourceType": "Patient", "active": "yes"}\n')
    result = run_import(db, tenant, [tmp_path / "in"], dry_run=True)
    assert result.exit_code == 1 and result.loaded == 30 and result.failed == 1
    assert counts(db, tenant) == {}
    with scope(db.engine, tenant) as conn:
        assert conn.execute(select(func.count()).select_from(bulk_import_file).where(
            bulk_import_file.c.tenant == tenant)).scalar_one() == 0


def test_fatal_errors_exit_2(db, tenant, tmp_path):
    assert run_import(db, tenant, [tmp_path / "missing"]).exit_code == 2
    write_ndjson(tmp_path / "in", 1)
    assert run_import(db, "9998", [tmp_path / "in"]).exit_code == 2


def _cli(db, tenant, path, *extra, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen(
        [sys.executable, "-m", "fkj.bulk.importer", str(path), "--tenant", tenant,
         "--database-url", db.url, "--no-progress", *extra],
        cwd=kw.get("cwd"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _committed(db, tenant) -> int:
    with scope(db.engine, tenant) as conn:
        return conn.execute(select(func.coalesce(func.sum(bulk_import_file.c.loaded), 0))
                            .where(bulk_import_file.c.tenant == tenant)).scalar_one()


def test_sigkill_then_rerun_loads_everything_exactly_once(db, tenant, tmp_path):
    expected = write_ndjson(tmp_path / "in", 400)  # 4,000 resources
    total = sum(expected.values())
    proc = _cli(db, tenant, tmp_path / "in", "--batch-size", "200", "--report",
                str(tmp_path / "report"), cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _committed(db, tenant) < 600:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _committed(db, tenant)
    assert 600 <= partial < total
    assert sum(counts(db, tenant).values()) == partial  # committed batches only
    rerun = _cli(db, tenant, tmp_path / "in", "--batch-size", "200", "--report",
                 str(tmp_path / "report"), cwd=tmp_path)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    # the rerun loads only what was not committed (lines of a file it had finished are not
    # read again at all; lines before the checkpoint of an unfinished one are skipped)
    report = " ".join(err.decode().split())
    assert f"loaded {total - partial}, rejected 0" in report, report
    assert f"all runs: loaded {total}," in report, report
    assert counts(db, tenant) == expected
    # every resource exactly once: one version, one event each
    assert counts(db, tenant, resource_version) == expected
    assert event_count(db, tenant) == total


def test_cli_exit_status_for_bad_lines(db, tenant, tmp_path):
    f = tmp_path / "x.ndjson"
    f.write_bytes(b'{"resourceType": "Patient", "id": "a"}\n{"resourceType": "Nope"}\n')
    proc = _cli(db, tenant, f, cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err.decode()
    assert (tmp_path / "fkj-data" / "imports" / f"{tenant}-x.ndjson" / "errors.ndjson").exists()


def test_absolute_full_urls_in_a_bundle_are_rewritten(db, tenant, tmp_path):
    """A legacy system's Bundle refers by absolute fullUrl (not urn:uuid), also forward."""
    old = "http://legacy.example.kommune.no/fhir/Patient/77"
    (tmp_path / "legacy.json").write_bytes(orjson.dumps({"resourceType": "Bundle",
        "type": "collection", "entry": [
            {"fullUrl": "http://legacy.example.kommune.no/fhir/Observation/1",
             "resource": {"resourceType": "Observation", "status": "final",
                          "code": {"text": "x"}, "subject": {"reference": old}}},
            {"fullUrl": old, "resource": {"resourceType": "Patient"}}]}))
    assert run_import(db, tenant, [tmp_path]).exit_code == 0
    with scope(db.engine, tenant) as conn:
        rows = {(r.type, r.id): orjson.loads(r.content) for r in conn.execute(
            select(resource.c.type, resource.c.id, resource.c.content)
            .where(resource.c.tenant == tenant))}
    obs = next(v for (t, _), v in rows.items() if t == "Observation")
    ref = obs["subject"]["reference"]
    assert ref.startswith("Patient/") and ("Patient", ref.split("/")[1]) in rows


def _bundle_file(path: Path, patients: int) -> int:
    """A collection Bundle of ``patients`` Patients with three Observations each, written
    entry by entry; returns its size in bytes."""
    with open(path, "wb") as fh:
        fh.write(b'{"resourceType":"Bundle","type":"collection","entry":[')
        for i in range(patients):
            pat = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
            entries = [{"fullUrl": pat, "resource": {
                "resourceType": "Patient", "name": [{"family": f"Strøm{i}", "given": ["Kari"]}],
                "gender": "female", "birthDate": "1950-01-01"}}]
            entries += [{"resource": {"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}],
                                  "text": "Puls " + "x" * 400},
                         "valueQuantity": {"value": 60 + k, "unit": "/min"},
                         "subject": {"reference": pat}}} for k in range(3)]
            fh.write((b"," if i else b"") + b",".join(orjson.dumps(e) for e in entries))
        fh.write(b"]}")
    return path.stat().st_size


def test_a_bundle_file_is_streamed_not_read_whole(tmp_path):
    """The Bundle reader holds one entry at a time: reading every entry of a ~19 MB Bundle
    file (the scan and the load pass both read this way) allocates at its peak a small
    fraction of the file — parsed whole, the file would take several times its size."""
    import tracemalloc

    from fkj.bulk.reader import discover, items

    path = tmp_path / "big.json"
    size = _bundle_file(path, 10_000)
    (src,) = discover([path])
    tracemalloc.start()
    try:
        n = sum(1 for item in items(src, scan=True) if item.error is None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 40_000
    assert size > 15 * 2**20
    assert peak < size / 20, (peak, size)


def _patient_entries(n: int) -> list[dict]:
    return [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
             "resource": {"resourceType": "Patient", "gender": "female",
                          "name": [{"family": f"Brudd{i}"}]}} for i in range(n)]


def test_a_bundle_broken_off_mid_file_loads_its_whole_entries_and_reports_the_break(
        db, tenant, tmp_path):
    """A transfer cut short: the entries before the break load, the break is one error
    (file, entry, reason), and the complete file loaded later brings the rest without
    duplicating what came first (ids are derived from file name and fullUrl)."""
    entries = _patient_entries(50)
    whole = orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    head = orjson.dumps({"resourceType": "Bundle", "type": "collection",
                         "entry": entries[:30]})[:-2]  # without the closing "]}"
    cut = orjson.dumps(entries[30])
    (tmp_path / "cut").mkdir()
    (tmp_path / "whole").mkdir()
    broken = tmp_path / "cut" / "overforing.json"
    broken.write_bytes(head + b"," + cut[: len(cut) // 2])
    (tmp_path / "whole" / "overforing.json").write_bytes(whole)

    result = run_import(db, tenant, [broken], report_dir=tmp_path / "report")
    assert result.exit_code == 1
    assert (result.loaded, result.failed) == (30, 1)
    assert counts(db, tenant) == {"Patient": 30}
    (line,) = (tmp_path / "report" / "errors.ndjson").read_bytes().splitlines()
    issue = orjson.loads(line)["issue"][0]
    assert issue["location"] == [f"{broken.resolve()}:31"]
    assert "Bundle.entry[30] or later is broken off" in issue["diagnostics"]
    assert "\n" not in issue["diagnostics"]

    again = run_import(db, tenant, [tmp_path / "whole"])
    assert again.exit_code == 0 and again.loaded == 50
    assert counts(db, tenant) == {"Patient": 50}


def test_an_import_is_audited_batch_by_batch(db, tenant, tmp_path):
    """Every stored resource is named by an AuditEvent committed with its batch (subtype
    $import, C for created, U for updated), each patient finds the import in her audit
    trail, and the hash chain holds."""
    from fkj.security.audit import search_audit, verify_chain

    expected = write_ndjson(tmp_path / "in", 12)
    result = run_import(db, tenant, [tmp_path / "in"], batch_size=25)
    assert result.exit_code == 0 and result.loaded == 120
    events = [e for e in search_audit(db.engine, tenant, limit=1000)
              if e["subtype"] == "$import"]
    assert len(events) >= 120 // 25
    named = _named_resources(events)
    assert sorted(named) == sorted(_stored(db, tenant)) and len(named) == 120
    assert {e["action"] for e in events} == {"C"}
    assert all(e["agent"] == "fkj-import" for e in events), {e["agent"] for e in events}
    patient = next(ref for ref in named if ref.startswith("Patient/"))
    mine = search_audit(db.engine, tenant, patient=patient, limit=1000)
    assert mine and all(e["subtype"] == "$import" for e in mine)
    # the patient's encounters and observations name her too
    assert any(ref.startswith("Observation/") for e in mine
               for ref in _named_resources([e]))
    assert verify_chain(db.engine, tenant).ok

    write_ndjson(tmp_path / "again", 12)  # the same resources: updates
    assert run_import(db, tenant, [tmp_path / "again"]).exit_code == 0
    updates = [e for e in search_audit(db.engine, tenant, limit=1000)
               if e["subtype"] == "$import" and e["action"] == "U"]
    assert sorted(_named_resources(updates)) == sorted(_stored(db, tenant))
    assert sum(expected.values()) == 120
    assert verify_chain(db.engine, tenant).ok


def test_an_import_batch_that_rolls_back_leaves_no_audit(db, tenant, tmp_path, monkeypatch):
    from fkj.bulk import importer
    from fkj.security.audit import search_audit

    write_ndjson(tmp_path / "in", 3)

    def fail(*_a, **_k):
        raise importer.FatalImportError("the disk is full")

    monkeypatch.setattr(importer.Importer, "_commit_progress", fail)
    result = run_import(db, tenant, [tmp_path / "in"])
    assert result.exit_code == 2 and "disk is full" in result.fatal
    assert counts(db, tenant) == {}
    assert [e for e in search_audit(db.engine, tenant) if e["subtype"] == "$import"] == []


def _named_resources(events) -> list[str]:
    out = []
    for e in events:
        for ent in e["event"].get("entity", []):
            for d in ent.get("detail", []):
                if d.get("type") == "ids":
                    out += [f"{ent['name']}/{i}" for i in d["valueString"].split()]
    return out


def _stored(db, tenant) -> list[str]:
    with scope(db.engine, tenant) as conn:
        return [f"{r.type}/{r.id}" for r in conn.execute(
            select(resource.c.type, resource.c.id).where(resource.c.tenant == tenant))]


def test_two_writers_commit_in_file_order_and_stop_after_a_failed_batch(
        db, tenant, tmp_path, monkeypatch):
    """With two writer connections a batch commits only after the one before it: when the
    third batch of a file fails, the batches after it roll back, the committed line of each
    file covers exactly what is stored, and a rerun loads the rest exactly once."""
    from fkj.bulk import importer

    expected = write_ndjson(tmp_path / "in", 40)
    original = importer.Importer._audit_batch

    def failing(self, conn, src, ops, first, last):
        if first > 100:
            raise importer.FatalImportError("the disk is full")
        return original(self, conn, src, ops, first, last)

    monkeypatch.setattr(importer.Importer, "_audit_batch", failing)
    result = run_import(db, tenant, [tmp_path / "in"], batch_size=50, writers=2)
    assert result.exit_code == 2 and "disk is full" in result.fatal
    stored = sum(counts(db, tenant).values())
    assert stored == _committed(db, tenant) == result.loaded
    assert 100 <= stored < sum(expected.values())
    with scope(db.engine, tenant) as conn:
        lines = {r.path.rsplit("/", 1)[-1]: (r.line, r.loaded) for r in conn.execute(
            select(bulk_import_file.c.path, bulk_import_file.c.line,
                   bulk_import_file.c.loaded).where(bulk_import_file.c.tenant == tenant))}
    # the file that failed stopped at the end of its second batch; one line per resource
    assert 100 in [line for line, _ in lines.values()]
    assert all(line == loaded <= 100 for line, loaded in lines.values()), lines

    monkeypatch.undo()
    again = run_import(db, tenant, [tmp_path / "in"], batch_size=50, writers=2)
    assert again.exit_code == 0, again.summary()
    assert counts(db, tenant) == expected
    assert counts(db, tenant, resource_version) == expected
    assert event_count(db, tenant) == sum(expected.values())


def test_two_writers_and_the_same_resource_in_consecutive_batches(db, tenant, tmp_path):
    """A resource in two batches that would be in flight together: the second waits for the
    first, so it is an update of version 1, not a second create."""
    f = tmp_path / "dup.ndjson"
    lines = [orjson.dumps({"resourceType": "Patient", "id": "dup", "gender": "male"})]
    lines += [orjson.dumps({"resourceType": "Patient", "id": f"p{i}"}) for i in range(80)]
    lines += [orjson.dumps({"resourceType": "Patient", "id": "dup", "gender": "female"})]
    f.write_bytes(b"\n".join(lines) + b"\n")
    result = run_import(db, tenant, [f], batch_size=30, writers=2)
    assert result.exit_code == 0 and result.loaded == 82, result.summary()
    with scope(db.engine, tenant) as conn:
        row = conn.execute(select(resource.c.version, resource.c.content).where(
            resource.c.tenant == tenant, resource.c.id == "dup")).one()
    assert row.version == 2 and '"female"' in row.content
    assert counts(db, tenant) == {"Patient": 81}


def test_an_import_on_postgresql_gathers_statistics_of_the_growing_table(
        db, tenant, tmp_path, monkeypatch):
    """Without statistics PostgreSQL looked a batch's ids up by reading every stored resource
    of the type: the import analyses ``resource`` as it grows (fkj.store.maintenance)."""
    from sqlalchemy import text

    from fkj.store import maintenance
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL planner statistics")
    monkeypatch.setattr(maintenance, "LOAD_ANALYZE_MIN_ROWS", 50)
    # the shared test database holds the other tests' resources: a load analyses once it
    # has added as many rows as the tables had, so start this load's count from an empty
    # table, as on a fresh database
    init = maintenance.GrowthAnalyzer.__init__

    def from_empty(self, *a, **kw):
        init(self, *a, **kw)
        self._mark = 0
    monkeypatch.setattr(maintenance.GrowthAnalyzer, "__init__", from_empty)

    def analyses() -> int:
        with db.engine.connect() as conn:
            return conn.execute(text(
                "SELECT coalesce(analyze_count, 0) FROM pg_stat_user_tables "
                "WHERE relid = 'resource'::regclass")).scalar_one()
    before = analyses()
    write_ndjson(tmp_path / "in", 12)
    result = run_import(db, tenant, [tmp_path / "in"])
    assert result.exit_code == 0, result.summary()
    deadline = time.time() + 10  # the statistics counters are published asynchronously
    while analyses() == before and time.time() < deadline:
        time.sleep(0.2)
    assert analyses() > before
