"""PostgreSQL row-level security: every tenant table is visible only for the tenant named in
the transaction-local setting ``fkj.tenant``.

The application connects and then ``SET ROLE fkj_app``; that role is not the tables' owner,
so the policies apply to it even if an application filter were missing. The setting ``*``
opens all tenants; only administrative code paths (tenant-wide CLI commands such as
``fkj audit verify`` across tenants) use it, always through :func:`fkj.store.backend.scope`.
"""

from __future__ import annotations

from sqlalchemy import text

from fkj.store.engine import APP_ROLE

POLICY = (
    "tenant = current_setting('fkj.tenant', true) "
    "OR current_setting('fkj.tenant', true) = '*'"
)


def ensure_role(conn) -> None:
    conn.execute(text(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') "
        f"THEN CREATE ROLE {APP_ROLE} NOLOGIN; END IF; END $$"))
    conn.execute(text(f"GRANT {APP_ROLE} TO CURRENT_USER"))
    schema = conn.execute(text("SELECT current_schema()")).scalar()
    conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {APP_ROLE}'))


def protect(conn, table: str, *, append_only: bool = False) -> None:
    """Grant the app role access to ``table`` and enforce the tenant policy on it."""
    privileges = "SELECT, INSERT" if append_only else "SELECT, INSERT, UPDATE, DELETE"
    conn.execute(text(f'GRANT {privileges} ON "{table}" TO {APP_ROLE}'))
    conn.execute(text(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY'))
    conn.execute(text(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY'))
    conn.execute(text(f'DROP POLICY IF EXISTS tenant_isolation ON "{table}"'))
    conn.execute(text(
        f'CREATE POLICY tenant_isolation ON "{table}" USING ({POLICY}) WITH CHECK ({POLICY})'))


def grant_plain(conn, table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    """Access for the app role to a table that is not tenant-scoped (e.g. the tenant list)."""
    conn.execute(text(f'GRANT {privileges} ON "{table}" TO {APP_ROLE}'))


def grant_sequences(conn) -> None:
    schema = conn.execute(text("SELECT current_schema()")).scalar()
    conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {APP_ROLE}'))
