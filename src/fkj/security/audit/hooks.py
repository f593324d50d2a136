"""Glue for the repository: AuditEvents for the operations of a write transaction.

Intended use in ``Repository.transaction`` (after the unit of work's last flush, before the
``scope`` block commits)::

    append_in_transaction(conn, self.tenant, write_events(self.principal, self._uow.operations))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fkj.security.audit.events import build_audit_event
from fkj.types import Principal

_ACTIONS = {"create": ("C", "create"), "update": ("U", "update"), "patch": ("U", "patch"),
            "delete": ("D", "delete")}
_METHODS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def patients_of(op: Any) -> list[str]:
    """``Patient/x`` of a prepared write (``fkj.repository.unit_of_work.Prepared``): the one
    answer of :func:`fkj.repository.patients.write_patients`, from the reference index rows
    already extracted for the write (a deletion: from its content)."""
    from fkj.repository.patients import write_patients
    return write_patients(op.type, op.id, getattr(op, "index", None),
                          op.content if getattr(op, "deleted", False) else None)


def write_events(principal: Principal, operations: Iterable[Any], *,
                 purpose: str | None = None) -> list[dict]:
    """One successful AuditEvent per write operation (C/U/D of ``Type/id/_history/version``)."""
    events = []
    for op in operations:
        kind = "delete" if op.deleted else (op.action if op.action in _ACTIONS
                                            else _METHODS.get(op.method, "update"))
        action, subtype = _ACTIONS[kind]
        events.append(build_audit_event(
            principal, action=action, subtype=subtype,
            resources=[f"{op.type}/{op.id}/_history/{op.version}"], patients=patients_of(op),
            outcome="0", description=None, purpose=purpose, recorded_us=op.last_updated))
    return events
