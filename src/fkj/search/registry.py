"""Search parameter registry: the R4 SearchParameters (packaged, compact) plus tenant ones.

The packaged file ``fkj/data/fhir/search-parameters.json`` is produced by
``tools/build_search_data.py``; R4 errata are fixed here when loading:

* ``DocumentReference-relationship``: the official file pairs the component definition
  ``DocumentReference-relatesto`` (a reference parameter) with expression ``code`` and
  ``DocumentReference-relation`` (a token parameter) with ``target``. We swap the definitions so
  component 1 is (relation, ``code``) and component 2 is (relatesto, ``target``).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable

RESOURCE_LEVEL = ("Resource", "DomainResource")

#: what a tenant's SearchParameter.code may be: a plain name that fits the index tables'
#: ``param`` column (100 characters, with ``:of-type`` appended for identifiers) and that a
#: search can name (no ``.`` or ``:``, which chain and modify)
CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")


def valid_code(code) -> bool:
    return isinstance(code, str) and CODE.match(code) is not None

_ERRATA_RELATIONSHIP = "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship"
_SP = "http://hl7.org/fhir/SearchParameter/"


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str  # number|date|string|token|reference|composite|quantity|uri|special
    base: tuple[str, ...]
    expression: str | None
    url: str
    target: tuple[str, ...] = ()
    #: (definition url, expression) for composites
    components: tuple[tuple[str, str], ...] = ()
    modifier: tuple[str, ...] = field(default=(), compare=False)
    comparator: tuple[str, ...] = field(default=(), compare=False)
    multiple_or: bool | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SearchParam":
        comps = tuple((c["definition"], c["expression"]) for c in d.get("component", ()))
        if d.get("url") == _ERRATA_RELATIONSHIP:
            comps = _fix_relationship(comps)
        return cls(
            code=d["code"], type=d["type"], base=tuple(d.get("base", ())),
            expression=d.get("expression"), url=d.get("url", ""),
            target=tuple(d.get("target", ())), components=comps,
            modifier=tuple(d.get("modifier", ())), comparator=tuple(d.get("comparator", ())),
            multiple_or=d.get("multipleOr"),
        )


def _fix_relationship(comps: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    by_expr = {e: u for u, e in comps}
    if by_expr.get("code") == _SP + "DocumentReference-relatesto":
        return ((_SP + "DocumentReference-relation", "code"),
                (_SP + "DocumentReference-relatesto", "target"))
    return comps


class Registry:
    """Search parameters by resource type. Immutable; ``with_custom`` returns a new one."""

    def __init__(self, params: Iterable[SearchParam]):
        self._params: tuple[SearchParam, ...] = tuple(params)
        self._by_url: dict[str, SearchParam] = {}
        by_base: dict[str, dict[str, SearchParam]] = {}
        for p in self._params:
            self._by_url[p.url] = p
            for b in p.base:
                by_base.setdefault(b, {})[p.code] = p
        self._by_base = by_base
        common: dict[str, SearchParam] = {}
        for b in RESOURCE_LEVEL:
            common.update(by_base.get(b, {}))
        self._common = common
        self._cache: dict[str, dict[str, SearchParam]] = {}
        #: compiled extractors per resource type (filled by fkj.search.extract)
        self._compiled: dict[str, Any] = {}

    @property
    def params(self) -> tuple[SearchParam, ...]:
        return self._params

    def resource_types(self) -> list[str]:
        return sorted(b for b in self._by_base if b not in RESOURCE_LEVEL)

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        """All parameters for the type, including Resource/DomainResource-level ones."""
        got = self._cache.get(resource_type)
        if got is None:
            got = dict(self._common)
            got.update(self._by_base.get(resource_type, {}))
            self._cache[resource_type] = got
        return got

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.for_type(resource_type).get(code)

    def by_url(self, url: str) -> SearchParam | None:
        return self._by_url.get(url)

    def with_custom(self, params: list[dict]) -> "Registry":
        """A new registry with the tenant's SearchParameter resources (FHIR JSON) on top.

        A custom parameter replaces a built-in one with the same url, or with the same code on
        the same base. One whose code is not :func:`valid_code` is left out (such
        SearchParameters are refused when written: ``check_search_parameters``).
        """
        custom = [SearchParam.from_json(d) for d in params
                  if valid_code(d.get("code")) and d.get("type")]
        urls = {c.url for c in custom}
        keys = {(b, c.code) for c in custom for b in c.base}
        kept = []
        for p in self._params:
            if p.url in urls:
                continue
            if any((b, p.code) in keys for b in p.base):
                rest = tuple(b for b in p.base if (b, p.code) not in keys)
                if not rest:
                    continue
                p = SearchParam(p.code, p.type, rest, p.expression, p.url, p.target,
                                p.components, p.modifier, p.comparator, p.multiple_or)
            kept.append(p)
        return Registry(kept + custom)


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    data = resources.files("fkj.data").joinpath("fhir/search-parameters.json").read_bytes()
    return Registry(SearchParam.from_json(d) for d in json.loads(data))
