"""Connects the optional layers (security, policy, audit, events, views) to the core app.

Each layer registers hooks and routes here, so the core never imports them and they can be
switched on and off in one place.
"""

from __future__ import annotations

from fkj.app import FkjApp


def wire(fkj: FkjApp) -> FkjApp:
    from fkj.search.registry import default_registry

    fkj.services.extras.setdefault("registry", default_registry())
    return fkj
