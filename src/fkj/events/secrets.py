"""``Subscription.channel.header`` values are write-only secrets.

A subscriber puts credentials for its endpoint there (``Authorization: Bearer …``). They are

* **never stored in the resource**: the version written to the store (and so every read,
  vread, search, history entry, include, Bundle entry, export, notification payload …)
  carries the header name with the value masked, ``Authorization: ***`` (:func:`redact`);
* **stored encrypted** in ``subscription_state.headers`` (AES-256-GCM, :class:`HeaderBox`),
  bound to the tenant and Subscription id (associated data), and decrypted only to send a
  notification.

An update that sends a header back masked (``Name: ***``) keeps the value stored for that
name — a client can read, change and write back its Subscription without knowing the secret
any more — but only when the writer is the subscription's owner (otherwise a new owner could
point the endpoint elsewhere and have the old owner's credential sent there).

Key: derived with HKDF-SHA256 from the private key of the platform's current token-signing
key (``signing_key`` table, :mod:`fkj.security.keys`), identified by its ``kid`` in every
ciphertext. After a rotation new secrets are sealed with the new key and old ones are still
opened with theirs (signing-key rows are retired, never deleted). Whoever holds the signing
keys can mint any token of the platform anyway; the headers are no weaker than that. See
docs/events.md ("Secrets in channel.header").

AES-GCM comes from ``cryptography`` (pyca; already the primitive library under ``joserfc``),
a well-kept, audited binding to OpenSSL.
"""

from __future__ import annotations

import base64
import copy
import os
import threading
import time

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

__all__ = ["MASK", "HeaderBox", "HeaderSecretError", "box_of", "mask_headers", "redact"]

MASK = "***"
PREFIX = "fkj-enc:v1:"
_INFO = b"fkj events: Subscription.channel.header v1"
#: seconds a looked-up current signing key is used before looking again (rotation)
CURRENT_TTL = 300.0


class HeaderSecretError(Exception):
    """A stored header secret cannot be opened (unknown key, tampered ciphertext)."""


def header_name(h: str) -> str:
    return h.partition(":")[0].strip()


def mask_headers(headers) -> list:
    """``["Authorization: Bearer x"]`` → ``["Authorization: ***"]`` (non-strings kept, so
    validation still sees them)."""
    return [f"{header_name(h)}: {MASK}" if isinstance(h, str) else h for h in headers]


def redact(resource: dict) -> dict:
    """The resource with every ``Subscription.channel.header`` value masked (a copy when
    something changed; other resources are returned as they are).

    >>> redact({"resourceType": "Subscription", "channel": {"header": ["A: b"]}})["channel"]
    {'header': ['A: ***']}
    """
    if not isinstance(resource, dict) or resource.get("resourceType") != "Subscription":
        return resource
    ch = resource.get("channel")
    if not isinstance(ch, dict) or not isinstance(ch.get("header"), list):
        return resource
    masked = mask_headers(ch["header"])
    if masked == ch["header"]:
        return resource
    out = copy.copy(resource)
    out["channel"] = {**ch, "header": masked}
    return out


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _aad(tenant: str, sid: str) -> bytes:
    return f"Subscription.channel.header|{tenant}|{sid}".encode()


def _derive(private_jwk: str) -> AESGCM:
    d = orjson.loads(private_jwk)["d"]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"fkj-events",
               info=_INFO).derive(_b64d(d))
    return AESGCM(key)


class HeaderBox:
    """Seals and opens the header list of one Subscription.

    >>> from sqlalchemy import create_engine
    >>> from sqlalchemy.pool import StaticPool
    >>> import fkj.security.tables
    >>> from fkj.store.schema import metadata
    >>> engine = create_engine("sqlite://", poolclass=StaticPool)
    >>> metadata.create_all(engine)
    >>> box = HeaderBox(engine)
    >>> with engine.begin() as conn:
    ...     sealed = box.seal(conn, "4601", "s1", ["Authorization: Bearer x"])
    >>> sealed.startswith(PREFIX), "Bearer" in sealed
    (True, False)
    >>> box.open("4601", "s1", sealed)
    ['Authorization: Bearer x']
    """

    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._keys: dict[str, AESGCM] = {}
        self._current: tuple[str, float] | None = None

    # ------------------------------------------------------------------ keys
    def _current_kid(self, conn) -> str:
        """The kid to seal with: the newest signing key that is not retired (created in
        ``conn``'s transaction if the platform has none yet)."""
        held = self._current
        if held is not None and time.monotonic() - held[1] < CURRENT_TTL \
                and held[0] in self._keys:
            return held[0]
        kid, jwk = current_signing_key(conn)
        with self._lock:
            self._keys.setdefault(kid, _derive(jwk))
            self._current = (kid, time.monotonic())
        return kid

    def _key(self, kid: str, conn=None) -> AESGCM:
        key = self._keys.get(kid)
        if key is not None:
            return key
        from fkj.security.tables import signing_key
        q = select(signing_key.c.private_jwk).where(signing_key.c.kid == kid)
        if conn is not None:
            row = conn.execute(q).first()
        else:
            with self.engine.connect() as c:
                row = c.execute(q).first()
        if row is None:
            raise HeaderSecretError(f"the key {kid!r} the headers were sealed with is gone")
        key = _derive(row.private_jwk)
        with self._lock:
            self._keys[kid] = key
        return key

    # ------------------------------------------------------------------ seal / open
    def seal(self, conn, tenant: str, sid: str, headers: list[str]) -> str:
        """The stored form of ``headers`` (``[]`` stays ``"[]"``: nothing to hide)."""
        if not headers:
            return "[]"
        kid = self._current_kid(conn)
        nonce = os.urandom(12)
        ct = self._keys[kid].encrypt(nonce, orjson.dumps(list(headers)), _aad(tenant, sid))
        return f"{PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + ct).decode().rstrip('=')}"

    def open(self, tenant: str, sid: str, stored: str | None, conn=None) -> list[str]:
        """The header lines ``stored`` seals (keys looked up on ``conn`` if given); raises
        :class:`HeaderSecretError` when they cannot be opened."""
        if not stored or stored == "[]":
            return []
        if not stored.startswith(PREFIX):
            raise HeaderSecretError("the stored headers are not sealed")
        kid, _, blob = stored[len(PREFIX):].rpartition(":")
        try:
            raw = _b64d(blob)
            plain = self._key(kid, conn).decrypt(raw[:12], raw[12:], _aad(tenant, sid))
        except HeaderSecretError:
            raise
        except Exception as e:  # noqa: BLE001 - InvalidTag, bad base64 …
            raise HeaderSecretError(f"the stored headers cannot be opened "
                                    f"({type(e).__name__})") from None
        out = orjson.loads(plain)
        return [h for h in out if isinstance(h, str)]


def current_signing_key(conn) -> tuple[str, str]:
    """(kid, private JWK) of the platform's current signing key, read in ``conn``'s
    transaction; one is created there when there is none (as
    :class:`fkj.security.keys.KeyRing` would on its first start)."""
    from sqlalchemy import insert

    from fkj.security.keys import _CURVES, DEFAULT_ALG, now_us
    from fkj.security.tables import signing_key as K

    row = conn.execute(select(K.c.kid, K.c.private_jwk).where(K.c.retired.is_(None))
                       .order_by(K.c.created.desc(), K.c.kid.desc()).limit(1)).first()
    if row is not None:
        return row.kid, row.private_jwk
    from joserfc.jwk import ECKey
    jwk = ECKey.generate_key(_CURVES[DEFAULT_ALG], auto_kid=True)
    text = orjson.dumps(jwk.as_dict(private=True)).decode()
    conn.execute(insert(K).values(kid=jwk.kid, alg=DEFAULT_ALG, private_jwk=text,
                                  created=now_us(), retired=None, not_after=None))
    return jwk.kid, text  # type: ignore[return-value]


def box_of(services) -> HeaderBox:
    """The process's :class:`HeaderBox` (one per set of services)."""
    box = services.extras.get("events.header_box")
    if box is None:
        box = services.extras.setdefault("events.header_box", HeaderBox(services.engine))
    return box
