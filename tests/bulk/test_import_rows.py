"""The import's fast row path stores exactly what the repository would: index rows (including
values with characters COPY must escape, and NULLs), content and versions — with worker
processes and without, for new and for updated resources."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from sqlalchemy import select

from fkj.repository.unit_of_work import INDEX_COLUMNS
from fkj.search.extract import extract
from fkj.search.keys import stored_rows
from fkj.search.registry import default_registry
from fkj.store.backend import scope
from fkj.store.schema import INDEX_TABLES, resource

from .conftest import run_import

NASTY = ["back\\slash", "tab\there", "new\nline", "cr\rhere", "ctl\u0001x", "None",
         "None at start", "ends None", "\\N", "plain"]


def _patients(n: int) -> list[dict]:
    out = []
    for i in range(n):
        word = NASTY[i % len(NASTY)]
        out.append({"resourceType": "Patient", "id": f"p{i}", "active": True,
                    "name": [{"family": word, "given": [f"G{i}", word]}],
                    "identifier": [{"system": "urn:oid:1.2.3", "value": f"{word}-{i}"}],
                    "gender": "female", "birthDate": "1980-01-0%d" % (1 + i % 9)})
        out.append({"resourceType": "Observation", "id": f"o{i}", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                         "display": word}], "text": word},
                    "subject": {"reference": f"Patient/p{i}"},
                    "effectivePeriod": {"start": "2020-01-01T10:00:00Z"},
                    "valueQuantity": {"value": 60 + i, "unit": "/min",
                                      "system": "http://unitsofmeasure.org", "code": "/min"}})
    return out


def _write(path, resources) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))


def _stored_index(db, tenant) -> Counter:
    got: Counter = Counter()
    with scope(db.engine, tenant) as conn:
        ids = {r.rid: (r.type, r.id) for r in conn.execute(
            select(resource.c.rid, resource.c.type, resource.c.id)
            .where(resource.c.tenant == tenant))}
        for name, cols in INDEX_COLUMNS.items():
            t = INDEX_TABLES[name]
            for row in conn.execute(select(*[t.c[c] for c in cols])
                                    .where(t.c.tenant == tenant)):
                if row[3] == "_lastUpdated":
                    continue
                got[(name, *ids[row[1]], *row[3:])] += 1
    return got


def _expected_index(resources) -> Counter:
    reg = default_registry()
    exp: Counter = Counter()
    for r in resources:
        for name, rows in extract(r, reg).items():
            for row in stored_rows(name, rows):  # as written (bounded keys, flat composites)
                if row[0] != "_lastUpdated":
                    exp[(name, r["resourceType"], r["id"], *row)] += 1
    return exp


@pytest.mark.parametrize("workers,parallel_scan", [(0, False), (2, False), (2, True)])
def test_rows_with_special_characters_new_and_updated(db, tenant, tmp_path, monkeypatch,
                                                      workers, parallel_scan):
    from fkj.bulk import importer
    if parallel_scan:
        monkeypatch.setattr(importer, "PARALLEL_SCAN_BYTES", 0)
        monkeypatch.setattr(importer, "SCAN_CHUNK", 7)
    resources = _patients(60)
    _write(tmp_path / "a" / "data.ndjson", resources)
    result = run_import(db, tenant, [tmp_path / "a"], workers=workers, batch_size=25)
    assert result.exit_code == 0, result.summary()
    assert result.loaded == len(resources)
    expected = _expected_index(resources)
    assert _stored_index(db, tenant) == expected
    with scope(db.engine, tenant) as conn:
        stored = {(r.type, r.id): (r.version, orjson.loads(r.content)) for r in conn.execute(
            select(resource.c.type, resource.c.id, resource.c.version, resource.c.content)
            .where(resource.c.tenant == tenant))}
    for r in resources:
        version, body = stored[(r["resourceType"], r["id"])]
        assert version == 1 and body["meta"]["versionId"] == "1"
        body.pop("meta")
        assert body == r
    # the same data from another place: every resource updated, its index rows replaced
    _write(tmp_path / "b" / "data.ndjson", resources)
    result = run_import(db, tenant, [tmp_path / "b"], workers=workers, batch_size=25)
    assert result.exit_code == 0, result.summary()
    assert _stored_index(db, tenant) == expected
    with scope(db.engine, tenant) as conn:
        versions = Counter(v for (v,) in conn.execute(
            select(resource.c.version).where(resource.c.tenant == tenant)))
    assert versions == {2: len(resources)}
