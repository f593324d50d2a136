"""Signing keys of the built-in authorisation server.

Keys are ES256 (P-256) JWKs kept in the ``signing_key`` table, so every process of a
deployment signs and verifies with the same set. :class:`KeyRing` caches the decoded keys in
memory; the DB is read

* at start-up,
* lazily every ``refresh_interval`` seconds (default 60) to pick up a rotation made by another
  process, and
* when a token names a ``kid`` not known locally — one reload per unknown kid (a kid that was
  not found is not looked up again for 60 s) and globally at most one reload per
  ``min_reload_interval`` (default 0.2 s), so a flood of tokens with made-up kids cannot turn
  into a DB query per request.

:meth:`KeyRing.rotate` makes a new key current; the old key is marked retired and stays
published in the JWKS (and accepted) until ``not_after`` = retirement + ``max_token_lifetime``,
i.e. until every token it signed has expired.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy import Engine, insert, or_, select, update

from fkj.store.backend import write_transaction
from fkj.security.tables import signing_key

log = logging.getLogger(__name__)
DEFAULT_ALG = "ES256"
_CURVES = {"ES256": "P-256", "ES384": "P-384"}


def now_us() -> int:
    return int(time.time() * 1_000_000)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    jwk: ECKey  # private key
    public_jwk: dict[str, Any]
    #: cryptography public key object (used by the fast verifier)
    public_key: Any
    created: int
    retired: int | None
    not_after: int | None


def _row_to_key(row) -> SigningKey:
    jwk = ECKey.import_key(json.loads(row.private_jwk))
    pub = jwk.as_dict(private=False)
    pub.update({"kid": row.kid, "alg": row.alg, "use": "sig"})
    return SigningKey(row.kid, row.alg, jwk, pub, jwk.public_key, row.created, row.retired,
                      row.not_after)


class KeyRing:
    def __init__(self, engine: Engine, *, alg: str = DEFAULT_ALG,
                 max_token_lifetime: int = 3600, refresh_interval: float = 60.0,
                 min_reload_interval: float = 0.2):
        if alg not in _CURVES:
            raise ValueError(f"unsupported signing algorithm {alg}")
        self.engine = engine
        self.alg = alg
        self.max_token_lifetime = max_token_lifetime
        self.refresh_interval = refresh_interval
        self.min_reload_interval = min_reload_interval
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._current: SigningKey | None = None
        self._loaded_at = 0.0
        self.reloads = 0
        self._missing: dict[str, float] = {}
        try:
            self.reload()
            if self._current is None:  # first start: every process then shares this key
                self._create()
                self.reload()
        except Exception as e:
            from fkj.store.faults import fault_for
            if fault_for(e) is None:
                raise
            # the database cannot be reached yet: the server starts anyway (and answers 503
            # until it can); the keys are loaded at their first use
            log.warning("signing keys not loaded: %s", fault_for(e).diagnostics)

    # -- loading -------------------------------------------------------------------------
    def reload(self) -> None:
        now = now_us()
        with self.engine.connect() as conn:
            rows = conn.execute(select(signing_key).where(
                or_(signing_key.c.not_after.is_(None), signing_key.c.not_after > now))).all()
        keys = {r.kid: _row_to_key(r) for r in rows}
        active = [k for k in keys.values() if k.retired is None and k.alg == self.alg]
        current = max(active, key=lambda k: (k.created, k.kid)) if active else None
        with self._lock:
            self._keys = keys
            self._current = current
            self._loaded_at = time.monotonic()
            self.reloads += 1

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh_interval:
            self.reload()

    # -- public API ----------------------------------------------------------------------
    def current(self) -> SigningKey:
        """The key new tokens are signed with (created on first use)."""
        self._maybe_refresh()
        if self._current is None:
            self._create()
            self.reload()
        assert self._current is not None
        return self._current

    def _create(self) -> str:
        jwk = ECKey.generate_key(_CURVES[self.alg], auto_kid=True)
        kid = jwk.kid
        assert kid
        with write_transaction(self.engine) as conn:
            conn.execute(insert(signing_key).values(
                kid=kid, alg=self.alg, private_jwk=json.dumps(jwk.as_dict(private=True)),
                created=now_us(), retired=None, not_after=None))
        return kid

    def rotate(self) -> str:
        """Create a new current key; retire the others (still published until their tokens
        have expired). Returns the new kid."""
        now = now_us()
        kid = self._create()
        with write_transaction(self.engine) as conn:
            conn.execute(update(signing_key).where(
                signing_key.c.kid != kid, signing_key.c.retired.is_(None)).values(
                retired=now, not_after=now + self.max_token_lifetime * 1_000_000 + 60_000_000))
        self.reload()
        return kid

    def get(self, kid: str) -> SigningKey | None:
        """A verification key by kid; an unknown kid triggers at most one DB reload per
        ``min_reload_interval``."""
        key = self._keys.get(kid)
        if key is not None:
            if key.not_after is not None and key.not_after <= now_us():
                return None
            return key
        t = time.monotonic()
        if kid in self._missing and t - self._missing[kid] < 60:
            return None  # already looked this kid up in the DB recently
        if t - self._loaded_at < self.min_reload_interval:
            return None  # global rate limit against floods of made-up kids
        self.reload()
        key = self._keys.get(kid)
        if key is None:
            if len(self._missing) > 1024:
                self._missing.clear()
            self._missing[kid] = t
        return key

    def jwks(self) -> dict[str, Any]:
        """The public key set (current and retired-but-unexpired keys)."""
        self._maybe_refresh()
        now = now_us()
        return {"keys": [k.public_jwk for k in sorted(self._keys.values(),
                                                      key=lambda k: -k.created)
                         if k.not_after is None or k.not_after > now]}
