"""The built-in authorisation server: OAuth 2, SMART App Launch v2 and SMART Backend
Services, mounted by the app under its root (``auth_routes(settings)``)::

    GET  /fhir/{tenant}/.well-known/smart-configuration   _discovery
    GET  /.well-known/openid-configuration                _discovery
    GET  /auth/jwks                                       _discovery
    GET|POST /auth/authorize   code + PKCE S256, launch   _authorize (→ _launch, _login)
    GET|POST /auth/login       demo login, patient picker _demo_login (404 unless demo)
    POST /auth/token           three grants               _grants (→ _client_auth, _issue)
    POST /auth/introspect      RFC 7662                   _introspection
    POST /auth/revoke          RFC 7009                   _revocation

The seam for upstream login (HelseID, ID-porten) is :class:`LoginMethod` (``_login``): set
``AuthSettings.login``. See docs/security.md, "Where things live".
"""

from fkj.security.oauth._client_auth import ClientAuthMethod, authenticate_client
from fkj.security.oauth._demo_login import DemoLogin
from fkj.security.oauth._http import OAuthError
from fkj.security.oauth._launch import create_launch
from fkj.security.oauth._login import (
    AuthorizationRequest,
    LoginMethod,
    LoginRefused,
    Person,
    complete_login,
    launch_patient,
    needs_patient_choice,
    unseal_request,
)
from fkj.security.oauth._routes import auth_routes
from fkj.security.oauth._settings import AuthSettings, Directory
from fkj.security.oauth._types import Grant, LaunchContext, PendingAuthorization

__all__ = [
    "AuthSettings",
    "AuthorizationRequest",
    "ClientAuthMethod",
    "DemoLogin",
    "Directory",
    "Grant",
    "LaunchContext",
    "LoginMethod",
    "LoginRefused",
    "OAuthError",
    "PendingAuthorization",
    "Person",
    "auth_routes",
    "authenticate_client",
    "complete_login",
    "create_launch",
    "launch_patient",
    "needs_patient_choice",
    "unseal_request",
]
