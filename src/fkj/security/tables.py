"""Tables of the identity layer (SQLAlchemy Core), defined on the shared :data:`metadata`.

Times are integers, microseconds since the Unix epoch (UTC), as in :mod:`fkj.store.schema`.
Secrets (authorisation codes, refresh tokens, client secrets) are stored only as hashes.

The authorisation server must read these rows *before* it knows the tenant (a token request
names only a client or a code), so on PostgreSQL they should be granted with
``rls.grant_plain`` rather than the per-tenant row-level-security policy. Rows that belong to
a tenant still carry ``tenant`` (``oauth_client.tenant`` is NULL for clients of all tenants).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table, Text

from fkj.store.schema import metadata

#: token-signing keys of the built-in authorisation server (global, not per tenant)
signing_key = Table(
    "signing_key", metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    #: private JWK (JSON text)
    Column("private_jwk", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    #: when the key stopped signing (NULL = may still be current)
    Column("retired", BigInteger, nullable=True),
    #: after this the key is no longer published nor accepted (retired + max token lifetime)
    Column("not_after", BigInteger, nullable=True),
)

#: registered OAuth clients (SMART apps and backend services)
oauth_client = Table(
    "oauth_client", metadata,
    Column("client_id", String(128), primary_key=True),
    #: NULL = client usable for all tenants
    Column("tenant", String(4), nullable=True),
    Column("name", String(200), nullable=False),
    #: public | confidential | backend
    Column("client_type", String(16), nullable=False),
    #: JSON list of exact redirect URIs
    Column("redirect_uris", Text, nullable=False, default="[]"),
    #: scrypt hash "scrypt$salt_hex$hash_hex" (confidential symmetric clients)
    Column("secret_hash", Text, nullable=True),
    #: public JWKS (JSON text) for private_key_jwt
    Column("jwks", Text, nullable=True),
    #: space-separated scopes the client may be granted (v2 patterns, e.g. "patient/*.rs launch")
    Column("scopes", Text, nullable=False, default=""),
    Column("created", BigInteger, nullable=False),
)

#: EHR launch contexts created by the EHR before launching an app (``launch`` parameter)
launch_context = Table(
    "launch_context", metadata,
    Column("launch_id", String(64), primary_key=True),
    Column("tenant", String(4), nullable=False),
    Column("patient", String(64), nullable=True),
    Column("encounter", String(64), nullable=True),
    #: "Practitioner/123" of the EHR user, if known
    Column("user_ref", String(128), nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
)

#: authorisation codes (single use, 60 s)
auth_code = Table(
    "auth_code", metadata,
    #: sha256 hex of the code
    Column("code_hash", String(64), primary_key=True),
    Column("tenant", String(4), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    #: JSON: subject, kind, fhirUser, hpr, pid, acr, roles, unit, patient, encounter, nonce
    Column("grant", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    #: set when redeemed; a second redemption revokes what the first produced
    Column("used", BigInteger, nullable=True),
    Column("access_jti", String(64), nullable=True),
    Column("access_exp", BigInteger, nullable=True),
    Column("family_id", String(64), nullable=True),
)

#: refresh tokens; every use rotates (the old row is marked used, a new row in the same family)
refresh_token = Table(
    "refresh_token", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(64), nullable=False),
    Column("tenant", String(4), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    Column("grant", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("used", BigInteger, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    #: the access token issued together with this refresh token (revoked with the family)
    Column("access_jti", String(64), nullable=True),
    Column("access_exp", BigInteger, nullable=True),
    Index("ix_refresh_token_family", "family_id"),
)

#: revoked access-token ids (kept until the token would have expired anyway)
revoked_token = Table(
    "revoked_token", metadata,
    Column("jti", String(64), primary_key=True),
    Column("tenant", String(4), nullable=True),
    Column("revoked", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Index("ix_revoked_token_expires", "expires"),
)

#: client-assertion ``jti`` values already seen (replay protection), kept until their exp
client_assertion_jti = Table(
    "client_assertion_jti", metadata,
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires", BigInteger, nullable=False),
)
