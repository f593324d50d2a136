"""SMART App Launch v2 scopes: grammar, v1 → v2 mapping, and permission checks.

Grammar (SMART 2.2.0)::

    (patient|user|system) "/" (ResourceType|"*") "." [c][r][u][d][s] ["?" param=value ("&" param=value)*]

v1 suffixes map to v2: ``.read`` → ``.rs``, ``.write`` → ``.cud``, ``.*`` → ``.cruds``.

Interactions and the permission letter they need (smart-scopes.json, "permissions")::

    interaction        letter
    create             c
    read, vread        r
    history-instance   r
    update, patch      u
    delete             d
    search-type        s
    search-system      s   (resource_type "*" or None needs a wildcard scope)
    history-type       s
    history-system     s   (idem)
    operation          r and s  (read-like; write operations are checked by the caller with
                                 the write interaction they perform)

Scopes with a ``?param=value`` restriction (granular scopes) are *not* honoured by
:func:`permits` (fail closed: it cannot see the data); :func:`scope_filters` returns them for a
caller that can apply the restriction to search results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

CONTEXTS = ("patient", "user", "system")
LETTERS = "cruds"

INTERACTION_LETTERS: dict[str, str] = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search-type": "s",
    "search-system": "s",
    "history-type": "s",
    "history-system": "s",
    "operation": "rs",
}

_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(
    r"^(patient|user|system)/([A-Z][A-Za-z]{0,63}|\*)\.(read|write|\*|c?r?u?d?s?)(\?[^\s]*)?$")
_PARAM_RE = re.compile(r"^[A-Za-z0-9_:.\-]+=[^&=\s]+$")


@dataclass(frozen=True)
class Scope:
    context: str
    resource_type: str
    permissions: str
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        q = "?" + "&".join(f"{k}={v}" for k, v in self.params) if self.params else ""
        return f"{self.context}/{self.resource_type}.{self.permissions}{q}"


def parse_scope(scope: str) -> Scope | None:
    """Parse one resource scope (v1 or v2); ``None`` for anything else (``openid``, ``launch``…)
    or a malformed resource scope."""
    m = _SCOPE_RE.match(scope)
    if not m:
        return None
    context, rtype, perms, query = m.groups()
    perms = _V1.get(perms, perms)
    if not perms:
        return None
    params: tuple[tuple[str, str], ...] = ()
    if query is not None:
        if query in ("?",):
            return None
        pairs = query[1:].split("&")
        if not all(_PARAM_RE.match(p) for p in pairs):
            return None
        params = tuple(tuple(p.split("=", 1)) for p in pairs)  # type: ignore[misc]
        if m.group(3) in _V1:  # v1 scopes have no parameters
            return None
    return Scope(context, rtype, perms, params)


def is_resource_scope_syntax(scope: str) -> bool:
    return scope.split("/", 1)[0] in CONTEXTS and "/" in scope and not scope.startswith("launch")


def normalize_scopes(scopes: str | Iterable[str] | None) -> frozenset[str]:
    """Split a scope string, map v1 resource scopes to v2 and drop malformed resource scopes.
    Non-resource scopes (``openid``, ``fhirUser``, ``launch/patient``, ``offline_access``…) are
    kept unchanged."""
    if scopes is None:
        return frozenset()
    items = scopes.split() if isinstance(scopes, str) else [s for x in scopes for s in x.split()]
    out: set[str] = set()
    for s in items:
        if is_resource_scope_syntax(s):
            parsed = parse_scope(s)
            if parsed is not None:
                out.add(str(parsed))
        elif s:
            out.add(s)
    return frozenset(out)


def _parsed(scopes: Iterable[str]) -> list[Scope]:
    out = []
    for s in scopes:
        p = parse_scope(s)
        if p is not None:
            out.append(p)
    return out


def _type_matches(scope_type: str, resource_type: str | None) -> bool:
    if scope_type == "*":
        return True
    return resource_type not in (None, "*") and scope_type == resource_type


def _grants(sc: Scope, context: str | None, interaction: str, resource_type: str | None) -> bool:
    if sc.params:
        return False
    if context is not None and sc.context != context:
        return False
    needed = INTERACTION_LETTERS.get(interaction)
    if needed is None:
        return False
    if not _type_matches(sc.resource_type, resource_type):
        return False
    return all(ch in sc.permissions for ch in needed)


def permits(principal_scopes: frozenset[str], context: str | None, interaction: str,
            resource_type: str | None) -> bool:
    """Whether any scope (of ``context`` — ``patient``/``user``/``system`` — or of any context
    when ``None``) allows ``interaction`` on ``resource_type``. Unknown interactions: False."""
    return any(_grants(sc, context, interaction, resource_type)
               for sc in _parsed(principal_scopes))


def scope_contexts(principal_scopes: frozenset[str], interaction: str,
                   resource_type: str | None) -> frozenset[str]:
    """The contexts (subset of {"patient", "user", "system"}) whose scopes allow the
    interaction. The caller restricts ``patient`` access to the launch patient's compartment."""
    return frozenset(sc.context for sc in _parsed(principal_scopes)
                     if _grants(sc, None, interaction, resource_type))


def scope_filters(principal_scopes: frozenset[str], interaction: str,
                  resource_type: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """Granular (parameterised) scopes that would allow the interaction if their
    ``param=value`` restriction is applied: list of (context, params)."""
    out = []
    needed = INTERACTION_LETTERS.get(interaction, "")
    for sc in _parsed(principal_scopes):
        if sc.params and needed and _type_matches(sc.resource_type, resource_type) and all(
                ch in sc.permissions for ch in needed):
            out.append((sc.context, sc.params))
    return out


def covered(requested: str, granted: Iterable[str]) -> bool:
    """Whether the single scope ``requested`` is within ``granted`` (used for client allowed
    scopes and refresh down-scoping): equal, or a resource scope of the same context whose type
    is covered (``*`` covers all) and whose letters are a subset; a granted scope with params
    covers only the identical scope."""
    granted = list(granted)
    req = parse_scope(requested) if is_resource_scope_syntax(requested) else None
    if req is None:
        return requested in granted and not is_resource_scope_syntax(requested)
    for g in _parsed(granted):
        if g.context != req.context:
            continue
        if g.params and g != req:
            continue
        if g.resource_type != "*" and g.resource_type != req.resource_type:
            continue
        if all(ch in g.permissions for ch in req.permissions):
            return True
    return False


def all_covered(requested: Iterable[str], granted: Iterable[str]) -> bool:
    granted = list(granted)
    return all(covered(r, granted) for r in requested)
