"""Database tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Every row carries its ``tenant``; on PostgreSQL row-level security enforces it as well (see
``migrations``). Resource JSON is stored as text exactly as it will be served, so a read is a
primary-key lookup and a copy, never a re-serialisation.

Times are integers: microseconds since the Unix epoch, UTC. They sort and compare the same on
both backends.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: auto-incrementing 64-bit key (SQLite only auto-increments INTEGER PRIMARY KEY)
BigId = BigInteger().with_variant(Integer, "sqlite")

tenant = Table(
    "tenant", metadata,
    Column("id", String(4), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created", BigInteger, nullable=False),
    #: last event sequence number handed out; incremented in the writing transaction so the
    #: sequence is gap-free per tenant
    Column("event_seq", BigInteger, nullable=False, default=0),
    Column("settings", Text, nullable=False, default="{}"),
)

#: current version of every resource (deleted ones kept as tombstones)
resource = Table(
    "resource", metadata,
    Column("rid", BigId, primary_key=True, autoincrement=True),
    Column("tenant", String(4), nullable=False),
    Column("type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=False),
    UniqueConstraint("tenant", "type", "id", name="uq_resource_tenant_type_id"),
    Index("ix_resource_tenant_type_updated", "tenant", "type", "last_updated"),
    #: one type in rid order from an index range (bulk export pages, type-only searches)
    Index("ix_resource_tenant_type_rid", "tenant", "type", "rid"),
)

#: every version of every resource, including deletes (content is then the previous body)
resource_version = Table(
    "resource_version", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("type", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=False),
    Index("ix_resource_version_tenant_seq", "tenant", "seq"),
    Index("ix_resource_version_tenant_type_seq", "tenant", "type", "seq"),
)

#: the event log ("hendelseslager"): one row per committed write, gap-free ``seq`` per tenant
event_log = Table(
    "event_log", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", String(8), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
)


def _index_table(name: str, *columns: Column) -> Table:
    return Table(
        name, metadata,
        Column("tenant", String(4), nullable=False),
        Column("rid", BigInteger, nullable=False),
        Column("type", String(64), nullable=False),
        Column("param", String(100), nullable=False),
        *columns,
    )


# Search index rows, extracted at write time (see fkj.search.extract). ``rid`` points at
# resource.rid; rows are replaced on update and removed on delete, in the write's transaction.
# Text values of 200 characters or more are stored as a bounded key (prefix + SHA-256) so
# that any value can be indexed; ``norm_long`` / ``uri_long`` then hold the whole value
# (NULL otherwise). See fkj.search.keys (migration 0015).
idx_string = _index_table(
    "idx_string", Column("norm", Text, nullable=False), Column("exact", Text, nullable=False),
    Column("norm_long", Text, nullable=True))
idx_token = _index_table(
    "idx_token", Column("system", Text), Column("code", Text), Column("text", Text))
idx_reference = _index_table(
    "idx_reference", Column("target_type", String(64)), Column("target_id", String(64)),
    Column("url", Text), Column("ident_system", Text), Column("ident_value", Text))
idx_date = _index_table("idx_date", Column("low", Float), Column("high", Float))
idx_number = _index_table("idx_number", Column("low", Float), Column("high", Float))
idx_quantity = _index_table(
    "idx_quantity", Column("system", Text), Column("code", Text),
    Column("low", Float), Column("high", Float))
idx_uri = _index_table("idx_uri", Column("uri", Text, nullable=False),
                       Column("uri_long", Text, nullable=True))
#: composite parameters: up to three components, each flattened to the same five slots
#: (see fkj.search.composite.flatten): s = system/norm/uri/target_type, v = code/exact/
#: target_id, t = text/url, lo/hi = the component's range (date, number, quantity)
idx_composite = _index_table(
    "idx_composite",
    *[Column(f"c{i}_{k}", Float if k in ("lo", "hi") else Text)
      for i in (1, 2, 3) for k in ("s", "v", "t", "lo", "hi")])

INDEX_TABLES = {
    "string": idx_string, "token": idx_token, "reference": idx_reference, "date": idx_date,
    "number": idx_number, "quantity": idx_quantity, "uri": idx_uri,
    "composite": idx_composite,
}

for _t in INDEX_TABLES.values():
    # (rid, param): a resource's rows of one parameter, for the search's per-row checks
    # (correlated EXISTS for ranges, :missing, :not …); the rid prefix serves deletes
    Index(f"ix_{_t.name}_rid", _t.c.rid, _t.c.param)
#: text_pattern_ops: PostgreSQL finds ``norm LIKE 'ber%'`` (starts-with) in the index whatever
#: the database's collation (only with "C" would a plain index serve LIKE)
Index("ix_idx_string_lookup", idx_string.c.tenant, idx_string.c.type, idx_string.c.param,
      idx_string.c.norm, postgresql_ops={"norm": "text_pattern_ops"})
# The token and date lookup indexes end with rid: a search's rid list is read from the index
# alone (PostgreSQL index-only scan, SQLite covering index), in rid order for one code
Index("ix_idx_token_lookup", idx_token.c.tenant, idx_token.c.type, idx_token.c.param,
      idx_token.c.code, idx_token.c.system, idx_token.c.rid)
Index("ix_idx_reference_lookup", idx_reference.c.tenant, idx_reference.c.type,
      idx_reference.c.param, idx_reference.c.target_id, idx_reference.c.target_type)
Index("ix_idx_reference_target", idx_reference.c.tenant, idx_reference.c.target_type,
      idx_reference.c.target_id)
Index("ix_idx_date_lookup", idx_date.c.tenant, idx_date.c.type, idx_date.c.param,
      idx_date.c.low, idx_date.c.high, idx_date.c.rid)
#: date prefixes bounded on the end of the stored range (gt, ge, eb) scan this one
Index("ix_idx_date_high", idx_date.c.tenant, idx_date.c.type, idx_date.c.param,
      idx_date.c.high, idx_date.c.low, idx_date.c.rid)
Index("ix_idx_number_lookup", idx_number.c.tenant, idx_number.c.type, idx_number.c.param,
      idx_number.c.low)
Index("ix_idx_quantity_lookup", idx_quantity.c.tenant, idx_quantity.c.type,
      idx_quantity.c.param, idx_quantity.c.code, idx_quantity.c.low)
Index("ix_idx_uri_lookup", idx_uri.c.tenant, idx_uri.c.type, idx_uri.c.param, idx_uri.c.uri)
Index("ix_idx_composite_lookup", idx_composite.c.tenant, idx_composite.c.type,
      idx_composite.c.param, idx_composite.c.c1_v, idx_composite.c.c1_s)

#: every table whose rows belong to a tenant (row-level security applies to these)
TENANT_TABLES = [t for t in metadata.sorted_tables if t.name != "tenant"]
