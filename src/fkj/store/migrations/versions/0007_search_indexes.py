"""search: the rid index of every search-index table becomes (rid, param)

Correlated range checks (``EXISTS (SELECT 1 FROM idx_date WHERE idx_date.rid = r.rid AND
idx_date.param = 'date' AND …)``) find the resource's rows of one parameter directly instead
of every index row of the resource. The rid prefix still serves deletes and re-indexing.

Revision ID: 0007
Revises: 0008
Create Date: 2026-11-25
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TABLES = ("idx_string", "idx_token", "idx_reference", "idx_date", "idx_number",
          "idx_quantity", "idx_uri", "idx_composite")


def upgrade() -> None:
    for t in TABLES:
        op.drop_index(f"ix_{t}_rid", table_name=t)
        op.create_index(f"ix_{t}_rid", t, ["rid", "param"], unique=False)


def downgrade() -> None:
    for t in TABLES:
        op.drop_index(f"ix_{t}_rid", table_name=t)
        op.create_index(f"ix_{t}_rid", t, ["rid"], unique=False)
