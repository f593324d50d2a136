"""search: covering token and date lookup indexes; ix_idx_date_high; string starts-with

- ``ix_idx_token_lookup`` and ``ix_idx_date_lookup`` gain ``rid`` as their last column: the rid
  list of a code or a date range is read from the index alone (PostgreSQL index-only scan,
  SQLite covering index) instead of one table row per entry, and comes in rid order for one
  code. On 1,000,000 resources (PostgreSQL) this took the ``_include`` search of the bench
  (a LOINC code and a month) from p50 62 / p95 388 ms to p50 23 / p95 37 ms.
- ``ix_idx_date_high`` (tenant, type, param, high, low, rid): a date search of one value is an
  index range scan that can drive the query; ``eq``, ``lt``, ``le``, ``sa`` and ``ap`` are
  ranges on ``low`` (``ix_idx_date_lookup``), ``gt``, ``ge`` and ``eb`` on ``high``.
- ``ix_idx_string_lookup`` on PostgreSQL with ``text_pattern_ops`` on ``norm``: a string search
  (``name=Stor``, ``norm LIKE 'stor%'``) is an index range scan in any collation (with the
  default operator class only a "C" database can use it; the bench's C.UTF-8 database did not,
  and walked the Patient rows in rid order: 90 ms). Unchanged on SQLite.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_idx_string_lookup", table_name="idx_string")
    op.create_index("ix_idx_string_lookup", "idx_string", ["tenant", "type", "param", "norm"],
                    unique=False, postgresql_ops={"norm": "text_pattern_ops"})
    op.drop_index("ix_idx_token_lookup", table_name="idx_token")
    op.create_index("ix_idx_token_lookup", "idx_token",
                    ["tenant", "type", "param", "code", "system", "rid"], unique=False)
    op.drop_index("ix_idx_date_lookup", table_name="idx_date")
    op.create_index("ix_idx_date_lookup", "idx_date",
                    ["tenant", "type", "param", "low", "high", "rid"], unique=False)
    op.create_index("ix_idx_date_high", "idx_date",
                    ["tenant", "type", "param", "high", "low", "rid"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_idx_string_lookup", table_name="idx_string")
    op.create_index("ix_idx_string_lookup", "idx_string", ["tenant", "type", "param", "norm"],
                    unique=False)
    op.drop_index("ix_idx_date_high", table_name="idx_date")
    op.drop_index("ix_idx_date_lookup", table_name="idx_date")
    op.create_index("ix_idx_date_lookup", "idx_date", ["tenant", "type", "param", "low", "high"],
                    unique=False)
    op.drop_index("ix_idx_token_lookup", table_name="idx_token")
    op.create_index("ix_idx_token_lookup", "idx_token",
                    ["tenant", "type", "param", "code", "system"], unique=False)
