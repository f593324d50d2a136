"""Access tokens: issuing (built-in authorisation server) and verifying (ours and trusted
external issuers such as HelseID and ID-porten).

Claims of an access token issued here (JWT, ``typ: at+jwt``, ES256, header ``kid``)::

    claim                                        meaning
    iss                                          issuer (server base URL)
    sub                                          subject: "Practitioner/1", "Patient/abc", client id
    aud                                          FHIR base of the tenant ("{base}/fhir/{tenant}")
                                                 or the configured fixed audience
    exp, nbf, iat, jti                           RFC 7519
    scope                                        space-separated SMART scopes (v2)
    client_id                                    OAuth client
    tenant                                       kommunenummer (4 digits)
    fkj://claims/tenant                          same value, namespaced (must agree with tenant)
    fkj://claims/kind                            practitioner | citizen | client
    fkj://claims/role                            list of role codes (personnel)
    fkj://claims/unit                            unit (HER-id / Organization id)
    fkj://claims/purpose_of_use                  default TREAT
    helseid://claims/hpr/hpr_number              HPR number (personnel)
    helseid://claims/identity/pid                fødselsnummer of personnel (HelseID style)
    helseid://claims/client/claims/orgnr_parent  legal entity org number (personnel)
    pid                                          fødselsnummer of a citizen (ID-porten style)
    acr                                          idporten-loa-substantial | idporten-loa-high
    patient, encounter                           SMART launch context (resource ids)
    fhirUser                                     "Practitioner/1" / "Patient/abc"

Verification fails closed (:class:`fkj.errors.Unauthorized`) on: malformed token, ``alg`` not
in the issuer's asymmetric allow-list (``none``, ``HS*``…), unknown issuer, unknown ``kid``
(after one key reload / JWKS refetch), bad signature (any change of header, payload or
signature), expired (``exp`` ≤ now, no leeway), not yet valid (``nbf``/``iat`` more than
``leeway`` = 30 s in the future), wrong audience, wrong ``typ`` for our own tokens, revoked
``jti``, missing required claims, citizen without a valid ``acr``.

Revocation caching: revoked ``jti`` values live in the ``revoked_token`` table. Each process
keeps them in an in-memory dict; :meth:`TokenService.revoke` adds to it at once (so revocation
is immediate in the revoking process) and a verification refreshes it from the DB when it is
older than ``revocation_refresh`` (default 1.0 s) — incrementally (rows revoked since the last
refresh, with 5 s overlap) — so other processes stop accepting a revoked token within ~1 s and
the steady-state cost is one small query per second per process, not one per request.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import httpx
from joserfc import jwt as jose_jwt
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from fkj.edge.hygiene import has_control
from fkj.store.backend import write_transaction
from fkj.errors import Unauthorized
from fkj.security.jose import JoseError, public_key_from_jwk, split_compact, check_header, \
    verify_signature
from fkj.security.keys import KeyRing
from fkj.security.scopes import normalize_scopes
from fkj.security.tables import revoked_token
from fkj.types import Principal

CLAIM_TENANT = "fkj://claims/tenant"
CLAIM_KIND = "fkj://claims/kind"
CLAIM_ROLE = "fkj://claims/role"
CLAIM_UNIT = "fkj://claims/unit"
CLAIM_PURPOSE = "fkj://claims/purpose_of_use"
CLAIM_HPR = "helseid://claims/hpr/hpr_number"
CLAIM_HELSEID_PID = "helseid://claims/identity/pid"
CLAIM_ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
ACR_VALUES = ("idporten-loa-substantial", "idporten-loa-high")
ACCESS_TOKEN_TYP = "at+jwt"
LEEWAY = 30

PRINCIPAL_FIELDS = {"subject", "tenant", "hpr_number", "pid", "roles", "unit", "organisation",
                    "patient", "encounter", "client_id", "fhir_user", "scopes", "kind",
                    "purpose_of_use", "acr"}


def _unauthorized(msg: str) -> Unauthorized:
    return Unauthorized(msg, headers={"WWW-Authenticate":
                                      'Bearer realm="fkj", error="invalid_token"'})


@dataclass
class TrustedIssuer:
    """An external issuer whose tokens we accept (HelseID, ID-porten, another FKJ instance).

    ``claim_map`` maps external claim names to :class:`Principal` fields (``subject``,
    ``tenant``, ``hpr_number``, ``pid``, ``roles``, ``unit``, ``organisation``, ``patient``,
    ``encounter``, ``client_id``, ``fhir_user``, ``scopes``, ``kind``, ``acr``). ``sub``,
    ``scope`` and ``client_id`` map to subject/scopes/client_id unless mapped otherwise.
    """

    issuer: str
    jwks_url: str
    audience: str
    claim_map: dict[str, str] = field(default_factory=dict)
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    #: force the principal kind; otherwise practitioner if an HPR number, citizen if a pid,
    #: else client
    kind: str | None = None
    #: if set, the token's acr must be one of these (ID-porten: ACR_VALUES)
    required_acr: tuple[str, ...] | None = None
    #: minimum seconds between two JWKS fetches (unknown-kid refetch rate limit)
    min_refetch_interval: float = 10.0

    def __post_init__(self) -> None:
        bad = set(self.claim_map.values()) - PRINCIPAL_FIELDS
        if bad:
            raise ValueError(f"claim_map targets unknown Principal fields: {sorted(bad)}")
        if not set(self.algorithms) <= {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
                                        "PS256", "PS384", "PS512"}:
            raise ValueError("only asymmetric algorithms can be trusted")

    @classmethod
    def from_dict(cls, d: dict) -> "TrustedIssuer":
        d = dict(d)
        if "algorithms" in d:
            d["algorithms"] = tuple(d["algorithms"])
        if d.get("required_acr") is not None:
            d["required_acr"] = tuple(d["required_acr"])
        return cls(**d)


class _RemoteKeys:
    """JWKS of a trusted issuer, fetched over HTTP and cached; refetched on an unknown kid at
    most once per ``min_refetch_interval``."""

    def __init__(self, ti: TrustedIssuer, http_timeout: float = 5.0):
        self.ti = ti
        self.keys: dict[str, Any] = {}
        self.fetched_at: float | None = None
        self.fetches = 0
        self.timeout = http_timeout
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        with self._lock:
            self.fetched_at = time.monotonic()
            self.fetches += 1
            try:
                r = httpx.get(self.ti.jwks_url, timeout=self.timeout, follow_redirects=False)
                r.raise_for_status()
                data = r.json()
            except (httpx.HTTPError, ValueError):
                return  # keep the old keys; verification of unknown kids fails closed
            keys = {}
            for jwk in data.get("keys", []) if isinstance(data, dict) else []:
                if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                    continue
                kid = jwk.get("kid")
                try:
                    keys[kid] = public_key_from_jwk(jwk)
                except Exception:  # noqa: BLE001 - skip unusable keys
                    continue
            self.keys = keys

    def get(self, kid: str | None) -> Any:
        if kid in self.keys:
            return self.keys[kid]
        if self.fetched_at is None or \
                time.monotonic() - self.fetched_at >= self.ti.min_refetch_interval:
            self._fetch()
            return self.keys.get(kid)
        return None


class RevocationCache:
    def __init__(self, engine: Engine, refresh_interval: float = 1.0):
        self.engine = engine
        self.refresh_interval = refresh_interval
        self._revoked: dict[str, int] = {}
        self._refreshed = 0.0
        self._watermark = 0
        self.refreshes = 0

    def refresh(self) -> None:
        now = int(time.time() * 1e6)
        since = self._watermark - 5_000_000
        with self.engine.connect() as conn:
            rows = conn.execute(select(revoked_token.c.jti, revoked_token.c.expires,
                                       revoked_token.c.revoked).where(
                revoked_token.c.revoked >= since, revoked_token.c.expires > now)).all()
        for jti, exp, rev in rows:
            self._revoked[jti] = exp
            self._watermark = max(self._watermark, rev)
        if len(self._revoked) > 10000:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        self._refreshed = time.monotonic()
        self.refreshes += 1

    def is_revoked(self, jti: str) -> bool:
        if time.monotonic() - self._refreshed > self.refresh_interval:
            self.refresh()
        return jti in self._revoked

    def revoke(self, jti: str, expires_s: float, tenant: str | None = None) -> None:
        exp_us = int(expires_s * 1_000_000)
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(insert(revoked_token).values(
                    jti=jti, tenant=tenant, revoked=int(time.time() * 1e6), expires=exp_us))
        except IntegrityError:
            pass  # already revoked
        self._revoked[jti] = exp_us


class TokenService:
    def __init__(self, engine: Engine, keyring: KeyRing, issuer: str,
                 trusted_issuers: Iterable[TrustedIssuer] = (), *, audience: str | None = None,
                 access_token_lifetime: int = 3600, leeway: int = LEEWAY,
                 revocation_refresh: float = 1.0):
        if leeway > 30:
            raise ValueError("leeway must be at most 30 s")
        self.engine = engine
        self.keyring = keyring
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        #: (token, audience) → (principal, exp, nbf, jti) of tokens verified before
        self._verified: dict = {}
        self.access_token_lifetime = access_token_lifetime
        self.leeway = leeway
        self.trusted = {ti.issuer: ti for ti in trusted_issuers}
        if self.issuer in self.trusted:
            raise ValueError("our own issuer cannot also be a trusted external issuer")
        self._remote = {iss: _RemoteKeys(ti) for iss, ti in self.trusted.items()}
        self.revocations = RevocationCache(engine, revocation_refresh)

    # -- audiences -------------------------------------------------------------------------
    def fhir_base(self, tenant: str) -> str:
        return f"{self.issuer}/fhir/{tenant}"

    def audience_for(self, tenant: str) -> str:
        return self.audience or self.fhir_base(tenant)

    # -- signing ---------------------------------------------------------------------------
    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        key = self.keyring.current()
        header = {"alg": key.alg, "kid": key.kid, "typ": typ}
        return jose_jwt.encode(header, claims, key.jwk, algorithms=[key.alg])

    def issue(self, *, tenant: str, subject: str, scope: str | Iterable[str], client_id: str,
              kind: str = "client", audience: str | None = None, lifetime: int | None = None,
              hpr_number: str | None = None, pid: str | None = None,
              organisation: str | None = None, roles: Iterable[str] = (),
              unit: str | None = None, acr: str | None = None, patient: str | None = None,
              encounter: str | None = None, fhir_user: str | None = None,
              purpose_of_use: str = "TREAT", not_before: int | None = None,
              extra: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Sign an access token; returns (token, claims)."""
        if kind not in ("practitioner", "citizen", "client"):
            raise ValueError(f"bad kind {kind}")
        if kind == "citizen" and acr not in ACR_VALUES:
            raise ValueError("citizen tokens need acr idporten-loa-substantial|high")
        now = int(time.time())
        scopes = normalize_scopes(scope)
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject, "aud": audience or self.audience_for(tenant),
            "iat": now, "nbf": now if not_before is None else not_before,
            "exp": now + (lifetime or self.access_token_lifetime),
            "jti": secrets.token_urlsafe(18), "scope": " ".join(sorted(scopes)),
            "client_id": client_id, "tenant": tenant, CLAIM_TENANT: tenant, CLAIM_KIND: kind,
            CLAIM_PURPOSE: purpose_of_use,
        }
        if kind == "practitioner":
            if hpr_number:
                claims[CLAIM_HPR] = hpr_number
            if pid:
                claims[CLAIM_HELSEID_PID] = pid
            if organisation:
                claims[CLAIM_ORGNR_PARENT] = organisation
            if roles:
                claims[CLAIM_ROLE] = sorted(roles)
            if unit:
                claims[CLAIM_UNIT] = unit
        elif kind == "citizen":
            if pid:
                claims["pid"] = pid
            claims["acr"] = acr
        for name, value in (("patient", patient), ("encounter", encounter),
                            ("fhirUser", fhir_user)):
            if value:
                claims[name] = value
        if extra:
            claims.update(extra)
        return self.sign(claims, ACCESS_TOKEN_TYP), claims

    def issue_access_token(self, **kwargs: Any) -> str:
        """Keyword arguments as :meth:`issue`; returns only the JWT."""
        return self.issue(**kwargs)[0]

    def issue_id_token(self, *, subject: str, client_id: str, fhir_user: str | None,
                       nonce: str | None = None, lifetime: int = 300,
                       extra: dict[str, Any] | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": subject, "aud": client_id,
                                  "iat": now, "exp": now + lifetime, "auth_time": now}
        if fhir_user:
            claims["fhirUser"] = fhir_user
        if nonce:
            claims["nonce"] = nonce
        if extra:
            claims.update(extra)
        return self.sign(claims, "JWT")

    # -- internal short-lived signed blobs (e.g. pending authorisation requests) -------------
    def seal(self, data: dict[str, Any], purpose: str, lifetime: int = 600) -> str:
        now = int(time.time())
        return self.sign({"iss": self.issuer, "aud": f"fkj:{purpose}", "iat": now,
                          "exp": now + lifetime, "data": data}, f"fkj-{purpose}+jwt")

    def unseal(self, token: str, purpose: str) -> dict[str, Any]:
        claims = self._verify_local(token, f"fkj:{purpose}", f"fkj-{purpose}+jwt",
                                    check_revoked=False)
        data = claims.get("data")
        if not isinstance(data, dict):
            raise _unauthorized("malformed sealed data")
        return data

    # -- verification ----------------------------------------------------------------------
    def _check_times(self, claims: dict[str, Any]) -> None:
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise _unauthorized("token has no valid exp")
        if now >= exp:
            raise _unauthorized("token expired")
        for name in ("nbf", "iat"):
            v = claims.get(name)
            if v is None:
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise _unauthorized(f"bad {name}")
            if v > now + self.leeway:
                raise _unauthorized("token not yet valid")

    @staticmethod
    def _check_audience(claims: dict[str, Any], expected: Iterable[str]) -> None:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(isinstance(a, str) and a in expected for a in auds):
            raise _unauthorized("wrong audience")

    def _verify_local(self, token: str, audience: str | Iterable[str] | None, typ: str,
                      check_revoked: bool = True) -> dict[str, Any]:
        try:
            header, claims, signing_input, sig = split_compact(token)
            alg = check_header(header, (self.keyring.alg,))
            if claims.get("iss") != self.issuer:
                raise JoseError("wrong issuer")
            kid = header.get("kid")
            key = self.keyring.get(kid) if isinstance(kid, str) else None
            if key is None or key.alg != alg:
                raise JoseError("unknown kid")
            verify_signature(alg, key.public_key, signing_input, sig)
        except JoseError as e:
            raise _unauthorized(f"invalid token: {e}") from None
        if header.get("typ") != typ:
            raise _unauthorized("wrong token type")
        self._check_times(claims)
        if audience is None:
            tenant = claims.get("tenant")
            if not isinstance(tenant, str):
                raise _unauthorized("token has no tenant")
            expected: list[str] = [self.audience_for(tenant)]
        else:
            expected = [audience] if isinstance(audience, str) else list(audience)
        self._check_audience(claims, expected)
        if check_revoked:
            jti = claims.get("jti")
            if not isinstance(jti, str) or not jti:
                raise _unauthorized("token has no jti")
            if self.revocations.is_revoked(jti):
                raise _unauthorized("token revoked")
        return claims

    def verify_claims(self, token: str, expected_audience: str | Iterable[str] | None = None
                      ) -> tuple[dict[str, Any], TrustedIssuer | None]:
        """Verify and return (claims, trusted issuer or None for our own tokens).

        ``expected_audience`` None means: for our tokens, the configured fixed audience or the
        FHIR base of the token's own tenant (the caller then compares tenants); for trusted
        issuers always the issuer's configured audience."""
        try:
            _, unverified, _, _ = split_compact(token)
        except JoseError as e:
            raise _unauthorized(f"invalid token: {e}") from None
        iss = unverified.get("iss")
        if iss == self.issuer:
            return self._verify_local(token, expected_audience, ACCESS_TOKEN_TYP), None
        ti = self.trusted.get(iss) if isinstance(iss, str) else None
        if ti is None:
            raise _unauthorized("unknown issuer")
        remote = self._remote[iss]
        try:
            header, claims, signing_input, sig = split_compact(token)
            alg = check_header(header, ti.algorithms)
            kid = header.get("kid")
            key = remote.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise JoseError("unknown kid")
            verify_signature(alg, key, signing_input, sig)
        except JoseError as e:
            raise _unauthorized(f"invalid token: {e}") from None
        self._check_times(claims)
        self._check_audience(claims, [ti.audience])
        jti = claims.get("jti")
        if isinstance(jti, str) and self.revocations.is_revoked(jti):
            raise _unauthorized("token revoked")
        return claims, ti

    def verify(self, token: str, expected_audience: str | Iterable[str] | None = None
               ) -> Principal:
        """Verify a bearer token. A token verified before is served from a small cache, but
        its expiry, not-before and revocation are checked again on every use, so the cache
        changes the cost (µs instead of a signature check), never the outcome."""
        key = (token, expected_audience if isinstance(expected_audience, (str, type(None)))
               else tuple(expected_audience))
        hit = self._verified.get(key)
        if hit is not None:
            principal, exp, nbf, jti = hit
            now = time.time()
            if (now < exp and now >= nbf - self.leeway
                    and not (jti and self.revocations.is_revoked(jti))):
                return principal
            self._verified.pop(key, None)
        claims, ti = self.verify_claims(token, expected_audience)
        principal = (self._principal_local(claims) if ti is None
                     else self._principal_remote(claims, ti))
        if len(self._verified) >= 10_000:
            self._verified.clear()
        exp = claims.get("exp")
        nbf = max((v for v in (claims.get("nbf"), claims.get("iat"))
                   if isinstance(v, (int, float))), default=0)
        if isinstance(exp, (int, float)) and isinstance(nbf, (int, float)):
            self._verified[key] = (principal, float(exp), float(nbf), claims.get("jti"))
        return principal

    # -- principals ------------------------------------------------------------------------
    @staticmethod
    def _str(claims: dict, name: str) -> str | None:
        v = claims.get(name)
        if v is None:
            return None
        if not isinstance(v, str):
            raise _unauthorized(f"claim {name} must be a string")
        if has_control(v):  # it would reach the audit log (and PostgreSQL refuses U+0000)
            raise _unauthorized(f"claim {name} holds a control character")
        return v

    def _principal_local(self, c: dict[str, Any]) -> Principal:
        s = self._str
        kind = c.get(CLAIM_KIND)
        tenant = s(c, "tenant")
        if kind not in ("practitioner", "citizen", "client") or not tenant:
            raise _unauthorized("token lacks kind or tenant")
        if c.get(CLAIM_TENANT, tenant) != tenant:
            raise _unauthorized("conflicting tenant claims")
        sub = s(c, "sub")
        if not sub:
            raise _unauthorized("token has no sub")
        if kind == "citizen" and c.get("acr") not in ACR_VALUES:
            raise _unauthorized("citizen token without a valid acr")
        roles = c.get(CLAIM_ROLE) or []
        if not isinstance(roles, list) or not all(isinstance(r, str) and not has_control(r)
                                                  for r in roles):
            raise _unauthorized("bad role claim")
        return Principal(
            kind=kind, subject=sub, tenant=tenant,
            scopes=normalize_scopes(s(c, "scope") or ""),
            hpr_number=s(c, CLAIM_HPR) if kind == "practitioner" else None,
            pid=s(c, CLAIM_HELSEID_PID) if kind == "practitioner" else
            s(c, "pid") if kind == "citizen" else None,
            roles=frozenset(roles), unit=s(c, CLAIM_UNIT),
            organisation=s(c, CLAIM_ORGNR_PARENT), patient=s(c, "patient"),
            encounter=s(c, "encounter"), client_id=s(c, "client_id"),
            purpose_of_use=s(c, CLAIM_PURPOSE) or "TREAT", token_id=s(c, "jti"),
            fhir_user=s(c, "fhirUser"))

    def _principal_remote(self, c: dict[str, Any], ti: TrustedIssuer) -> Principal:
        mapping = {"sub": "subject", "scope": "scopes", "client_id": "client_id"}
        mapping.update(ti.claim_map)
        v: dict[str, Any] = {}
        for ext, fieldname in mapping.items():
            if ext in c and c[ext] is not None:
                v[fieldname] = c[ext]
        if ti.required_acr is not None and v.get("acr", c.get("acr")) not in ti.required_acr:
            raise _unauthorized("insufficient acr")
        for name in ("subject", "tenant", "hpr_number", "pid", "unit", "organisation",
                     "patient", "encounter", "client_id", "fhir_user", "kind",
                     "purpose_of_use", "acr"):
            if name in v and not isinstance(v[name], str):
                if isinstance(v[name], (int,)) and not isinstance(v[name], bool):
                    v[name] = str(v[name])  # e.g. numeric HPR numbers
                else:
                    raise _unauthorized(f"claim for {name} must be a string")
            if name in v and has_control(v[name]):
                raise _unauthorized(f"claim for {name} holds a control character")
        if not v.get("subject"):
            raise _unauthorized("token has no sub")
        roles = v.get("roles", [])
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list) or not all(isinstance(r, str) and not has_control(r)
                                                  for r in roles):
            raise _unauthorized("bad roles claim")
        scopes = v.get("scopes", "")
        if isinstance(scopes, list):
            scopes = " ".join(x for x in scopes if isinstance(x, str))
        if not isinstance(scopes, str) or has_control(scopes):
            raise _unauthorized("bad scope claim")
        kind = ti.kind or v.get("kind") or (
            "practitioner" if v.get("hpr_number") else "citizen" if v.get("pid") else "client")
        if kind not in ("practitioner", "citizen", "client"):
            raise _unauthorized("bad kind")
        return Principal(
            kind=kind, subject=v["subject"], tenant=v.get("tenant"),
            scopes=normalize_scopes(scopes), hpr_number=v.get("hpr_number"), pid=v.get("pid"),
            roles=frozenset(roles), unit=v.get("unit"), organisation=v.get("organisation"),
            patient=v.get("patient"), encounter=v.get("encounter"),
            client_id=v.get("client_id"), purpose_of_use=v.get("purpose_of_use") or "TREAT",
            token_id=c.get("jti") if isinstance(c.get("jti"), str)
            and not has_control(c["jti"]) else None,
            fhir_user=v.get("fhir_user"))

    # -- revocation ------------------------------------------------------------------------
    def revoke(self, jti: str, expires: float, tenant: str | None = None) -> None:
        """Revoke an access token by jti (``expires``: its exp, seconds)."""
        self.revocations.revoke(jti, expires, tenant)


def load_trusted_issuers(text: str) -> list[TrustedIssuer]:
    """Parse ``Settings.trusted_issuers`` (a JSON list of TrustedIssuer dicts)."""
    return [TrustedIssuer.from_dict(d) for d in json.loads(text or "[]")]
