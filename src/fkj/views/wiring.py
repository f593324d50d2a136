"""Wires the compiled views (``Patient/$oversikt``) into an app: ``register_views(fkj)``.

Idempotent: a second call on the same app changes nothing. The operation itself is listed
in ``fkj.fhir.operations.OPERATIONS`` ("oversikt"); this registers the per-tenant source
configuration and the worker pool the sources are called on.
"""

from __future__ import annotations

from fkj.views.registry import ViewsRegistry

EXTRA_KEY = "views"


def register_views(fkj) -> ViewsRegistry:
    extras = fkj.services.extras
    reg = extras.get(EXTRA_KEY)
    if reg is None:
        reg = extras[EXTRA_KEY] = ViewsRegistry(fkj.services.engine)
    from fkj.fhir.operations import OPERATIONS
    OPERATIONS.setdefault("oversikt", "oversikt")
    import fkj.fhir.operations.oversikt  # imported now, not in the first request
    import fkj.views.overview
    return reg


def views_registry(services) -> ViewsRegistry:
    """The registry of an app (created on first use when register_views was not called)."""
    reg = services.extras.get(EXTRA_KEY)
    if reg is None:
        reg = services.extras.setdefault(EXTRA_KEY, ViewsRegistry(services.engine))
    return reg
