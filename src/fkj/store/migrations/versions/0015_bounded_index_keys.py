"""bulk export: the job's owner

- ``bulk_export_job.owner``: who may poll, cancel and download the job
  (``fkj.bulk.jobs.owner_of``). Jobs started before have none and are nobody's: start
  them again.

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-10
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bulk_export_job", sa.Column("owner", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bulk_export_job") as batch:
        batch.drop_column("owner")
