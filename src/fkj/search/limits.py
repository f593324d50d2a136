"""What one search may ask for: limits on its parameters, checked before any SQL is built.

On PostgreSQL a search's cost grows much faster than its parameters: 200 repeated
``name=`` parameters took 30 s to plan, 500 over a minute, and the statement went on after
its client had gone. Every search — ``GET``/``POST _search``, compartment searches,
``$everything``, conditional interactions (``If-None-Exist``, conditional update, patch and
delete, conditional references in Bundles), subscription criteria and ``$export``'s
``_typeFilter`` — is checked against :class:`SearchLimits` (``Settings.search_limits``);
a search over a limit is refused with a 400 OperationOutcome (issue code ``too-costly``)
that names the parameter and the limit. What a search may still cost is bounded by the
statement timeout (:mod:`fkj.store.cancel`).

======================  ==========================  =======  ===================================
limit                   environment variable        default  what it counts
======================  ==========================  =======  ===================================
``params``              FKJ_SEARCH_MAX_PARAMS       20       criteria (not _count, _sort …)
``repeats``             FKJ_SEARCH_MAX_REPEATS      10       the same parameter name, repeated
``values``              FKJ_SEARCH_MAX_VALUES       100      comma-separated values of one
                                                             parameter (OR); not ``_type``
``includes``            FKJ_SEARCH_MAX_INCLUDES     10       ``_include`` + ``_revinclude``
``sort``                FKJ_SEARCH_MAX_SORT         5        keys of ``_sort``
``chain_branches``      FKJ_SEARCH_MAX_CHAIN        200      sub-searches one chained or
                                                             ``_has`` parameter expands to (one
                                                             per target type and level)
``timeout``             FKJ_SEARCH_TIMEOUT          15       seconds a statement of a search
                                                             may run (0: no limit)
======================  ==========================  =======  ===================================

Each may be set up to :data:`CEILING` (params, repeats and values 250). Chains are at most
8 levels deep (``fkj.search.engine.MAX_CHAIN_DEPTH``) and
``_include:iterate`` follows at most 4 rounds, whatever the settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fkj.errors import InvalidSearch

#: Settings field → environment variable
ENV = {"params": "FKJ_SEARCH_MAX_PARAMS", "repeats": "FKJ_SEARCH_MAX_REPEATS",
       "values": "FKJ_SEARCH_MAX_VALUES", "includes": "FKJ_SEARCH_MAX_INCLUDES",
       "sort": "FKJ_SEARCH_MAX_SORT", "chain_branches": "FKJ_SEARCH_MAX_CHAIN",
       "timeout": "FKJ_SEARCH_TIMEOUT"}

#: the most each limit may be set to: SQLite refuses an expression nested more than 1,000
#: deep, and criteria (AND) and comma values (OR) nest a level or more each (a string value
#: is a range and a LIKE: 499 of them were too deep)
CEILING = {"params": 250, "repeats": 250, "values": 250, "includes": 100, "sort": 20,
           "chain_branches": 1000, "timeout": 3600}

#: parameters that shape the result instead of filtering it (not counted as criteria)
_RESULT = frozenset({"_count", "_sort", "_total", "_summary", "_elements", "_include",
                     "_revinclude", "_format", "_pretty", "_cursor", "_contained",
                     "_containedType"})


@dataclass(frozen=True)
class SearchLimits:
    params: int = 20
    repeats: int = 10
    values: int = 100
    includes: int = 10
    sort: int = 5
    chain_branches: int = 200
    #: seconds one statement of a search may run; 0 switches the timeout off
    timeout: float = 15.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SearchLimits:
        """The defaults, overridden by the ``FKJ_SEARCH_*`` variables (a bad value is an
        error at start, not at the first search)."""
        env = os.environ if environ is None else environ
        values: dict = {}
        for name, var in ENV.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                value = float(raw) if name == "timeout" else int(raw)
            except ValueError:
                raise ValueError(f"{var} must be a number, got {raw!r}") from None
            if value < 0 or (value == 0 and name != "timeout") or value > CEILING[name]:
                raise ValueError(f"{var} must be positive and at most {CEILING[name]}, "
                                 f"got {raw!r}")
            values[name] = value
        return cls(**values)


def too_costly(message: str, expression: str) -> InvalidSearch:
    return InvalidSearch(message, expression=expression, code="too-costly")


def check_params(params: Iterable[tuple[str, str]], limits: SearchLimits) -> None:
    """Refuse (400, ``too-costly``) a search whose parameters exceed ``limits``.

    >>> check_params([("name", "a")] * 11, SearchLimits())
    Traceback (most recent call last):
    ...
    fkj.errors.InvalidSearch: parameter name is given 11 times; at most 10 are allowed (FKJ_SEARCH_MAX_REPEATS)
    """
    criteria = includes = 0
    repeated: dict[str, int] = {}
    for name, value in params:
        base = name.split(":", 1)[0]
        if base in ("_include", "_revinclude"):
            includes += 1
            if includes > limits.includes:
                raise too_costly(f"the search has more than {limits.includes} _include and "
                                 f"_revinclude parameters ({ENV['includes']})", base)
            continue
        if base == "_sort":
            keys = len(value.split(","))
            if keys > limits.sort:
                raise too_costly(f"_sort has {keys} keys; at most {limits.sort} are allowed "
                                 f"({ENV['sort']})", "_sort")
            continue
        if base in _RESULT:
            continue
        criteria += 1
        if criteria > limits.params:
            raise too_costly(f"the search has more than {limits.params} parameters "
                             f"({ENV['params']}); {name} is one too many", name)
        seen = repeated[name] = repeated.get(name, 0) + 1
        if seen > limits.repeats:
            n = sum(1 for k, _ in params if k == name) if isinstance(params, list) else seen
            raise too_costly(f"parameter {name} is given {n} times; at most "
                             f"{limits.repeats} are allowed ({ENV['repeats']})", name)
        if base != "_type" and value.count(",") >= limits.values:
            from fkj.search.parse import split_values
            n = len(split_values(value))
            if n > limits.values:
                raise too_costly(f"parameter {name} has {n} values; at most {limits.values} "
                                 f"are allowed ({ENV['values']})", name)


def limits_of(services) -> SearchLimits:
    """The limits a server applies (``Settings.search_limits``)."""
    return getattr(services.settings, "search_limits", None) or DEFAULT


DEFAULT = SearchLimits()

__all__ = ["CEILING", "DEFAULT", "ENV", "SearchLimits", "check_params", "limits_of", "too_costly"]
