"""resource: (tenant, type, rid) index

Resources of one type in rid order, read from an index range: the bulk export pages through
a type with ``rid > last ORDER BY rid LIMIT 2000`` (without it PostgreSQL either walked the
primary key over every other type's rows or sorted all remaining rows of the type for each
page), and type-only searches page the same way.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03
"""
from alembic import op


revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_resource_tenant_type_rid", "resource", ["tenant", "type", "rid"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_resource_tenant_type_rid", table_name="resource")
