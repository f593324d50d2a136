"""Who may see and change a Subscription: its owner, and the tenant's administrators.

A Subscription holds the configuration of someone's integration (endpoint, filter criteria,
and — masked — the credentials of its endpoint); its notifications carry what its owner may
see. It is nobody else's business, so this is a rule of its own next to the need-to-know
policy (which treats non-patient resources as readable by all personnel), installed by
:func:`fkj.events.wiring.register_events` as four repository hooks:

* ``prepare`` — the writer becomes the owner: every stored version carries the tag
  ``http://fkj.no/fhir/CodeSystem/subscription-owner|<owner key>`` (set by the server; a tag
  of that system in the body is replaced), and its header values are masked
  (:mod:`fkj.events.secrets`);
* ``check_result`` — the Python form: a Subscription (read, vread, history entry, payload …)
  is visible when its tag names the caller, or the caller is a tenant admin; otherwise the
  answer is exactly that for a Subscription that does not exist (404 "… is not known");
* ``search_filters`` — the SQL form of the same rule on the indexed tag (search, ``_include``,
  ``_revinclude``, chains, ``_has``, conditional matching, totals, ``$export``);
* ``authorize`` — updates and deletes of someone else's Subscription: 404 as well.

The owner key is a hash of who the principal is, not of its token: personnel and citizens
by their kind and subject (one person, whatever app), clients by client id and subject.

**Tenant admins** (:func:`is_tenant_admin`): the platform's own ``system`` principal (the
``fkj`` command line, migrations, the event side's status write-back) and any principal
whose token carries the role ``systemforvalter`` for the tenant. They read every
Subscription of the tenant (headers masked like for everyone) and may change or delete it
(the writer becomes the owner). No SMART scope makes an admin: ``system/Subscription.rs``
is exactly the narrow client this rule keeps out.
"""

from __future__ import annotations

import functools
import hashlib

from sqlalchemy import or_, select

from fkj.errors import NotFound
from fkj.types import Principal

__all__ = [
    "ADMIN_ROLE",
    "OWNER_SYSTEM",
    "authorize",
    "check_result",
    "is_tenant_admin",
    "may_see",
    "owner_key",
    "owner_of",
    "search_filter",
]

OWNER_SYSTEM = "http://fkj.no/fhir/CodeSystem/subscription-owner"
#: the role (token claim) that makes personnel or a client an admin of its tenant's
#: Subscriptions
ADMIN_ROLE = "systemforvalter"


@functools.lru_cache(maxsize=4096)
def _key(kind: str, client_id: str | None, subject: str) -> str:
    who = (client_id or "") if kind in ("client", "system") else ""
    return hashlib.sha256(f"{kind}\x1f{who}\x1f{subject}".encode()).hexdigest()[:32]


def owner_key(p: Principal) -> str:
    """The key of the owner a principal is (stable across its tokens)."""
    return _key(p.kind, p.client_id, p.subject)


def owner_display(p: Principal) -> str | None:
    if p.kind in ("client", "system"):
        return f"{p.kind} {p.client_id or p.subject}"
    if p.kind == "practitioner" and p.hpr_number:
        return f"HPR {p.hpr_number}"
    return None  # citizens: no fødselsnummer in a tag


def is_tenant_admin(p: Principal, tenant: str) -> bool:
    if p.kind == "system":
        return True
    return ADMIN_ROLE in p.roles and p.tenant == tenant


def owner_of(res: dict) -> str | None:
    """The owner key a stored Subscription carries."""
    for t in (res.get("meta") or {}).get("tag") or ():
        if isinstance(t, dict) and t.get("system") == OWNER_SYSTEM:
            return t.get("code")
    return None


def is_owner(p: Principal, res: dict) -> bool:
    return owner_of(res) == owner_key(p)


def may_see(p: Principal, tenant: str, res: dict) -> bool:
    return is_tenant_admin(p, tenant) or is_owner(p, res)


def with_owner(res: dict, p: Principal) -> dict:
    """``res`` (a copy) with the owner tag of ``p`` instead of any tag of that system."""
    meta = dict(res.get("meta") or {})
    tags = [t for t in meta.get("tag") or () if not (isinstance(t, dict)
                                                      and t.get("system") == OWNER_SYSTEM)]
    tag = {"system": OWNER_SYSTEM, "code": owner_key(p)}
    if (display := owner_display(p)) is not None:
        tag["display"] = display
    meta["tag"] = [*tags, tag]
    return {**res, "meta": meta}


def _not_known(res: dict, interaction: str = "read") -> NotFound:
    """What the repository answers for a Subscription that does not exist."""
    if interaction == "vread":
        version = (res.get("meta") or {}).get("versionId")
        return NotFound(f"Subscription/{res.get('id')} has no version {version}")
    return NotFound(f"Subscription/{res.get('id')} is not known")


# ------------------------------------------------------------------------------ hooks
def check_result(repo, interaction: str, res: dict) -> None:
    if res.get("resourceType") != "Subscription":
        return
    if not may_see(repo.principal, repo.tenant, res):
        raise _not_known(res, interaction)


def authorize(repo, interaction: str, rtype: str | None, res: dict | None) -> None:
    if rtype != "Subscription" or interaction not in ("update-check", "delete-check") \
            or not isinstance(res, dict):
        return
    if not may_see(repo.principal, repo.tenant, res):
        raise _not_known(res)


def search_filter(repo, r, rtype: str | None):
    if rtype is not None and rtype != "Subscription":
        return None
    p = repo.principal
    if is_tenant_admin(p, repo.tenant):
        return None
    from fkj.store.schema import idx_token as tok
    mine = r.c.rid.in_(select(tok.c.rid).where(
        tok.c.tenant == repo.tenant, tok.c.type == "Subscription", tok.c.param == "_tag",
        tok.c.system == OWNER_SYSTEM, tok.c.code == owner_key(p)))
    return mine if rtype == "Subscription" else or_(r.c.type != "Subscription", mine)
