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
    """``Patient/x`` references of a prepared write (``fkj.repository.unit_of_work.Prepared``):
    the patient itself, or the Patient targets of its patient-compartment parameters, taken
    from the reference index rows already extracted for the write."""
    if op.type == "Patient":
        return [f"Patient/{op.id}"]
    from fkj.search.compartments import compartment_params
    params = set(compartment_params("Patient", op.type))
    out: list[str] = []
    index = getattr(op, "index", None)
    if not index and getattr(op, "deleted", False) and getattr(op, "content", None):
        # a deletion carries the deleted content but no index rows: extract them
        import orjson

        from fkj.search.extract import extract
        try:
            index = extract(orjson.loads(op.content))
        except Exception:  # noqa: BLE001 - the patient is a nicety for a deletion
            index = {}
    for row in (index or {}).get("reference", ()):
        # (param, target_type, target_id, url, ident_system, ident_value)
        if row[0] in params and row[1] == "Patient" and row[2]:
            ref = f"Patient/{row[2]}"
            if ref not in out:
                out.append(ref)
    return out


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
