"""Process-wide services the repository needs: the engine, settings, validation and the
search-parameter registry. One instance per server process (or CLI run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import Engine

from fkj.config import Settings
from fkj.store.tenants import TenantCache


@dataclass
class Hooks:
    """Named hook points for cross-cutting concerns (policy, audit, notifications).

    ``authorize(repo, interaction, resource_type, resource_or_none)`` raises to deny;
    ``after_commit(repo, operations)`` runs after a write transaction committed;
    """

    authorize: list[Callable[..., None]] = field(default_factory=list)
    after_commit: list[Callable[..., None]] = field(default_factory=list)
    #: ``before_commit(repo, conn, operations)``: inside the write transaction, after every
    #: write of it is flushed and checked — what it writes commits (or rolls back) with them
    before_commit: list[Callable[..., None]] = field(default_factory=list)
    #: ``check_result(repo, interaction, resource_dict)`` raises when the caller may not see a
    #: resource that was read (read, vread, history entries, operation results)
    check_result: list[Callable[..., None]] = field(default_factory=list)
    #: ``search_filter(repo, resource_alias, resource_type) -> SQL condition | None``: the
    #: access policy's restriction, applied inside every search query
    search_filters: list[Callable[..., Any]] = field(default_factory=list)
    #: ``prepare(repo, conn, resource_dict, id) -> dict | None``: a resource about to be
    #: stored (validated; ``conn`` is the write transaction's, None outside one) may be
    #: replaced by the returned dict — e.g. write-only secrets kept out of the store
    prepare: list[Callable[..., Any]] = field(default_factory=list)


@dataclass
class Services:
    engine: Engine
    settings: Settings
    tenants: TenantCache = None  # type: ignore[assignment]
    hooks: Hooks = field(default_factory=Hooks)
    #: turn search indexing off (benchmarks measure its cost); never in production
    indexing: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tenants is None:
            self.tenants = TenantCache(self.engine)
