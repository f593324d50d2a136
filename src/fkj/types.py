"""Shared types that every layer imports.

The :class:`Principal` is the seam between the HTTP edge and the repository: every read or
write of clinical data is made *on behalf of* a principal, so security can be enforced in one
place (the repository and the access policy) whatever path the request took.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]
PrincipalKind = Literal["system", "practitioner", "citizen", "client"]


@dataclass(frozen=True)
class Principal:
    """Who is asking, on which tenant, with which permissions.

    >>> p = Principal.system("4601")
    >>> p.tenant, p.kind
    ('4601', 'system')
    """

    kind: PrincipalKind
    subject: str
    tenant: str | None
    scopes: frozenset[str] = field(default_factory=frozenset)
    #: personnel attributes (HelseID-style): HPR number, roles, unit (HER-id / Organization id)
    hpr_number: str | None = None
    pid: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    unit: str | None = None
    organisation: str | None = None
    #: SMART launch context: the patient a ``patient/`` token is bound to
    patient: str | None = None
    encounter: str | None = None
    client_id: str | None = None
    purpose_of_use: str = "TREAT"
    token_id: str | None = None
    #: the token's "fhirUser" (e.g. ``Practitioner/123``)
    fhir_user: str | None = None

    @classmethod
    def system(cls, tenant: str | None, subject: str = "fkj-cli") -> "Principal":
        """The explicit system principal used by the CLI, migrations and tests."""
        return cls(kind="system", subject=subject, tenant=tenant,
                   scopes=frozenset({"system/*.cruds"}), client_id=subject)

    @property
    def display(self) -> str:
        return self.hpr_number or self.pid or self.client_id or self.subject
