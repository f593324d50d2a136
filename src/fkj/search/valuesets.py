"""ValueSets stored in the tenant, expanded for the token modifiers ``:in`` and ``:not-in``."""

from __future__ import annotations

import orjson
from sqlalchemy import or_, select

from fkj.errors import InvalidSearch
from fkj.search.keys import key
from fkj.store.schema import idx_uri, resource

MAX_CODES = 10_000


def expand_codes(repo, conn, value: str, name: str, policy=()) -> list[tuple[str, str]]:
    """(system, code) pairs of a ValueSet named by canonical URL or ``ValueSet/id``.

    ``policy``: extra conditions on the ``resource`` table (the search_filters hooks).
    """
    q = select(resource.c.content).where(resource.c.tenant == repo.tenant,
                                         resource.c.type == "ValueSet",
                                         resource.c.deleted.is_(False), *policy)
    if value.startswith("ValueSet/"):
        q = q.where(resource.c.id == value.split("/", 1)[1])
    else:
        url = value.split("|", 1)[0]
        q = q.where(or_(resource.c.rid.in_(
            select(idx_uri.c.rid).where(idx_uri.c.tenant == repo.tenant,
                                        idx_uri.c.type == "ValueSet", idx_uri.c.param == "url",
                                        idx_uri.c.uri == key(url)))))
    row = conn.execute(q.limit(1)).first()
    if row is None:
        raise InvalidSearch(f"{name}: no ValueSet {value!r} in this municipality",
                            expression=name)
    return codes_of(orjson.loads(row.content))


def codes_of(vs: dict) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def walk_contains(items):
        for c in items or []:
            if c.get("system") and c.get("code"):
                out.append((c["system"], c["code"]))
            walk_contains(c.get("contains"))

    walk_contains((vs.get("expansion") or {}).get("contains"))
    for inc in (vs.get("compose") or {}).get("include", []):
        system = inc.get("system")
        for c in inc.get("concept", []):
            if system and c.get("code"):
                out.append((system, c["code"]))
    excluded = {(e.get("system"), c.get("code")) for e in (vs.get("compose") or {}).get("exclude", [])
                for c in e.get("concept", [])}
    return [x for x in dict.fromkeys(out) if x not in excluded][:MAX_CODES]
