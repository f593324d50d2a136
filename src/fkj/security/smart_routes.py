"""Moved to :mod:`fkj.security.oauth`."""

from fkj.security.oauth import AuthSettings, auth_routes, create_launch

__all__ = ["AuthSettings", "auth_routes", "create_launch"]
