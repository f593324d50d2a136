"""Tables of bulk import and export (SQLAlchemy Core) on the shared :data:`metadata`.

Times are integers, microseconds since the Unix epoch (UTC). Both tables are tenant-scoped
(row-level security on PostgreSQL, migration 0005).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table, Text

from fkj.store.schema import metadata

#: how far an import got in each input file; updated in the same transaction as each batch,
#: so a rerun resumes exactly after the last committed line
bulk_import_file = Table(
    "bulk_import_file", metadata,
    Column("tenant", String(4), primary_key=True),
    #: sha256 of (absolute path, size, sha256 of the first MiB)
    Column("file_key", String(64), primary_key=True),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("head_sha", String(64), nullable=False),
    #: last committed line (NDJSON) or entry number (Bundle), 1-based; 0 = nothing yet
    Column("line", BigInteger, nullable=False, default=0),
    Column("loaded", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("done", Boolean, nullable=False, default=False),
    Column("updated", BigInteger, nullable=False),
)

#: one row per $export kick-off; the status URL reads it, the worker thread updates it
bulk_export_job = Table(
    "bulk_export_job", metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(4), nullable=False),
    #: queued | running | complete | failed | cancelled
    Column("status", String(16), nullable=False),
    #: system | patient | group
    Column("level", String(16), nullable=False),
    #: the requesting principal (for people reading the table; the check uses ``owner``)
    Column("subject", String(200), nullable=False),
    Column("client_id", String(200), nullable=True),
    #: who may poll, cancel and download: :func:`fkj.bulk.jobs.owner_of` the principal that
    #: started it (migration 0015; a job without one is nobody's)
    Column("owner", String(64), nullable=True),
    #: the kick-off request URL (manifest ``request``)
    Column("request", Text, nullable=False),
    #: the parsed parameters (JSON)
    Column("params", Text, nullable=False),
    Column("transaction_time", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    #: files and status disappear after this (set on completion)
    Column("expires", BigInteger, nullable=True),
    Column("progress", Text, nullable=False, default=""),
    #: the completion manifest (JSON) once complete; the error message when failed
    Column("manifest", Text, nullable=True),
    Column("directory", Text, nullable=False),
    Index("ix_bulk_export_job_tenant_status", "tenant", "status"),
)
