"""Sources: anything that can answer "what do you know about this patient" for some resource
types — the local store or an adapter for a national service (DESIGN §7).

A source returns a :class:`SourceResult`: the items it found (FHIR resources as dicts, each
stamped with ``meta.source`` = the source's URL) or why it could not answer. The overview
(``fkj.views.overview``) calls the sources concurrently and keeps to its time budget.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

#: extension listing every source that reported an item (an item merged from two sources
#: carries two of them); valueUri = the source's URL, the display of the source in valueString
SOURCE_EXT = "http://fkj.no/fhir/StructureDefinition/kilde"
#: extension on an item that contradicts an item of another source (valueReference → the other)
CONFLICT_EXT = "http://fkj.no/fhir/StructureDefinition/motstridende-opplysning"


@dataclass(frozen=True)
class PatientKey:
    """The patient as sources know it: our id, and the person number (found by identifier)."""

    local_id: str
    identifier_system: str | None
    identifier_value: str | None

    @property
    def token(self) -> str | None:
        if not self.identifier_value:
            return None
        return f"{self.identifier_system}|{self.identifier_value}" if self.identifier_system \
            else self.identifier_value


@dataclass
class SourceResult:
    name: str
    display: str
    url: str
    items: list[dict] = field(default_factory=list)
    #: ok | timeout | error | down | circuit-open | not-found
    status: str = "ok"
    detail: str = ""
    elapsed_ms: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "not-found")


class Source(Protocol):
    name: str
    display: str
    url: str
    types: tuple[str, ...]

    def fetch(self, patient: PatientKey, deadline: float) -> SourceResult: ...


class CircuitBreaker:
    """Closed → (``threshold`` consecutive failures) → open for ``reset_s`` seconds → half-open:
    one trial call; success closes, failure opens again."""

    def __init__(self, threshold: int = 3, reset_s: float = 10.0):
        self.threshold = max(1, threshold)
        self.reset_s = reset_s
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.reset_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        with self._lock:
            st = self.state
            if st == "closed":
                return True
            if st == "half-open" and not self._trial:
                self._trial = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            self._trial = False
            if self.failures >= self.threshold or self.opened_at is not None:
                self.opened_at = time.monotonic()


class TtlCache:
    """A small short-lived cache (per source) of successful answers."""

    def __init__(self, ttl_s: float, max_entries: int = 1000):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._data: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        if self.ttl_s <= 0:
            return None
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                self._data.pop(key, None)
                return None
            return hit[1]

    def put(self, key, value) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._data) >= self.max_entries:
                now = time.monotonic()
                for k in [k for k, v in self._data.items() if v[0] < now] or list(self._data)[:1]:
                    self._data.pop(k, None)
            self._data[key] = (time.monotonic() + self.ttl_s, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def stamp_source(resource: dict, url: str, display: str) -> dict:
    """Set ``meta.source`` and the kilde extension on an item (in place)."""
    meta = resource.setdefault("meta", {})
    meta["source"] = url
    add_source_ext(resource, url, display)
    return resource


def add_source_ext(resource: dict, url: str, display: str) -> None:
    exts = resource.setdefault("extension", [])
    for e in exts:
        if e.get("url") == SOURCE_EXT and any(
                x.get("url") == "url" and x.get("valueUri") == url for x in e.get("extension", [])):
            return
    exts.append({"url": SOURCE_EXT, "extension": [
        {"url": "url", "valueUri": url}, {"url": "navn", "valueString": display}]})


def item_sources(resource: dict) -> list[tuple[str, str]]:
    """(url, display) of every source recorded on an item."""
    out = []
    for e in resource.get("extension", []) or []:
        if e.get("url") != SOURCE_EXT:
            continue
        parts = {x.get("url"): x.get("valueUri") or x.get("valueString")
                 for x in e.get("extension", [])}
        out.append((parts.get("url", ""), parts.get("navn", "")))
    return out
