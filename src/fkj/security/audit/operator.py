"""Writes made from the command line are audited like any other, with the operator as agent.

A server audits every write through the repository's ``before_commit`` hook
(:func:`~fkj.security.audit.wiring.audit_writes`: one AuditEvent per written resource, in
the write's own transaction). The command-line tools build their own repository; they
get the same hook from :func:`audited_services`, so ``fkj seed`` (and any tool that writes
through a repository) leaves a record for each resource it writes, or writes nothing.

Who: :func:`operator_principal` — a system principal whose ``client_id`` names the tool
(``fkj-seed``, ``fkj-import``, ``fkj-export``, ``fkj-tenant`` …) and whose ``subject`` names
the person at the keyboard: ``FKJ_OPERATOR`` if set (a named operator on a shared service
account), else the operating-system user (``SUDO_USER`` too, when run through sudo), with
the host: ``ola@db-admin-1``. Its AuditEvents name both: the tool as the client agent and
requestor (the log's ``agent`` column, ``fkj audit search --agent fkj-seed``), and the
operator as an agent of type ``RESP`` (responsible party) whose ``who.identifier`` has the
system :data:`~fkj.security.audit.events.OPERATOR_SYSTEM`; purpose of use ``HSYSADMIN``.

Changes that are no FHIR resource — a tenant created, its settings changed — are recorded
with :func:`tenant_change`, inside the transaction that makes them
(:func:`fkj.store.tenants.create_tenant` / ``update_tenant_settings`` take it as
``audit``).
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable

from sqlalchemy import text

from fkj.security.audit.events import OPERATOR_SYSTEM
from fkj.security.audit.storable import storable_text
from fkj.types import Principal

#: the purpose of use of what an operator does from the command line
PURPOSE = "HSYSADMIN"


def operator_name() -> str:
    """Who runs this process: ``FKJ_OPERATOR``, else the OS user (and the sudo user),
    ``@`` the host."""
    named = (os.environ.get("FKJ_OPERATOR") or "").strip()
    if not named:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name: still say so
            user = f"uid {os.getuid()}"
        sudo = os.environ.get("SUDO_USER")
        named = f"{sudo} (sudo as {user})" if sudo and sudo != user else user
    return storable_text(f"{named}@{socket.gethostname()}")[:200]


def operator_principal(tenant: str | None, tool: str) -> Principal:
    """The principal of a command-line tool run by the operator (see the module
    docstring)."""
    return Principal(kind="system", subject=operator_name(), tenant=tenant,
                     scopes=frozenset({"system/*.cruds"}), client_id=tool,
                     purpose_of_use=PURPOSE)


def is_operator(p: Principal) -> bool:
    """Whether ``p`` is an operator's principal (a system principal whose subject is not
    its tool: :func:`operator_principal`)."""
    return p.kind == "system" and bool(p.client_id) and bool(p.subject) \
        and p.subject != p.client_id


def audited_services(engine, settings, **kw):
    """:class:`~fkj.repository.services.Services` whose writes are audited as a server's
    are (and through which no AuditEvent can be written)."""
    from fkj.repository.services import Services
    from fkj.security.audit.wiring import register_write_audit
    services = Services(engine=engine, settings=settings, **kw)
    register_write_audit(services)
    return services


def tenant_change(tool: str, action: str, subtype: str, description: str
                  ) -> Callable[..., None]:
    """An ``audit(conn, tenant, *_)`` callable for the tenant functions of
    :mod:`fkj.store.tenants`: appends an AuditEvent (``action`` C or U, ``subtype`` e.g.
    ``$tenant-create``) to the tenant's chain in their transaction."""
    def audit(conn, tenant: str, *details) -> None:
        from fkj.security.audit.chain import append_in_transaction
        from fkj.security.audit.events import build_audit_event
        if conn.dialect.name == "postgresql":  # the audit tables are tenant-scoped (RLS)
            conn.execute(text("SELECT set_config('fkj.tenant', :t, true)"), {"t": tenant})
        extra = f" ({', '.join(map(str, details[0]))})" if details and details[0] else ""
        append_in_transaction(conn, tenant, [build_audit_event(
            operator_principal(tenant, tool), action=action, subtype=subtype, resources=[],
            patients=[], outcome="0", description=description + extra)])
    return audit


def record(engine, tenant: str, tool: str, *, action: str, subtype: str,
           description: str) -> None:
    """Append one AuditEvent of the operator's (for work that writes no resource and has
    no transaction of its own to join, e.g. a rebuilt search index)."""
    from fkj.security.audit.chain import append_in_transaction
    from fkj.security.audit.events import build_audit_event
    from fkj.store.backend import scope
    with scope(engine, tenant, write=True) as conn:
        append_in_transaction(conn, tenant, [build_audit_event(
            operator_principal(tenant, tool), action=action, subtype=subtype, resources=[],
            patients=[], outcome="0", description=description)])


__all__ = ["OPERATOR_SYSTEM", "PURPOSE", "audited_services", "is_operator", "operator_name",
           "operator_principal", "record", "tenant_change"]
