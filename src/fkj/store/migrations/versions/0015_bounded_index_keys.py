"""search: bounded keys for long index values; bulk export: the job's owner

- ``idx_string.norm_long`` and ``idx_uri.uri_long``: the whole value beside a bounded key.
  Text values of 200 characters or more in the index tables are stored as their first 136
  characters and their SHA-256 (``fkj.search.keys``), so that any value fits a B-tree
  entry (PostgreSQL refused a 9,000-character family name with "index row size exceeds
  maximum" and the write failed). Rows written before hold such values whole: they are
  rewritten here (keys, and the whole value in the companion column; in a composite row a
  keyed ``s`` slot keeps its whole value in an empty ``t`` slot). Nothing needs
  ``fkj reindex``.
- ``bulk_export_job.owner``: who may poll, cancel and download the job
  (``fkj.bulk.jobs.owner_of``). Jobs started before have none and are nobody's: start
  them again.

Downgrade drops the columns; long values stay keyed (searches for them no longer match
until ``fkj reindex``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-10
"""
import sqlalchemy as sa
from alembic import op

from fkj.search.keys import KEY_CHARS, is_long, key

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

#: table → its keyed columns
KEYED = {
    "idx_string": ("norm", "exact"),
    "idx_token": ("system", "code"),
    "idx_quantity": ("system", "code"),
    "idx_uri": ("uri",),
    "idx_composite": tuple(f"c{i}_{k}" for i in (1, 2, 3) for k in ("s", "v")),
}
BATCH = 500


def upgrade() -> None:
    op.add_column("idx_string", sa.Column("norm_long", sa.Text(), nullable=True))
    op.add_column("idx_uri", sa.Column("uri_long", sa.Text(), nullable=True))
    op.add_column("bulk_export_job", sa.Column("owner", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    if pg:  # row-level security is forced on the owner too: every tenant's rows
        conn.execute(sa.text("SELECT set_config('fkj.tenant', '*', true)"))
    for table, columns in KEYED.items():
        _rekey(conn, table, columns, pg)


def _rekey(conn, table: str, columns: tuple[str, ...], pg: bool) -> None:
    """Rewrite the rows of ``table`` with a value of ``KEY_CHARS`` or more characters."""
    rowid = "ctid" if pg else "rowid"
    long = " OR ".join(f'length("{c}") >= {KEY_CHARS}' for c in columns)
    ids = [r[0] for r in conn.execute(sa.text(
        f'SELECT {rowid}{"::text" if pg else ""} FROM "{table}" WHERE {long}'))]
    extra = {"idx_string": ["norm_long"], "idx_uri": ["uri_long"],
             "idx_composite": [f"c{i}_t" for i in (1, 2, 3)]}.get(table, [])
    names = list(columns) + extra
    where = "ctid = CAST(:id AS tid)" if pg else "rowid = :id"
    sets = ", ".join(f'"{c}" = :{c}' for c in names)
    select = f'SELECT {", ".join(chr(34) + c + chr(34) for c in names)} FROM "{table}" ' \
             f'WHERE {where}'
    for start in range(0, len(ids), BATCH):
        updates = []
        for rid in ids[start:start + BATCH]:
            row = dict(conn.execute(sa.text(select), {"id": rid}).mappings().one())
            new = dict(row)
            for c in columns:
                new[c] = key(row[c])
            if table == "idx_string" and is_long(row["norm"]):
                new["norm_long"] = row["norm"]
            elif table == "idx_uri" and is_long(row["uri"]):
                new["uri_long"] = row["uri"]
            elif table == "idx_composite":
                for i in (1, 2, 3):
                    s = row[f"c{i}_s"]
                    if is_long(s) and row[f"c{i}_t"] is None:
                        new[f"c{i}_t"] = s  # a string or uri component's whole value
            updates.append({**new, "id": rid})
        conn.execute(sa.text(f'UPDATE "{table}" SET {sets} WHERE {where}'), updates)


def downgrade() -> None:
    with op.batch_alter_table("bulk_export_job") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("idx_uri") as batch:
        batch.drop_column("uri_long")
    with op.batch_alter_table("idx_string") as batch:
        batch.drop_column("norm_long")
