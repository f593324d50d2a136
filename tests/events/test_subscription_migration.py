"""Migration 0014: Subscriptions stored before it (header values in the clear in the resource,
its history and the delivery state; no owner tag) are sealed, masked and tagged, so the rules
of issue 30 items 2 and 3 hold for them too — and the headers are still there for delivery."""

from __future__ import annotations

import uuid

import orjson
import pytest
from sqlalchemy import insert, select, text

from fkj.events.tables import subscription_state as S
from fkj.store.engine import make_engine
from fkj.store.migrate import upgrade
from fkj.store.schema import idx_token, resource, resource_version
from fkj.store.tenants import create_tenant
from fkj.types import Principal

SECRET = "Bearer gammel-hemmelighet"
TOPIC = "http://fkj.no/fhir/SubscriptionTopic/vedtak"
T = "0555"


@pytest.fixture
def old_database(db, tmp_path):
    """A database of its own, migrated up to 0012 (before this change)."""
    from tests.conftest import PG_URL, pg_schema_url
    schema = None
    if db.backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    else:
        schema = f"fkj_m_{uuid.uuid4().hex[:10]}"
        admin = make_engine(PG_URL, app_role=False)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        url = pg_schema_url(schema)
    owner = make_engine(url, app_role=False)
    upgrade(owner, "0012")
    yield url, owner
    owner.dispose()
    if schema:
        admin = make_engine(PG_URL, app_role=False)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _old_subscription(version: int) -> dict:
    return {"resourceType": "Subscription", "id": "s1",
            "meta": {"versionId": str(version), "lastUpdated": "2026-12-01T10:00:00Z"},
            "status": "active", "reason": f"v{version}", "criteria": TOPIC,
            "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.no/x",
                        "header": [f"Authorization: {SECRET}", "X-Kommune: 0555"]}}


def test_migration_0014_seals_masks_and_tags_stored_subscriptions(old_database):
    from fkj.events import access
    from fkj.events.secrets import PREFIX, HeaderBox
    from fkj.events.subscriptions import principal_json
    from fkj.repository.repository import Repository
    from fkj.repository.services import Services
    from fkj.store.backend import scope

    url, owner_engine = old_database
    engine = make_engine(url)
    try:
        create_tenant(engine, T, "Gammelkommune", official=False)
        eier = Principal(kind="client", subject="eier-app", tenant=T, client_id="eier-app",
                         scopes=frozenset({"system/Subscription.cruds"}))
        with scope(engine, T, write=True) as conn:  # stored the way the code before 0014 did
            conn.execute(insert(resource).values(
                tenant=T, type="Subscription", id="s1", version=2, last_updated=2,
                deleted=False, content=orjson.dumps(_old_subscription(2)).decode()))
            for v in (1, 2):
                conn.execute(insert(resource_version).values(
                    tenant=T, type="Subscription", id="s1", version=v, seq=v, last_updated=v,
                    method="PUT", deleted=False,
                    content=orjson.dumps(_old_subscription(v)).decode()))
            conn.execute(insert(S).values(
                tenant=T, id="s1", topic=TOPIC, filters="[]", channel="rest-hook",
                endpoint="https://hooks.example.no/x",
                headers=orjson.dumps([f"Authorization: {SECRET}", "X-Kommune: 0555"]).decode(),
                content="id-only", heartbeat=0, timeout=0, max_count=0, status="active",
                owner=principal_json(eier), matched_seq=0, event_count=0, delivered=0,
                failures=0, next_attempt=0, last_sent=1, lease_owner=None, lease_until=0,
                last_error=None, end_time=None, created=1, updated=1))

        upgrade(owner_engine, "head")

        with scope(engine, T) as conn:
            stored = [orjson.loads(c) for c, in conn.execute(select(resource.c.content).where(
                resource.c.tenant == T))]
            stored += [orjson.loads(c) for c, in conn.execute(
                select(resource_version.c.content).where(resource_version.c.tenant == T))]
            sealed = conn.execute(select(S.c.headers).where(S.c.tenant == T)).scalar_one()
            tags = conn.execute(select(idx_token.c.code).where(
                idx_token.c.tenant == T, idx_token.c.param == "_tag",
                idx_token.c.system == access.OWNER_SYSTEM)).scalars().all()
        assert len(stored) == 3
        for res in stored:  # the current version and the history: masked, tagged
            assert res["channel"]["header"] == ["Authorization: ***", "X-Kommune: ***"]
            assert access.owner_of(res) == access.owner_key(eier)
        assert SECRET not in orjson.dumps(stored).decode()
        assert sealed.startswith(PREFIX) and "gammel" not in sealed
        assert HeaderBox(engine).open(T, "s1", sealed) == [f"Authorization: {SECRET}",
                                                           "X-Kommune: 0555"]
        assert tags == [access.owner_key(eier)]

        # the owner rule now holds for it: the owner finds and reads it, another client not
        from fkj.config import Settings
        services = Services(engine=engine, settings=Settings(database_url=url))
        services.hooks.check_result.append(access.check_result)
        services.hooks.search_filters.append(access.search_filter)
        annen = Principal(kind="client", subject="annen", tenant=T, client_id="annen",
                          scopes=frozenset({"system/*.rs"}))
        mine, theirs = Repository(services, eier, T), Repository(services, annen, T)
        assert mine.read("Subscription", "s1").json()["reason"] == "v2"
        assert mine.find_ids("Subscription", [("_id", "s1")]) == ["s1"]
        assert theirs.find_ids("Subscription", [("_id", "s1")]) == []
        from fkj.errors import NotFound
        with pytest.raises(NotFound):
            theirs.read("Subscription", "s1")
    finally:
        engine.dispose()
