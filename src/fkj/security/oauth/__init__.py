"""The built-in OAuth 2 / SMART App Launch v2 / SMART Backend Services authorisation server.
"""

from fkj.security.oauth._http import OAuthError
from fkj.security.oauth._settings import AuthSettings, Directory

__all__ = ["AuthSettings", "Directory", "OAuthError"]
