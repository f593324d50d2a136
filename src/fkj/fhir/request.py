"""Framework-free request and response objects: the interactions know nothing of HTTP
libraries, so Bundle entries are dispatched through exactly the same code as REST calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FhirRequest:
    method: str
    tenant: str
    #: path segments below ``/fhir/{tenant}``
    segments: list[str]
    query: list[tuple[str, str]] = field(default_factory=list)
    #: lower-case header names
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    #: where an error in this request points (``Bundle.entry[3]`` for Bundle entries)
    where: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def prefer_return(self) -> str:
        for part in (self.header("prefer") or "").split(";"):
            for item in part.split(","):
                k, _, v = item.strip().partition("=")
                if k.strip() == "return":
                    return v.strip().strip('"')
        return "representation"

    @property
    def strict(self) -> bool:
        return "handling=strict" in (self.header("prefer") or "").replace(" ", "")


@dataclass
class FhirResponse:
    status: int
    #: bytes/str (already JSON) or a dict to serialise; None for no body
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: the stored resources the body shows, as (type, id, version, stored JSON text), when
    #: the interaction has them at hand (read, vread, search): the audit log records them
    #: from here instead of parsing the body again
    shown: list[tuple[str, str, int, str]] | None = None
