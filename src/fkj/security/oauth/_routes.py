"""The routes of the authorisation server, assembled from its parts."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from fkj.security.oauth._authorize import authorize_route
from fkj.security.oauth._demo_login import DemoLogin
from fkj.security.oauth._discovery import discovery_routes
from fkj.security.oauth._grants import token_route
from fkj.security.oauth._introspection import introspect_route
from fkj.security.oauth._login import LoginMethod
from fkj.security.oauth._revocation import revoke_route
from fkj.security.oauth._settings import AuthSettings


def auth_routes(settings: AuthSettings | Any) -> list[Route]:
    """Routes of the authorisation server. ``settings``: an :class:`AuthSettings`, or any
    object with ``engine``, ``base_url``, ``demo`` and optionally ``directory`` and
    ``trusted_issuers`` (JSON text or a list of TrustedIssuer)."""
    s = AuthSettings.coerce(settings)
    demo = DemoLogin(s)

    def login_method() -> LoginMethod | None:
        """The configured login; without one the demo login in demo mode, else none."""
        if s.login is not None:
            return s.login
        return demo if s.demo else None

    upstream = s.login.routes() if s.login is not None else []
    return [
        *discovery_routes(s),
        authorize_route(s, login_method),
        *demo.routes(),  # /auth/login answers 404 outside demo mode
        *upstream,
        token_route(s),
        introspect_route(s),
        revoke_route(s),
    ]
