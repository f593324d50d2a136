"""Client authentication at the token, introspection and revocation endpoints.

Exactly one method per request (RFC 6749 §2.3):

* ``basic`` — ``client_secret_basic``: HTTP Basic with the form-urlencoded id and secret of a
  ``confidential`` client (RFC 6749 §2.3.1). ``client_secret_post`` (the secret in the form)
  is refused, as is a secret together with another method;
* ``private_key_jwt`` — a client assertion (RFC 7523) signed RS384 or ES384 with a key of the
  client's registered JWKS, audience the token endpoint, at most five minutes ahead, its
  ``jti`` used once (SMART Backend Services);
* ``none`` — a ``public`` client names itself with ``client_id`` (PKCE protects its code).

Every failure is ``invalid_client`` (401), except a request using more than one method
(``invalid_request``). Values decoded from a credential are checked for control characters
before they are looked up (see docs/security.md, "The edge").
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Final, Literal
from urllib.parse import unquote

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from fkj.edge.hygiene import has_control
from fkj.security.clients import Client, check_secret, get_client
from fkj.security.jose import (
    JoseError,
    check_header,
    public_key_from_jwk,
    split_compact,
    verify_signature,
)
from fkj.security.oauth._http import OAuthError
from fkj.security.oauth._settings import AuthSettings
from fkj.security.tables import client_assertion_jti
from fkj.store.backend import now_us, write_transaction

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS: Final = ("RS384", "ES384")

#: how a client authenticated: client_secret_basic, private_key_jwt, or not at all (public)
ClientAuthMethod = Literal["basic", "private_key_jwt", "none"]


def verify_assertion(s: AuthSettings, assertion: str, form_client_id: str | None) -> Client:
    """The client whose ``private_key_jwt`` ``assertion`` this is; raises :class:`OAuthError`."""
    try:
        header, unverified, _, _ = split_compact(assertion)
    except JoseError:
        raise OAuthError("invalid_client", "malformed client_assertion", 401) from None
    iss = unverified.get("iss")
    if not isinstance(iss, str) or has_control(iss):  # looked up before it is verified
        raise OAuthError("invalid_client", "malformed client_assertion", 401)
    client = get_client(s.engine, iss)
    if client is None or not client.jwks:
        raise OAuthError("invalid_client", "unknown client or no registered keys", 401)
    if form_client_id and form_client_id != client.client_id:
        raise OAuthError("invalid_client", "client_id does not match assertion", 401)
    try:
        header, claims, signing_input, sig = split_compact(assertion)
        alg = check_header(header, ASSERTION_ALGS)
        keys = [k for k in client.jwks.get("keys", []) if isinstance(k, dict)]
        kid = header.get("kid")
        if kid is not None:
            keys = [k for k in keys if k.get("kid") == kid]
        if not keys:
            raise JoseError("no matching key")
        verified = False
        for k in keys:
            try:
                verify_signature(alg, public_key_from_jwk(k), signing_input, sig)
                verified = True
                break
            except JoseError:
                continue
        if not verified:
            raise JoseError("bad signature")
    except JoseError as e:
        raise OAuthError("invalid_client", f"client_assertion: {e}", 401) from None
    now = time.time()
    exp, jti = claims.get("exp"), claims.get("jti")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise OAuthError("invalid_client", "iss and sub must be the client_id", 401)
    if s.token_url not in auds:
        raise OAuthError("invalid_client", "aud must be the token endpoint", 401)
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp <= now:
        raise OAuthError("invalid_client", "assertion expired or without exp", 401)
    if exp > now + 300 + 5:
        raise OAuthError("invalid_client", "assertion exp more than 5 minutes ahead", 401)
    for name in ("nbf", "iat"):
        v = claims.get(name)
        if v is not None and (not isinstance(v, (int, float)) or v > now + 30):
            raise OAuthError("invalid_client", f"assertion {name} in the future", 401)
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise OAuthError("invalid_client", "assertion needs a jti", 401)
    with write_transaction(s.engine) as conn:
        conn.execute(delete(client_assertion_jti).where(
            client_assertion_jti.c.expires < now_us()))
    try:
        with write_transaction(s.engine) as conn:
            conn.execute(insert(client_assertion_jti).values(
                client_id=client.client_id, jti=jti, expires=int(exp * 1_000_000)))
    except IntegrityError:
        raise OAuthError("invalid_client", "client_assertion jti replayed", 401) from None
    return client


def authenticate_client(s: AuthSettings, headers: Mapping[str, str], form: Mapping[str, str],
                        allow_public: bool = True) -> tuple[Client, ClientAuthMethod]:
    """The client of a request and how it authenticated (``headers`` with lower-case names);
    raises :class:`OAuthError`. ``allow_public=False``: a public client is refused."""
    auth = headers.get("authorization", "")
    form_client_id = form.get("client_id")
    methods = [bool(auth.lower().startswith("basic ")), "client_assertion" in form
               or "client_assertion_type" in form]
    if sum(methods) > 1 or "client_secret" in form:
        raise OAuthError("invalid_request", "use exactly one client authentication method")
    if methods[0]:
        try:
            raw = base64.b64decode(auth[6:].strip(), validate=True).decode()
            cid, secret = raw.split(":", 1)
            cid, secret = unquote(cid.replace("+", " "), errors="strict"), \
                unquote(secret.replace("+", " "), errors="strict")
            if has_control(cid) or has_control(secret):
                raise ValueError("control character")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
        client = get_client(s.engine, cid)
        if client is None or client.client_type != "confidential" or \
                not check_secret(client, secret):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        if form_client_id and form_client_id != cid:
            raise OAuthError("invalid_client", "client_id mismatch", 401)
        return client, "basic"
    if methods[1]:
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            raise OAuthError("invalid_client", "unsupported client_assertion_type", 401)
        return verify_assertion(s, assertion, form_client_id), "private_key_jwt"
    client = get_client(s.engine, form_client_id or "")
    if client is None:
        raise OAuthError("invalid_client", "unknown client", 401)
    if client.client_type != "public" or not allow_public:
        raise OAuthError("invalid_client", "client authentication required", 401)
    return client, "none"
