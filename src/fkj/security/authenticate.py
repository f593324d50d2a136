"""The HTTP edge's entry to the security layer: bearer token → :class:`Principal`."""

from __future__ import annotations

from typing import Mapping

from fkj.errors import Forbidden, Unauthorized
from fkj.security.tokens import TokenService
from fkj.types import Principal

WWW_AUTHENTICATE = 'Bearer realm="fkj", error="invalid_token"'


def principal_from_request(headers: Mapping[str, str], tenant: str,
                           token_service: TokenService) -> Principal:
    """Verify the ``Authorization: Bearer`` token for a request to tenant ``tenant``.

    Missing or invalid token → :class:`Unauthorized` (with ``WWW-Authenticate``); a valid token
    of another tenant (or of none) → :class:`Forbidden`.
    """
    auth = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("Bearer token required", headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    try:
        principal = token_service.verify(token)
    except Unauthorized as e:
        raise Unauthorized(e.diagnostics,
                           headers={"WWW-Authenticate": WWW_AUTHENTICATE}) from None
    if principal.tenant != tenant:
        raise Forbidden("token is not valid for this tenant")
    return principal
