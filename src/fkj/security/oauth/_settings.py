"""The settings of the authorisation server: one object handed to every part of the package."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from fkj.security.keys import KeyRing
from fkj.security.oauth._common import TENANT_RE
from fkj.security.tokens import TokenService, TrustedIssuer, load_trusted_issuers

if TYPE_CHECKING:
    from fkj.security.oauth._login import LoginMethod

#: tenant -> the people offered by the demo login, each a mapping with ``kind``
#: (practitioner|citizen), ``id`` (``Practitioner/…``, ``Patient/…``), ``name`` and optionally
#: ``hpr_number``, ``pid``, ``roles``, ``unit``, ``organisation``, ``acr``
Directory = Callable[[str], Sequence[Mapping[str, Any]]]


def no_people(tenant: str) -> Sequence[Mapping[str, Any]]:
    """The default directory: nobody."""
    return []


@dataclass
class AuthSettings:
    """Everything the authorisation server needs; the key ring and the token service are made
    from the rest when not given."""

    engine: Engine
    base_url: str
    demo: bool = False
    directory: Directory = field(default=no_people)
    trusted_issuers: list[TrustedIssuer] = field(default_factory=list)
    #: fixed audience for all tenants (default: the tenant's FHIR base)
    audience: str | None = None
    access_token_lifetime: int = 3600
    offline_refresh_lifetime: int = 30 * 24 * 3600
    online_refresh_lifetime: int = 8 * 3600
    code_lifetime: int = 60
    launch_lifetime: int = 300
    smart_style_url: str | None = None
    keyring: KeyRing | None = None
    token_service: TokenService | None = None
    #: how people log in (:class:`fkj.security.oauth.LoginMethod`, e.g. an upstream OpenID
    #: provider); None: the demo login in demo mode, otherwise none (authorize answers 501)
    login: LoginMethod | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.keyring is None:
            self.keyring = (self.token_service.keyring if self.token_service else
                            KeyRing(self.engine, max_token_lifetime=self.access_token_lifetime))
        if self.token_service is None:
            self.token_service = TokenService(
                self.engine, self.keyring, self.base_url, self.trusted_issuers,
                audience=self.audience, access_token_lifetime=self.access_token_lifetime)

    @classmethod
    def from_settings(cls, settings: Any, engine: Engine, directory: Directory | None = None,
                      **kw: Any) -> AuthSettings:
        """From :class:`fkj.config.Settings` (base_url, demo, trusted_issuers JSON)."""
        return cls(engine=engine, base_url=settings.base_url, demo=settings.demo,
                   directory=directory or getattr(settings, "directory", None) or no_people,
                   trusted_issuers=load_trusted_issuers(getattr(settings, "trusted_issuers",
                                                                "[]")), **kw)

    @classmethod
    def coerce(cls, settings: AuthSettings | Any) -> AuthSettings:
        """``settings`` itself, or an :class:`AuthSettings` from any object with ``engine``,
        ``base_url``, ``demo`` and optionally ``directory`` and ``trusted_issuers`` (JSON text
        or a list of :class:`TrustedIssuer`)."""
        if isinstance(settings, AuthSettings):
            return settings
        trusted = getattr(settings, "trusted_issuers", None) or []
        if isinstance(trusted, str):
            trusted = load_trusted_issuers(trusted)
        return cls(engine=settings.engine, base_url=settings.base_url,
                   demo=bool(settings.demo), trusted_issuers=list(trusted),
                   directory=getattr(settings, "directory", None) or no_people)

    @property
    def tokens(self) -> TokenService:
        """The token service (always set once the settings exist)."""
        assert self.token_service is not None  # set by __post_init__
        return self.token_service

    @property
    def signing_keys(self) -> KeyRing:
        """The key ring (always set once the settings exist)."""
        assert self.keyring is not None  # set by __post_init__
        return self.keyring

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/token"

    def tenant_from_aud(self, aud: str | None) -> str | None:
        """The tenant whose FHIR base ``aud`` is (``{base_url}/fhir/{tenant}``), else None."""
        if not aud:
            return None
        prefix = f"{self.base_url}/fhir/"
        if aud.rstrip("/").startswith(prefix):
            tenant = aud.rstrip("/")[len(prefix):]
            if TENANT_RE.match(tenant):
                return tenant
        return None
