"""Scope enforcement: the SMART scopes of the caller, checked for every interaction and
resource type through the repository's hooks, so REST calls, Bundle entries, includes,
chains, history and operations all pass the same checks.

- ``scope_check`` (authorize hook): the scopes must permit the interaction on the type.
- ``patient/`` scopes confine the caller to its launch patient's compartment:
  ``compartment_filter`` (search_filters hook) restricts every search query, include and
  chain in SQL; ``check_result`` (check_result hook) vetoes single resources read by id or
  from history; writes are checked against the body in ``scope_check``.
"""

from __future__ import annotations

import functools

from sqlalchemy import and_, false, or_, select

from fkj.errors import Forbidden, NotFound
from fkj.search.compartments import compartment_params
from fkj.security.scopes import permits, scope_contexts
from fkj.store.schema import idx_reference

#: repository interaction → SMART interaction
_MAP = {"read": "read", "vread": "read", "create": "create", "update": "update",
        "patch": "update", "delete": "delete", "delete-check": "delete",
        "update-check": "update",
        "search-type": "search-type", "search-system": "search-system",
        "history-instance": "history-instance", "history-type": "history-type",
        "history-system": "history-system", "operation": "operation", "history": "read"}
_WRITES = {"create", "update", "patch"}


def _contexts(principal, interaction: str, rtype: str | None) -> frozenset[str]:
    return scope_contexts(principal.scopes, _MAP.get(interaction, interaction), rtype)


def patient_only(principal, interaction: str, rtype: str | None) -> bool:
    """True when the caller may do this only through ``patient/`` scopes."""
    ctx = _contexts(principal, interaction, rtype)
    return bool(ctx) and ctx <= {"patient"}


def scope_check(repo, interaction: str, rtype: str | None, resource) -> None:
    smart = _MAP.get(interaction, interaction)
    if smart is None:
        return
    p = repo.principal
    if not permits(p.scopes, None, smart, rtype):
        raise Forbidden(f"the token's scopes do not allow {interaction} on {rtype or 'all types'}")
    if interaction in _WRITES and resource is not None and patient_only(p, interaction, rtype):
        if not in_patient_compartment(resource, p.patient):
            raise Forbidden("a patient/ scope only allows writes inside the patient's own record")
    if interaction in ("update-check", "delete-check") and resource is not None \
            and patient_only(p, smart, rtype) and not in_patient_compartment(resource, p.patient):
        # the stored resource belongs to someone else: do not confirm that it exists
        raise NotFound(f"{rtype}/{resource.get('id')} is not known")


def check_result(repo, interaction: str, resource: dict) -> None:
    p = repo.principal
    rtype = resource.get("resourceType")
    if not permits(p.scopes, None, _MAP.get(interaction, "read"), rtype):
        raise Forbidden(f"the token's scopes do not allow reading {rtype}")
    if patient_only(p, "read", rtype) and not in_patient_compartment(resource, p.patient):
        # do not confirm that the resource exists
        raise NotFound(f"{rtype}/{resource.get('id')} is not known")


def compartment_filter(repo, r, rtype: str | None):
    """SQL restriction for searches: only types the scopes allow, and for ``patient/`` scopes
    only the launch patient's compartment. ``rtype`` None: a query over several types
    (system search, includes); the condition is then decided per row type."""
    p = repo.principal
    if rtype is None:
        unrestricted, patient_types = _split_types(p.scopes)
        if unrestricted is None:
            return None
        ors = [r.c.type.in_(unrestricted)] if unrestricted else []
        ors += [and_(r.c.type == t, _compartment_condition(repo, r, t, p.patient))
                for t in patient_types]
        return or_(*ors) if ors else false()
    ctx = _contexts(p, "search-type", rtype) | _contexts(p, "read", rtype)
    if not ctx:
        return false()
    if ctx <= {"patient"}:
        return _compartment_condition(repo, r, rtype, p.patient)
    return None


@functools.lru_cache(maxsize=256)
def _split_types(scopes: frozenset[str]) -> tuple[list[str] | None, list[str]]:
    """(types readable without restriction — None meaning all —, types readable only in the
    patient compartment) for a set of scopes."""
    from fkj.model.validation import RESOURCE_TYPES

    unrestricted, patient_types = [], []
    for t in sorted(RESOURCE_TYPES):
        ctx = (scope_contexts(scopes, "read", t) | scope_contexts(scopes, "search-type", t))
        if not ctx:
            continue
        (patient_types if ctx <= {"patient"} else unrestricted).append(t)
    if not patient_types and len(unrestricted) == len(RESOURCE_TYPES):
        return None, []
    return unrestricted, patient_types


def _compartment_condition(repo, r, rtype: str, patient_id: str | None):
    if not patient_id:
        return false()
    if rtype == "Patient":
        return r.c.id == patient_id
    params = compartment_params("Patient", rtype)
    if not params:
        return false()
    ref = idx_reference.alias()
    return r.c.rid.in_(select(ref.c.rid).where(
        ref.c.tenant == repo.tenant, ref.c.type == rtype, ref.c.param.in_(params),
        ref.c.target_type == "Patient", ref.c.target_id == patient_id))


def in_patient_compartment(resource: dict, patient_id: str | None) -> bool:
    """Whether ``resource`` belongs to Patient/``patient_id``'s compartment (R4 definition)."""
    if not patient_id:
        return False
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id") == patient_id
    params = set(compartment_params("Patient", rtype or ""))
    if not params:
        return False
    from fkj.search.extract import extract
    for row in extract(resource).get("reference", []):
        if row[0] in params and row[1] == "Patient" and row[2] == patient_id:
            return True
    return False


__all__ = ["scope_check", "check_result", "compartment_filter", "patient_only"]
