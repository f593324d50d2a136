"""Migration 0015 on a database with data: index rows written before it with long values
(whole, as the code before wrote them) become bounded keys with the whole value beside them,
short ones stay as they were, and the data is searchable at once (no reindex). Runs on both
backends; on PostgreSQL the old long values are ones it could index (they compress)."""

from __future__ import annotations

import uuid

import orjson
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select, text

from fkj.repository.services import Services
from fkj.search.extract import extract
from fkj.search.keys import KEY_CHARS, key
from fkj.store.engine import make_engine
from fkj.store.migrate import _config, upgrade
from fkj.store.schema import INDEX_TABLES, resource
from fkj.store.tenants import create_tenant
from fkj.types import Principal
from tests.conftest import BACKENDS, PG_URL, pg_schema_url

LOINC = "http://loinc.org"
FAMILY = "Hansen-Ødegård " * 400  # 6,000 characters that PostgreSQL compresses into an entry
CODE = "8480-6." * 500
PROFILE = "http://fkj.no/fhir/StructureDefinition/" + "lang/" * 600


def _before() -> str:
    return ScriptDirectory.from_config(_config()).get_revision("0015").down_revision


@pytest.fixture(params=BACKENDS)
def old_db(request, tmp_path):
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'old.sqlite'}", None
    else:
        schema = f"fkj_m_{uuid.uuid4().hex[:10]}"
        admin = make_engine(PG_URL, app_role=False)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        url = pg_schema_url(schema)
    owner = make_engine(url, app_role=False)
    upgrade(owner, _before())
    yield url, owner
    owner.dispose()
    if schema:
        admin = make_engine(PG_URL, app_role=False)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _write_as_before(conn, tenant: str, body: dict) -> int:
    """A resource and its index rows as the code before migration 0015 stored them: every
    value whole (extract's rows; composites flattened without keys)."""
    rid = conn.execute(insert(resource).returning(resource.c.rid).values(
        tenant=tenant, type=body["resourceType"], id=body["id"], version=1,
        last_updated=1, deleted=False, content=orjson.dumps(body).decode())).scalar_one()
    for table, rows in extract(body).items():
        t = INDEX_TABLES[table]
        for row in rows:
            if table == "composite":
                param, *comps = row
                flat = [param]
                for comp in (list(comps) + [None, None, None])[:3]:
                    c = tuple(comp or ())
                    flat += (c[:2] + (None,) + c[2:]) if len(c) == 4 else \
                        (c + (None,) * 5)[:5]
                row = tuple(flat)
            cols = [c.name for c in t.c if c.name not in ("tenant", "rid", "type")][:len(row)]
            conn.execute(insert(t).values(tenant=tenant, rid=rid, type=body["resourceType"],
                                          **dict(zip(cols, row))))
    return rid


def test_0015_keys_long_values_of_an_existing_database(old_db):
    url, owner = old_db
    app_engine = make_engine(url)
    create_tenant(app_engine, "0301", "Oslo", official=False)
    coding = {"system": LOINC, "code": CODE}
    patient = {"resourceType": "Patient", "id": "p1", "meta": {"profile": [PROFILE]},
               "name": [{"family": FAMILY, "given": ["Kari"]}]}
    obs = {"resourceType": "Observation", "id": "o1", "status": "final",
           "code": {"coding": [coding]}, "subject": {"reference": "Patient/p1"},
           "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org",
                             "code": "mm[Hg]"},
           "component": [{"code": {"coding": [coding]},
                          "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org",
                                            "code": "mm[Hg]"}}]}
    with owner.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT set_config('fkj.tenant', '0301', true)"))
        _write_as_before(conn, "0301", patient)
        _write_as_before(conn, "0301", obs)
        long_rows = conn.execute(text(
            f"SELECT count(*) FROM idx_string WHERE length(norm) >= {KEY_CHARS}")).scalar()
        assert long_rows >= 2  # family, name …

    upgrade(owner, "0015")

    with owner.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT set_config('fkj.tenant', '0301', true)"))
        s = INDEX_TABLES["string"]
        rows = {r.exact: r for r in conn.execute(select(s).where(s.c.param == "family"))}
        [row] = rows.values()
        assert len(row.norm) == KEY_CHARS and row.norm == key(row.norm_long)
        assert row.norm_long.startswith("hansen-ødegard ")
        assert row.exact == key(FAMILY)
        given = conn.execute(select(s).where(s.c.param == "given")).one()
        assert (given.norm, given.exact, given.norm_long) == ("kari", "Kari", None)
        tok = INDEX_TABLES["token"]
        codes = {r.code for r in conn.execute(select(tok.c.code).where(tok.c.param == "code"))}
        assert codes == {key(CODE)}
        u = INDEX_TABLES["uri"]
        prof = conn.execute(select(u).where(u.c.param == "_profile")).one()
        assert (prof.uri, prof.uri_long) == (key(PROFILE), PROFILE)
        comp = INDEX_TABLES["composite"]
        c = conn.execute(select(comp).where(
            comp.c.param == "component-code-value-quantity")).one()
        assert (c.c1_s, c.c1_v, c.c2_v) == (LOINC, key(CODE), "mm[Hg]")

    # searchable as it is: no reindex
    from fkj.config import Settings
    from fkj.repository.repository import Repository
    services = Services(engine=app_engine, settings=Settings(database_url=url))
    repo = Repository(services, Principal.system("0301"), "0301")

    def found(rtype, *params):
        return {m.id for m in repo.search(rtype, list(params), strict=True).matches}

    assert found("Patient", ("family", FAMILY)) == {"p1"}
    assert found("Patient", ("family", FAMILY[:20])) == {"p1"}
    assert found("Patient", ("family", FAMILY + "x")) == set()
    assert found("Patient", ("family:exact", FAMILY)) == {"p1"}
    assert found("Patient", ("family:contains", "gard hansen-ødegard hansen")) == {"p1"}
    assert found("Patient", ("_profile", PROFILE)) == {"p1"}
    assert found("Patient", ("_profile:below", PROFILE[:3000].rsplit("/", 1)[0])) == {"p1"}
    assert found("Observation", ("code", f"{LOINC}|{CODE}")) == {"o1"}
    assert found("Observation", ("code", f"{LOINC}|{CODE[:-1]}")) == set()
    assert found("Observation", ("component-code-value-quantity",
                                 f"{LOINC}|{CODE}$80|http://unitsofmeasure.org|mm[Hg]")) == {"o1"}
    app_engine.dispose()
