"""Discovery: what a SMART app or an OpenID client reads before it talks to the server.

``GET /fhir/{tenant}/.well-known/smart-configuration`` (SMART App Launch v2),
``GET /.well-known/openid-configuration`` and ``GET /auth/jwks``: public documents, the same
for every caller, cacheable for five minutes (:data:`._http.DISCOVERY_CACHE`).
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fkj.security.oauth._client_auth import ASSERTION_ALGS
from fkj.security.oauth._common import TENANT_RE
from fkj.security.oauth._http import DISCOVERY_CACHE
from fkj.security.oauth._settings import AuthSettings

CAPABILITIES: Final = [
    "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter",
    "context-standalone-patient", "permission-patient", "permission-user", "permission-v1",
    "permission-v2", "permission-offline", "sso-openid-connect", "authorize-post",
]
SCOPES_SUPPORTED: Final = [
    "openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
    "offline_access", "online_access", "patient/*.cruds", "patient/*.rs", "user/*.cruds",
    "user/*.rs", "system/*.cruds", "system/*.rs",
]


def endpoints(s: AuthSettings) -> dict[str, Any]:
    """What both discovery documents say: the endpoints and what they support."""
    b = s.base_url
    return {
        "issuer": b,
        "jwks_uri": f"{b}/auth/jwks",
        "authorization_endpoint": f"{b}/auth/authorize",
        "token_endpoint": s.token_url,
        "introspection_endpoint": f"{b}/auth/introspect",
        "revocation_endpoint": f"{b}/auth/revoke",
        "grant_types_supported": ["authorization_code", "refresh_token",
                                  "client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }


def smart_configuration(s: AuthSettings) -> dict[str, Any]:
    """The SMART configuration (the same for every tenant)."""
    doc = endpoints(s)
    doc["capabilities"] = CAPABILITIES
    return doc


def openid_configuration(s: AuthSettings) -> dict[str, Any]:
    """The OpenID provider metadata."""
    doc = endpoints(s)
    doc.update({
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [s.signing_keys.alg],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
    })
    return doc


def discovery_routes(s: AuthSettings) -> list[Route]:
    """The three discovery routes."""

    async def smart(request: Request) -> Response:
        if not TENANT_RE.match(request.path_params["tenant"]):
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(smart_configuration(s), headers=DISCOVERY_CACHE)

    async def openid(request: Request) -> Response:
        return JSONResponse(openid_configuration(s), headers=DISCOVERY_CACHE)

    async def jwks(request: Request) -> Response:
        return JSONResponse(s.signing_keys.jwks(), headers=DISCOVERY_CACHE)

    return [
        Route("/fhir/{tenant}/.well-known/smart-configuration", smart, methods=["GET"]),
        Route("/.well-known/openid-configuration", openid, methods=["GET"]),
        Route("/auth/jwks", jwks, methods=["GET"]),
    ]
