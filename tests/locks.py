"""A tenant's audit chain head held by another transaction, for tests of what waits on it
(the shipper, a write whose audit commits with it, a server killed while waiting)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fkj.security.audit.chain import _lock_head
from fkj.store.backend import scope


@contextmanager
def chain_head_held(engine, tenant: str) -> Iterator[Callable[[], None]]:
    """Lock ``tenant``'s chain head in a transaction of a thread of its own until the block
    ends or the callable it gives is called (which also waits for the transaction to end)."""
    release, locked = threading.Event(), threading.Event()

    def hold():
        with scope(engine, tenant, write=True) as conn:
            _lock_head(conn, tenant)
            locked.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()

    def let_go() -> None:
        release.set()
        holder.join(60)

    try:
        assert locked.wait(10), "the chain head was not locked"
        yield let_go
    finally:
        let_go()
