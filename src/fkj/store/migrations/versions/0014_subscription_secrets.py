"""events: Subscription headers sealed, masked in the store, owner tags; binding tokens
remember their principal

* ``subscription_state.headers`` (plain JSON until now) is sealed with AES-GCM
  (``fkj.events.secrets``);
* every stored version of every Subscription (``resource``, ``resource_version``) gets its
  ``channel.header`` values masked (``Authorization: ***``) and, where the subscription's
  delivery state names its owner, the owner tag (``fkj.events.access``), indexed for the
  current version — from now on only the owner and the tenant's admins see it;
* ``ws_binding_token.principal``: who the token was issued to (tokens live 5 minutes; the
  ones outstanding are dropped).

PostgreSQL keeps the old row versions until they are vacuumed: run ``VACUUM FULL resource,
resource_version, subscription_state`` afterwards if the plain headers must be gone from the
data files at once (docs/events.md).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""
import orjson
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

OWNER_SYSTEM = "http://fkj.no/fhir/CodeSystem/subscription-owner"


def _all_tenants(bind) -> None:
    if bind.dialect.name == "postgresql":  # row-level security is forced on the owner too
        bind.execute(sa.text("SELECT set_config('fkj.tenant', '*', true)"))


def _principal(parse, text):
    try:
        return parse(text)
    except (ValueError, TypeError):
        return None


def upgrade() -> None:
    from fkj.events.access import with_owner
    from fkj.events.secrets import PREFIX, HeaderBox, redact
    from fkj.events.subscriptions import principal_from_json
    from fkj.search.extract import extract

    with op.batch_alter_table('ws_binding_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('principal', sa.Text(), nullable=True))
    bind = op.get_bind()
    _all_tenants(bind)
    bind.execute(sa.text("DELETE FROM ws_binding_token"))

    box = HeaderBox(None)
    owners = {}
    for tenant, sid, headers, owner in bind.execute(sa.text(
            "SELECT tenant, id, headers, owner FROM subscription_state")).all():
        who = _principal(principal_from_json, owner)
        if who is not None:  # an unreadable owner: the tenant's admins only from now on
            owners[(tenant, sid)] = who
        if headers and headers != "[]" and not headers.startswith(PREFIX):
            plain = [h for h in orjson.loads(headers) if isinstance(h, str)]
            bind.execute(sa.text("UPDATE subscription_state SET headers = :h "
                                 "WHERE tenant = :t AND id = :i"),
                         {"h": box.seal(bind, tenant, sid, plain), "t": tenant, "i": sid})

    def rewrite(tenant, sid, content):
        res = orjson.loads(content)
        out = redact(res)
        if (tenant, sid) in owners:
            out = with_owner(out, owners[(tenant, sid)])
        return out, out is not res

    for rid, tenant, sid, deleted, content in bind.execute(sa.text(
            "SELECT rid, tenant, id, deleted, content FROM resource "
            "WHERE type = 'Subscription'")).all():
        res, changed = rewrite(tenant, sid, content)
        if changed:
            bind.execute(sa.text("UPDATE resource SET content = :c WHERE rid = :r"),
                         {"c": orjson.dumps(res).decode(), "r": rid})
        if not deleted:
            bind.execute(sa.text("DELETE FROM idx_token WHERE rid = :r AND param = '_tag' "
                                 "AND system = :s"), {"r": rid, "s": OWNER_SYSTEM})
            for param, system, code, text in extract(res).get("token", ()):
                if param == "_tag" and system == OWNER_SYSTEM:
                    bind.execute(sa.text(
                        "INSERT INTO idx_token (tenant, rid, type, param, system, code, text) "
                        "VALUES (:t, :r, 'Subscription', '_tag', :s, :c, :x)"),
                        {"t": tenant, "r": rid, "s": system, "c": code, "x": text})
    for tenant, sid, version, content in bind.execute(sa.text(
            "SELECT tenant, id, version, content FROM resource_version "
            "WHERE type = 'Subscription'")).all():
        res, changed = rewrite(tenant, sid, content)
        if changed:
            bind.execute(sa.text(
                "UPDATE resource_version SET content = :c WHERE tenant = :t "
                "AND type = 'Subscription' AND id = :i AND version = :v"),
                {"c": orjson.dumps(res).decode(), "t": tenant, "i": sid, "v": version})


def downgrade() -> None:
    """The sealed headers are opened again (the code before 0014 reads them plain); the
    masked values in the stored resources stay masked."""
    from fkj.events.secrets import PREFIX, HeaderBox

    bind = op.get_bind()
    _all_tenants(bind)
    box = HeaderBox(None)
    for tenant, sid, headers in bind.execute(sa.text(
            "SELECT tenant, id, headers FROM subscription_state")).all():
        if headers and headers.startswith(PREFIX):
            bind.execute(sa.text("UPDATE subscription_state SET headers = :h "
                                 "WHERE tenant = :t AND id = :i"),
                         {"h": orjson.dumps(box.open(tenant, sid, headers, bind)).decode(),
                          "t": tenant, "i": sid})
    with op.batch_alter_table('ws_binding_token', schema=None) as batch_op:
        batch_op.drop_column('principal')
