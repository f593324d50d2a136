"""Alembic environment: runs on the connection handed over by fkj.store.migrate."""

from alembic import context

import fkj.security.tables  # noqa: F401  (registers its tables on the metadata)
import fkj.security.audit.tables  # noqa: F401  (audit log tables)
import fkj.bulk.tables  # noqa: F401  (bulk import progress, export jobs)
import fkj.security.policy.tables  # noqa: F401  (emergency access grants)
import fkj.events.tables  # noqa: F401  (subscriptions, notifications, outbox)
from fkj.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via fkj.store.migrate
    raise RuntimeError("run migrations with `fkj migrate`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
