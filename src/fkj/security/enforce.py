"""Scope enforcement: the SMART scopes of the caller, checked for every interaction and
resource type through the repository's ``authorize`` hook (so Bundle entries, includes,
operations and history are covered by the same check as plain REST calls).

A ``patient/`` scope confines the caller to its launch patient's compartment; that part is
applied as a search filter and a result check by :mod:`fkj.security.compartment`.
"""

from __future__ import annotations

from fkj.errors import Forbidden
from fkj.security.scopes import permits, scope_contexts

#: repository interaction → SMART interaction
_MAP = {"read": "read", "vread": "read", "create": "create", "update": "update",
        "patch": "update", "delete": "delete", "delete-check": None,
        "search-type": "search-type", "search-system": "search-system",
        "history-instance": "history-instance", "history-type": "history-type",
        "history-system": "history-system", "operation": "operation"}


def scope_check(repo, interaction: str, rtype: str | None, resource) -> None:
    smart = _MAP.get(interaction, interaction)
    if smart is None:
        return
    p = repo.principal
    if not permits(p.scopes, None, smart, rtype):
        what = rtype or "all types"
        raise Forbidden(f"the token's scopes do not allow {interaction} on {what}")


def patient_only(principal, interaction: str, rtype: str | None) -> bool:
    """True when the caller may do this only through ``patient/`` scopes."""
    ctx = scope_contexts(principal.scopes, _MAP.get(interaction, interaction) or interaction,
                         rtype)
    return bool(ctx) and ctx <= {"patient"}
