"""A process-wide cache of decision contexts, so a request does not rebuild the caller's care
relations, blocks and grants from the store each time.

A context stays valid while

* the tenant's *policy epoch* is unchanged — a counter (table ``policy_epoch``) that every
  write of a resource type the decision depends on (:data:`EPOCH_TYPES`) increments inside
  its own transaction (``before_commit`` hook), as does opening an emergency grant and a bulk
  import; every request reads the counter (one primary-key lookup), so a change made through
  any server process is seen by the next request of every process;
* no period, grant or block it was built from starts or ends (``valid_until``, the earliest
  such boundary after the build);
* and at most :data:`MAX_AGE` seconds have passed (a safety net for changes made outside the
  platform, e.g. a tenant's configuration edited in the database).

Inside a write transaction the cache is not used: the decision there sees the transaction's
own, uncommitted writes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from sqlalchemy import text

#: resource types whose writes can change someone's access decision
EPOCH_TYPES = frozenset({"CareTeam", "EpisodeOfCare", "ServiceRequest", "Consent",
                         "PractitionerRole", "Patient"})
MAX_AGE = 60.0
MAX_ENTRIES = 4096
_KEY = "policy.context_cache"

_BUMP = ("INSERT INTO policy_epoch (tenant, epoch) VALUES (:t, 1) "
         "ON CONFLICT (tenant) DO UPDATE SET epoch = policy_epoch.epoch + 1")


def bump(conn, tenant: str) -> None:
    """Increment the tenant's policy epoch in the caller's transaction."""
    conn.execute(text(_BUMP), {"t": tenant})


def bump_on_write(repo, conn, operations) -> None:
    """``before_commit`` hook: a write of an :data:`EPOCH_TYPES` resource bumps the epoch."""
    if any(op.type in EPOCH_TYPES for op in operations):
        bump(conn, repo.tenant)


def announce_change(engine, tenant: str) -> None:
    """Bump the epoch in a transaction of its own: for loaders that write without the
    repository hooks (``fkj seed``, ``fkj import``)."""
    from fkj.store.backend import scope
    with scope(engine, tenant, write=True) as conn:
        bump(conn, tenant)


def epoch_companion():
    """(scalar sub-select, callback) for :func:`fkj.store.resources.get_current_with`: a
    read by id fetches the tenant's epoch with the resource, and the decision context of
    the request uses that value instead of asking again (:func:`request_epoch`). It is as
    fresh as the resource it comes with."""
    from sqlalchemy import bindparam, select

    from fkj.security.policy.tables import policy_epoch
    scalar = select(policy_epoch.c.epoch).where(
        policy_epoch.c.tenant == bindparam("tenant")).scalar_subquery()

    def remember(repo, value) -> None:
        repo._fkj_epoch_hint = int(value or 0)
    return scalar, remember


def request_epoch(repo) -> int:
    """The epoch for this request's decision: fetched with its read, else looked up."""
    hint = getattr(repo, "_fkj_epoch_hint", None)
    if hint is not None:
        return hint
    return read_epoch(repo.services.engine, repo.tenant)


def read_epoch(engine, tenant: str) -> int:
    """The tenant's current epoch: one primary-key lookup on a pooled DB-API connection
    (no SQLAlchemy transaction around it; this runs on every request)."""
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            conn = raw.driver_connection
            conn.autocommit = True  # one round trip: no BEGIN before, no ROLLBACK after
            try:
                row = conn.execute(_READ_PG, (tenant,)).fetchone()
            finally:
                conn.autocommit = False
        else:
            cur = raw.cursor()
            try:
                cur.execute(_READ_SQLITE, (tenant,))
                row = cur.fetchone()
            finally:
                cur.close()
    finally:
        raw.close()
    return int(row[0]) if row else 0


_READ_SQLITE = "SELECT epoch FROM policy_epoch WHERE tenant = ?"
_READ_PG = "SELECT epoch FROM policy_epoch WHERE tenant = %s"


class ContextCache:
    def __init__(self, max_entries: int = MAX_ENTRIES):
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.hits = self.misses = 0

    def get(self, key, epoch: int, now: float):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            e, valid_until, ctx = item
            if e != epoch or now >= valid_until:
                del self._items[key]
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return ctx

    def put(self, key, epoch: int, valid_until: float, ctx) -> None:
        with self._lock:
            self._items[key] = (epoch, valid_until, ctx)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def cache_of(services) -> ContextCache:
    c = services.extras.get(_KEY)
    if c is None:
        c = services.extras.setdefault(_KEY, ContextCache())
    return c


def principal_key(tenant: str, p) -> tuple:
    return (tenant, p.kind, p.subject, p.hpr_number, p.fhir_user, p.unit,
            tuple(sorted(p.roles or ())), getattr(p, "pid", None))


def now() -> float:
    return time.time()
