"""Search: turns parsed parameters into one SQL query per page, with keyset paging,
sorting, totals and includes. Filtering (including the access policy's filter, from the
``search_filter`` hooks) is part of the query, so pages and totals never leak or leave holes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    and_,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from fkj.errors import InvalidSearch
from fkj.search.extract import stored_params
from fkj.search.keys import key, whole
from fkj.search.limits import check_params, limits_of, too_costly
from fkj.search.options import (
    Options,
    after_cursor,
    encode_cursor,
    parse_options,
    reject_nul,
)
from fkj.search.params import date as date_p
from fkj.search.params import number as number_p
from fkj.search.params import reference as reference_p
from fkj.search.params import string as string_p
from fkj.search.params import token as token_p
from fkj.search.params import uri as uri_p
from fkj.search.parse import RESULT_PARAMS, parse_name, split_values
from fkj.search.registry import SearchParam
from fkj.store.cancel import statement_guard
from fkj.store.schema import INDEX_TABLES, resource

MAX_CHAIN_DEPTH = 8
MAX_INCLUDE_ROUNDS = 4


@dataclass
class Row:
    rid: int
    type: str
    id: str
    version: int
    last_updated: int
    content: str


@dataclass
class SearchResult:
    matches: list[Row]
    includes: list[Row] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: the parameters that were applied (for the self link)
    applied: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------- entry points
def run_search(repo, conn: Connection, rtype: str | None, params: list[tuple[str, str]],
               *, strict: bool = False, default_count: int = 50, max_count: int = 1000,
               default_total: str = "auto") -> SearchResult:
    """One page of a search. Its parameters must keep within the server's limits
    (:mod:`fkj.search.limits`), and its statements run under the statement timeout and
    stop when the client goes away (:func:`fkj.store.cancel.statement_guard`)."""
    reject_nul(params)
    limits = limits_of(repo.services)
    check_params(params, limits)
    with _guarded(conn, limits, params):
        return _run_search(repo, conn, rtype, params, strict, default_count, max_count,
                           default_total, limits)


def _guarded(conn: Connection, limits, params, restore: bool = False):
    """:func:`statement_guard` with this search's PostgreSQL settings: each statement is
    planned for its own parameter values (``plan_cache_mode``, see below)."""
    names = list(dict.fromkeys(k for k, _ in params)) or ["_id"]
    return statement_guard(conn, limits.timeout, settings=_CUSTOM_PLANS, restore=restore,
                           expression=names)


def _run_search(repo, conn: Connection, rtype: str | None, params: list[tuple[str, str]],
                strict: bool, default_count: int, max_count: int, default_total: str,
                limits) -> SearchResult:
    types = [rtype] if rtype else None
    opts, criteria_params = parse_options(params, default_count, max_count, default_total,
                                          strict)
    warnings: list[str] = []
    builder = _Builder(repo, conn, strict, warnings, limits)
    if rtype is None:
        type_param = [v for k, v in criteria_params if k == "_type"]
        criteria_params = [(k, v) for k, v in criteria_params if k != "_type"]
        if type_param:
            types = [t for v in type_param for t in v.split(",")]
            for t in types:
                if not builder.known_type(t):
                    raise InvalidSearch(f"_type: unknown resource type {t!r}", expression="_type")
    r = MAIN
    builder.top = r
    if opts.cursor is not None and not opts.sort and len(opts.cursor) == 1 \
            and isinstance(opts.cursor[0], int) and not isinstance(opts.cursor[0], bool):
        # paging in rid order: the driving lists start after the cursor too, so page 200 does
        # not read (SQLite: materialise) the 9,950 rids before it
        builder.rid_floor = opts.cursor[0]
    conds, applied = _conditions(repo, builder, r, rtype, types, criteria_params)
    pg = conn.dialect.name == "postgresql"
    #: the driving rid list is known to be short (PostgreSQL): see the ORDER BY below
    short = False
    #: PostgreSQL, several driving lists and no _sort: their rids in order (see _merged)
    merged = None
    if pg and len(builder.drivers) == 1:
        short = _shortest(conn, builder.drivers)[1]
    # (SQLite reads an IN list in rid order anyway: its ORDER BY stays on the rowid)
    if len(builder.drivers) > 1:
        # Several ``rid IN (…)`` lists: the shortest one drives. SQLite materialises every
        # list in full: the others become per-row checks (EXISTS). PostgreSQL gets the
        # shortest list with the others as semi-joins on its rid, planned on their own
        # (OFFSET 0): the index rows are intersected before any resource row is read
        # (otherwise it joined every resource of a month's dates before looking at the code
        # of an ``_include`` search, 4,600 resource rows for 51). Same rows, another plan.
        keep, short = _shortest(conn, builder.drivers)
        short = short and pg
        if not pg:
            builder.demote = set(range(len(builder.drivers))) - {keep}
        elif not opts.sort:
            # A page in rid order: the shortest list, sorted, is merged with the others in
            # rid order (PostgreSQL merge semi-join), and the merge stops with the page.
            # ``code=…&date=2022-05``: 4,600 date rids sorted, then about 6,000 of the
            # code's 61,000 rids read in order, 6 ms; the intersection of both lists in
            # full (a hash of all 61,000) took 45 ms for the same 51 resources.
            merged = _merged(builder.drivers, keep)
            builder.fence = (keep, None)
        else:
            builder.fence = (keep, _intersection(builder.drivers, keep))
        builder.drivers = []
        builder._driver_no = 0
        builder._rid_in.clear()
        warnings.clear()
        conds, applied = _conditions(repo, builder, r, rtype, types, criteria_params)
    where = and_(*conds)
    source = r if merged is None else r.join(merged, r.c.rid == merged.c.rid)
    if opts.summary == "count" or opts.count == 0:
        total = conn.execute(select(func.count()).select_from(source).where(where)).scalar_one()
        return SearchResult([], total=total, warnings=warnings, applied=applied)

    sort_exprs = [(builder.sort_expr(r, rtype, name), desc, name) for name, desc in opts.sort]
    # NULLs (no value) first ascending, last descending — the same on both backends
    order = [e.desc().nulls_last() if desc else e.asc().nulls_first()
             for e, desc, _ in sort_exprs]
    # A short driving list (fewer than PROBE_CAP_MAX rids) is read first and its rows sorted
    # (``rid + 0`` cannot come from the primary key). Otherwise PostgreSQL may walk the primary
    # key in rid order and stop at the page's end, a good plan for long lists but a disaster
    # when it misjudges a short one: ``Patient?name=Stor`` read 98,000 resources of every type
    # (Patients are 2 % of them) to find 51 (90 ms instead of 3).
    if merged is not None:
        order.append(merged.c.rid.asc())  # the merge's order (never the primary key's walk)
    else:
        order.append((r.c.rid + 0).asc() if short else r.c.rid.asc())
    q = select(r.c.rid, r.c.type, r.c.id, r.c.version, r.c.last_updated, r.c.content,
               *[e.label(f"s{i}") for i, (e, _, _) in enumerate(sort_exprs)]
               ).select_from(source).where(where)
    if opts.cursor is not None:
        q = q.where(after_cursor(sort_exprs, r, opts.cursor))
    rows = conn.execute(q.order_by(*order).limit(opts.count + 1)).all()
    next_cursor = None
    if len(rows) > opts.count:
        rows = rows[:opts.count]
        last = rows[-1]
        next_cursor = encode_cursor([getattr(last, f"s{i}") for i in range(len(sort_exprs))]
                                    + [last.rid])
    matches = [Row(x.rid, x.type, x.id, x.version, x.last_updated, x.content) for x in rows]
    total = _total(conn, opts, source, where, len(matches), next_cursor is None)
    includes = builder.includes(matches, opts) if (opts.include or opts.revinclude) else []
    return SearchResult(matches, includes, total, next_cursor, warnings, applied)


#: below this many estimated matches ``_total=estimate`` counts (cheap, and exact)
ESTIMATE_COUNT_BELOW = 10_000


def _total(conn: Connection, opts: Options, source, where, page_len: int,
           last_page: bool) -> int | None:
    """The Bundle total. A first page without a next page holds every match, so its length
    is the total at no cost; otherwise only ``_total=accurate`` (a count) and
    ``_total=estimate`` (PostgreSQL's row estimate; a count on SQLite or when the estimate
    is small) pay for one. ``_total=none`` never reports it."""
    if opts.total == "none":
        return None
    if last_page and opts.cursor is None:
        return page_len
    if opts.total == "estimate" and conn.dialect.name == "postgresql":
        est = _estimate(conn, select(literal_column("1")).select_from(source).where(where))
        if est is not None and est >= ESTIMATE_COUNT_BELOW:
            return est
    if opts.total in ("accurate", "estimate"):
        return conn.execute(select(func.count()).select_from(source).where(where)).scalar_one()
    return None


def _estimate(conn: Connection, stmt) -> int | None:
    """PostgreSQL planner's row estimate for ``stmt`` (EXPLAIN (FORMAT JSON), not run)."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    try:
        with conn.begin_nested():
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled),
                                        compiled.params).scalar_one()
        if isinstance(plan, str):
            plan = orjson.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])
    except Exception:  # noqa: BLE001 - an estimate is optional; fall back to counting
        return None


def match_ids(repo, conn: Connection, rtype: str, criteria: list[tuple[str, str]],
              limit: int = 2) -> list[str]:
    """Ids of up to ``limit`` resources matching ``criteria`` (conditional interactions,
    subscription criteria), under the same limits and statement timeout as a search; the
    timeout is put back afterwards, as the caller's write transaction goes on."""
    reject_nul(criteria)
    limits = limits_of(repo.services)
    check_params(criteria, limits)
    with _guarded(conn, limits, criteria, restore=True):
        return _match_ids(repo, conn, rtype, criteria, limit, limits)


def _match_ids(repo, conn, rtype, criteria, limit, limits) -> list[str]:
    builder = _Builder(repo, conn, True, [], limits)
    r = MAIN
    conds = []
    for name, value in criteria:
        if name in RESULT_PARAMS:
            continue
        c = builder.criterion(r, rtype, name, value)
        if c is not None:
            conds.append(c)
    if not conds:
        raise InvalidSearch("conditional interaction needs at least one search criterion")
    for hook in repo.services.hooks.search_filters:  # the caller may only match what it may see
        extra = hook(repo, r, rtype)
        if extra is not None:
            conds.append(extra)
    conds = [*builder.scope(r, [rtype]), r.c.deleted.is_(False), *conds]
    return [x.id for x in conn.execute(select(r.c.id).where(and_(*conds)).limit(limit))]


#: PostgreSQL: plan every statement of the search's transaction for its parameter values.
#: psycopg prepares a statement it has run five times on a connection, and PostgreSQL then
#: switches to a generic plan (one for any parameter values) when its estimate looks no
#: worse. A search's cost depends on the values — a date range of a month or of ten years,
#: a rare or a common code — and the generic plan of the bench's Observation
#: subject+code+date search took 0.3–1 s instead of 5 ms. The setting is local to the
#: transaction, so other statements on the pooled connection are not affected; it is made
#: in the statement that sets the statement timeout (fkj.store.cancel.statement_guard).
_CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}


#: the main resource alias of every search statement: one long-lived object, so that
#: conditions built for it (the access policy's) can be reused from one search to the next
MAIN = resource.alias("r")


# ---------------------------------------------------------------------------- options
def _conditions(repo, builder, r, rtype, types, criteria_params):
    crits, applied = [], []
    for name, value in criteria_params:
        c = builder.criterion(r, rtype, name, value)
        if c is not None:
            crits.append(c)
            applied.append((name, value))
    conds = [*builder.scope(r, types), r.c.deleted.is_(False), *crits]
    for hook in repo.services.hooks.search_filters:
        extra = hook(repo, r, rtype)
        if extra is not None:
            conds.append(extra)
    return conds, applied


#: how many index rows the driver probe looks at per candidate (enough to tell short from
#: long); when every candidate has that many, they are counted again up to PROBE_CAP_MAX
PROBE_CAP = 1000
PROBE_CAP_MAX = 10_000
#: a candidate this short drives without probing the others
PROBE_ENOUGH = 100
_DRIVER_RANK = {"reference": 0, "token": 1, "uri": 2, "string": 3, "composite": 4, "date": 5}


def _intersection(drivers: list[tuple[str, Any]], keep: int):
    """The rids of driver ``keep`` that are in every other driver's list, as a sub-select the
    planner may not merge into the outer query (``OFFSET 0``)."""
    stmt = drivers[keep][1]
    rid = stmt.selected_columns[0]
    others = [rid.in_(other) for i, (_, other) in enumerate(drivers) if i != keep]
    return stmt.where(*others).offset(literal_column("0"))


def _merged(drivers: list[tuple[str, Any]], keep: int):
    """PostgreSQL: the rids of driver ``keep`` that every other driver has, distinct and in
    rid order — a sub-query to join the resources to. The kept list is read and sorted on
    its own (``OFFSET 0``); each other list is an ``EXISTS`` on its rid, which PostgreSQL
    runs as a merge semi-join that reads the other list in rid order (the lookup indexes
    end with rid) only as far as the page needs."""
    stmt = drivers[keep][1]
    rid = stmt.selected_columns[0]
    kept = stmt.with_only_columns(rid.label("rid")).distinct().order_by(rid) \
        .offset(literal_column("0")).subquery("kept")
    others = [other.where(other.selected_columns[0] == kept.c.rid).exists()
              for i, (_, other) in enumerate(drivers) if i != keep]
    return select(kept.c.rid).where(*others).subquery("merged")


def _shortest(conn: Connection, drivers: list[tuple[str, Any]]) -> tuple[int, bool]:
    """Index of the candidate ``rid IN (…)`` list with the fewest rows, and whether that
    list is known to be short (under the cap it was counted to). Rows are counted through
    the lookup indexes alone (``SELECT 1``, no table rows) up to PROBE_CAP, then
    PROBE_CAP_MAX if all reach it. Candidates are probed in order of the usually more
    selective type (which also wins ties); one under PROBE_ENOUGH rows is taken at once."""
    order = sorted(range(len(drivers)), key=lambda i: (_DRIVER_RANK.get(drivers[i][0], 6), i))
    cap = PROBE_CAP
    while True:
        sizes = []
        limit = cap  # a later candidate need only be counted to one past the shortest so far
        for i in order:
            stmt = drivers[i][1].with_only_columns(literal_column("1"))
            n = conn.execute(select(func.count()).select_from(
                stmt.limit(limit).subquery())).scalar_one()
            if n < PROBE_ENOUGH:
                return i, True
            sizes.append((n, _DRIVER_RANK.get(drivers[i][0], 6), i))
            limit = min(limit, n + 1)
        best = min(sizes)
        if best[0] < cap or cap >= PROBE_CAP_MAX:
            return best[2], best[0] < cap
        # every candidate has PROBE_CAP rows: count again, the usually less selective types
        # (ranges) first, as they are the ones the first round could not tell apart
        cap = PROBE_CAP_MAX
        order.reverse()


# ---------------------------------------------------------------------------- builder
class _Builder:
    def __init__(self, repo, conn: Connection, strict: bool, warnings: list[str],
                 limits=None):
        self.repo = repo
        self.limits = limits or limits_of(repo.services)
        #: the top-level parameter being built and the sub-searches its chains and _has
        #: expanded to so far (at most ``limits.chain_branches``)
        self._top = ""
        self._branches = 0
        self.conn = conn
        self.tenant = repo.tenant
        self.strict = strict
        self.warnings = warnings
        self.registry = repo.registry
        self.own_base = f"{repo.services.settings.base_url}/fhir/{repo.tenant}/"
        #: the search's resource alias; its ``rid IN (…)`` candidates are ``drivers``
        #: (parameter type, rid select), numbered in build order; those in ``demote`` are
        #: built as correlated EXISTS instead
        self.top = None
        self.drivers: list[tuple[str, Any]] = []
        self.demote: set[int] = set()
        #: PostgreSQL: (driver number, intersection sub-select) — that driver becomes
        #: ``rid IN (intersection)``, the other drivers (inside it) are dropped; with no
        #: sub-select every driver is dropped (the resources are joined to the merge)
        self.fence: tuple[int, Any] | None = None
        #: paging in rid order after this rid: driving lists skip what came before
        self.rid_floor: int | None = None
        self._driver_no = 0
        self.sqlite = conn.dialect.name == "sqlite"
        #: resource aliases with a ``rid IN (…)`` condition at the top of their WHERE
        self._rid_in: set = set()

    # ------------------------------------------------------------------------ plan shape
    def noidx(self, col):
        """``col`` as SQLite's ``+col``: same value, but no index may be used for the term.

        SQLite's planner only knows table sizes from ``sqlite_stat1``, which a server process
        loads once per connection: a tenant loaded while it runs is planned as if empty, and
        then (tenant, type) or the lookup indexes look cheaper than the ``rid`` lists and the
        (rid, param) indexes — a scan of the tenant's every row per query. Taking the tenant
        column out of index use leaves SQLite one sensible plan whatever its statistics say.
        PostgreSQL gets the plain column."""
        if not self.sqlite:
            return col
        return UnaryExpression(col, operator=operators.custom_op("+"), type_=col.type)

    def scope(self, r, types: list[str] | None) -> list:
        """Tenant (and type) conditions of resource alias ``r``; when ``r`` has a ``rid IN``
        list, SQLite is kept from the (tenant, type) indexes so that the list drives."""
        driven = r in self._rid_in
        col = self.noidx if driven else (lambda c: c)
        out = [col(r.c.tenant) == self.tenant]
        if types:
            out.append(col(r.c.type).in_(types) if len(types) > 1 else col(r.c.type) == types[0])
        return out

    def rid_in(self, r, sub):
        self._rid_in.add(r)
        return r.c.rid.in_(sub)

    def known_type(self, name: str) -> bool:
        from fkj.model.validation import is_known_type
        return is_known_type(name)

    def param(self, rtype: str | None, code: str) -> SearchParam | None:
        if rtype is None:
            return self.registry.get("Resource", code)
        return self.registry.get(rtype, code)

    def criterion(self, r, rtype: str | None, raw_name: str, value: str, depth: int = 0):
        if depth == 0:
            self._top, self._branches = raw_name, 0
        if depth > MAX_CHAIN_DEPTH:
            raise InvalidSearch(f"{raw_name}: chains deeper than {MAX_CHAIN_DEPTH} are not "
                                "supported", expression=raw_name)
        if raw_name.startswith("_has:"):
            return self._has(r, rtype, raw_name, value, depth)
        head, dot, rest = raw_name.partition(".")
        name, modifier = parse_name(head)
        if name in ("_type",):
            return None
        if name == "_id" and not dot:
            return self._resource_column(r.c.id, modifier, value, raw_name)
        if name == "_lastUpdated" and not dot:
            return self._last_updated(r, modifier, value, raw_name)
        if name == "_list" and not dot:
            return self._list(r, value)
        if name == "_compartment" and not dot:
            return self._compartment(r, rtype, value, raw_name)
        p = self.param(rtype, name)
        if p is None:
            msg = f"unknown search parameter {name!r} for {rtype or 'all types'}"
            if self.strict:
                raise InvalidSearch(msg + " (Prefer: handling=strict)", expression=raw_name)
            self.warnings.append(msg + "; it was ignored")
            return None
        if p.type == "special" or (p.type != "composite" and not p.expression and name not in ("_id",)):
            msg = f"search parameter {name!r} is not supported"
            if self.strict:
                raise InvalidSearch(msg, expression=raw_name)
            self.warnings.append(msg + "; it was ignored")
            return None
        if dot:
            return self._chain(r, rtype, p, modifier, rest, value, raw_name, depth)
        if modifier == "missing":
            if value not in ("true", "false"):
                raise InvalidSearch(f"{raw_name} must be true or false", expression=raw_name)
            if p.type == "composite":
                from fkj.search.composite import composite_present
                present = composite_present(self, r, rtype, p)
            else:
                table = INDEX_TABLES.get(p.type, INDEX_TABLES["token"])
                present = self._has_row(r, table, p.code, rtype, lambda idx: true(), True)
            return not_(present) if value == "true" else present
        values = split_values(value)
        if any(v == "" for v in values):
            raise InvalidSearch(f"parameter {raw_name} has an empty value", expression=raw_name)
        if p.type == "token" and modifier in ("in", "not-in"):
            return self._token_in(r, rtype, p, modifier, values, raw_name)
        if p.type == "token" and modifier == "of-type":
            return self._of_type(r, rtype, p, values, raw_name)
        if p.type == "composite":
            return self._composite(r, rtype, p, values, raw_name)
        table = INDEX_TABLES.get(p.type)
        if table is None:
            raise InvalidSearch(f"search parameter {name!r} of type {p.type} is not supported",
                                expression=raw_name)

        # Selective equality predicates (token/reference/string/uri values, which the
        # ``ix_idx_*_lookup`` indexes find directly) become ``r.rid IN (SELECT rid …)``, so
        # their short lists drive the query. So does a date parameter of one value (not
        # ``ne``) on one resource type: its comparison is stated with the range it implies on
        # ``low`` or ``high`` (``ix_idx_date_lookup`` / ``ix_idx_date_high``), so ``date=2019-05``
        # is a range scan of one month. Other ranges (several date values, number/quantity
        # prefixes), ``ne``, ``:not``, ``:contains``, ``:text`` and ``:identifier`` become
        # correlated ``EXISTS`` checked per candidate row through the ``ix_idx_*_rid``
        # (rid, param) index, instead of materialising every row of the parameter (SQLite
        # builds IN lists in full).
        ranged = p.type in ("date", "number", "quantity")
        bounded = (p.type == "date" and modifier is None and rtype is not None
                   and len(values) == 1 and _prefix(values[0])[0] != "ne")
        correlated = (ranged and not bounded) or modifier in (
            "not", "contains", "text", "identifier")

        def has(build, corr=correlated):
            return self._has_row(r, table, p.code, rtype, build, corr)

        plain = [v for v in values if not (ranged and _prefix(v)[0] == "ne")]
        ors = []
        if plain:
            ors.append(has(lambda idx: or_(*[
                self._value_predicate(p, idx, modifier, v, raw_name, bounded=bounded)
                for v in plain])))
        for v in values:
            if v in plain:
                continue
            # ne: the resource has a value, and none of its values equals the search value
            eq_v = "eq" + v[2:]
            ors.append(and_(has(lambda idx: true()), not_(has(
                lambda idx, eq_v=eq_v: self._value_predicate(p, idx, modifier, eq_v,
                                                             raw_name)))))
        cond = or_(*ors)
        if p.type == "token" and modifier == "not":
            return not_(cond)
        return cond

    def _branch(self) -> None:
        """Count one sub-search of the top-level parameter (a chain's target type, a
        ``_has``): without a bound, a chain through parameters with many target types
        multiplied at every level."""
        self._branches += 1
        if self._branches > self.limits.chain_branches:
            raise too_costly(f"{self._top} expands to more than {self.limits.chain_branches} "
                             "sub-searches (target types × chain levels; "
                             "FKJ_SEARCH_MAX_CHAIN); name the target types "
                             "(subject:Patient.name)", self._top)

    def _has_row(self, r, table, code: str, rtype, build, correlated: bool):
        """``r`` has a row of ``table`` for parameter ``code`` satisfying ``build(idx)``:
        ``r.rid IN (SELECT rid …)`` (an index lookup that drives the query) or, when
        ``correlated``, ``EXISTS (SELECT 1 … WHERE idx.rid = r.rid …)`` (a per-row check).
        Both mean the same; only the plan differs."""
        idx = table.alias()
        conds = [self._param_is(idx, rtype, code), *([idx.c.type == rtype] if rtype else [])]
        if not correlated and r is self.top and self.rid_floor is not None:
            conds.append(idx.c.rid > self.rid_floor)
        if not correlated and r is self.top:
            # a candidate to drive the query (see run_search)
            n = self._driver_no
            self._driver_no += 1
            if self.fence is not None:
                keep, sub = self.fence
                if n == keep and sub is not None:
                    return self.rid_in(r, sub)
                return true()  # inside the fence's sub-select, or the merge (run_search)
            if n in self.demote:
                correlated = True
            else:
                self.drivers.append((table.name[4:], select(idx.c.rid).where(
                    idx.c.tenant == self.tenant, *conds, build(idx))))
        if correlated:
            # per row through ix_idx_*_rid (rid, param), never a lookup index (see noidx)
            return exists().where(idx.c.rid == r.c.rid, self.noidx(idx.c.tenant) == self.tenant,
                                  *conds, build(idx))
        return self.rid_in(r, select(idx.c.rid).where(idx.c.tenant == self.tenant, *conds,
                                                       build(idx)))

    def _param_is(self, idx, rtype, code: str):
        """``idx.param`` names ``code``'s rows (both parameters of a ``combo-*`` one)."""
        stored = stored_params(self.param(rtype, code), code) if rtype else (code,)
        return idx.c.param == stored[0] if len(stored) == 1 else idx.c.param.in_(stored)

    def _value_predicate(self, p: SearchParam, idx, modifier, value, raw_name,
                         bounded: bool = False):
        return self.type_predicate(p.type, idx, modifier, value, raw_name, bounded=bounded)

    def type_predicate(self, t: str, idx, modifier, value, raw_name, *, bounded: bool = False):
        """``value`` of a parameter of search type ``t`` against the columns of ``idx`` (an
        index table, or a composite component's slots)."""
        if t == "string":
            return string_p.predicate(idx, modifier, value, raw_name,
                                      dialect=self.conn.dialect.name)
        if t == "token":
            return token_p.predicate(idx, None if modifier == "not" else modifier, value, raw_name)
        if t == "reference":
            return reference_p.predicate(idx, modifier, value, raw_name, own_base=self.own_base,
                                         known_type=self.known_type)
        if t == "date":
            return date_p.predicate(idx.c.low, idx.c.high, modifier, value, raw_name,
                                    bounded=bounded)
        if t == "number":
            return number_p.predicate(idx, modifier, value, raw_name)
        if t == "quantity":
            return number_p.quantity_predicate(idx, modifier, value, raw_name)
        if t == "uri":
            return uri_p.predicate(idx, modifier, value, raw_name)
        raise InvalidSearch(f"parameter type {t} is not supported", expression=raw_name)

    def _resource_column(self, col, modifier, value, raw_name):
        if modifier not in (None, "not", "missing"):
            raise InvalidSearch(f"modifier :{modifier} is not valid for {raw_name}",
                                expression=raw_name)
        if modifier == "missing":
            return false() if value == "true" else true()
        ids = split_values(value)
        return col.not_in(ids) if modifier == "not" else col.in_(ids)

    def _last_updated(self, r, modifier, value, raw_name):
        from fkj.search.params.ranges import compare
        if modifier is not None:
            raise InvalidSearch(f"modifier :{modifier} is not valid for _lastUpdated",
                                expression=raw_name)
        ors = []
        for v in split_values(value):
            prefix, text = _prefix(v)
            try:
                lo, hi = date_p.date_range(text)
            except (ValueError, OverflowError):
                raise InvalidSearch(f"_lastUpdated: {v!r} is not a valid date",
                                    expression=raw_name) from None
            # stored as microseconds; the stored "range" is a single microsecond
            col = r.c.last_updated
            ors.append(compare(col, col + 1, prefix, lo * 1e6, hi * 1e6, 0.0))
        return or_(*ors)

    def _list(self, r, value):
        ref = INDEX_TABLES["reference"].alias()
        lst = resource.alias()
        list_rids = select(lst.c.rid).where(lst.c.tenant == self.tenant, lst.c.type == "List",
                                            lst.c.id.in_(split_values(value)),
                                            lst.c.deleted.is_(False), *self._policy(lst, "List"))
        return r.c.id.in_(select(ref.c.target_id).where(
            ref.c.tenant == self.tenant, ref.c.type == "List", ref.c.param == "item",
            ref.c.target_type == r.c.type, ref.c.rid.in_(list_rids)))

    def _chain(self, r, rtype, p: SearchParam, modifier, rest, value, raw_name, depth):
        if p.type != "reference":
            raise InvalidSearch(f"{raw_name}: only reference parameters can be chained",
                                expression=raw_name)
        targets = [modifier] if modifier else list(p.target)
        if modifier and modifier not in p.target and p.target:
            raise InvalidSearch(f"{raw_name}: {p.code} cannot refer to {modifier}",
                                expression=raw_name)
        ref = INDEX_TABLES["reference"].alias()
        ors = []
        for t in targets:
            inner_name = rest.split(".", 1)[0]
            if not inner_name.startswith("_has") and self.param(t, parse_name(inner_name)[0]) is None \
                    and parse_name(inner_name)[0] not in ("_id", "_lastUpdated"):
                continue
            self._branch()
            t_r = resource.alias()
            inner = self.criterion(t_r, t, rest, value, depth + 1)
            if inner is None:
                continue
            # each chain step is a CTE: flat SQL however deep the chain (SQLite's parser
            # overflows on deeply nested sub-selects)
            targets_cte = select(t_r.c.id).where(*self.scope(t_r, [t]),
                                                 t_r.c.deleted.is_(False), inner,
                                                 *self._policy(t_r, t)).cte()
            ors.append(and_(ref.c.target_type == t,
                            ref.c.target_id.in_(select(targets_cte.c.id))))
        if not ors:
            msg = f"{raw_name}: no target type of {p.code} has parameter {rest!r}"
            if self.strict:
                raise InvalidSearch(msg + " (Prefer: handling=strict)", expression=raw_name)
            self.warnings.append(msg + "; it was ignored")
            return None
        sub = select(ref.c.rid).where(ref.c.tenant == self.tenant, ref.c.param == p.code,
                                      *([ref.c.type == rtype] if rtype else []), or_(*ors)).cte()
        return self.rid_in(r, select(sub.c.rid))

    def _has(self, r, rtype, raw_name, value, depth):
        parts = raw_name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise InvalidSearch(f"{raw_name}: _has must be _has:Type:reference:parameter",
                                expression=raw_name)
        _, other, ref_param, inner_name = parts
        if not self.known_type(other):
            raise InvalidSearch(f"{raw_name}: unknown type {other}", expression=raw_name)
        p = self.param(other, ref_param)
        if p is None or p.type != "reference":
            raise InvalidSearch(f"{raw_name}: {other} has no reference parameter {ref_param}",
                                expression=raw_name)
        self._branch()
        o_r = resource.alias()
        inner = self.criterion(o_r, other, inner_name, value, depth + 1)
        if inner is None:
            return None  # an unknown inner parameter: already warned (or refused if strict)
        ref = INDEX_TABLES["reference"].alias()
        others = select(o_r.c.rid).where(*self.scope(o_r, [other]),
                                         o_r.c.deleted.is_(False), inner,
                                         *self._policy(o_r, other)).cte()
        # per matching resource through ix_idx_reference_rid (rid, param)
        conds = [self.noidx(ref.c.tenant) == self.tenant, ref.c.type == other,
                 ref.c.param == ref_param, ref.c.rid.in_(select(others.c.rid))]
        if rtype:
            conds.append(ref.c.target_type == rtype)
            targets = select(ref.c.target_id).where(*conds).cte()
            return r.c.id.in_(select(targets.c.target_id))
        conds.append(ref.c.target_type == r.c.type)
        return r.c.id.in_(select(ref.c.target_id).where(*conds))

    def _compartment(self, r, rtype, value, raw_name):
        """``_compartment=Patient/123``: the resources of each member type that refer to the
        owner through one of the type's compartment parameters (and the owner itself).

        One ``r.rid IN (…)`` over a single ``idx_reference`` range (tenant, target type and
        id: ``ix_idx_reference_target``), the (type, parameter) pairs checked per index row,
        plus the owner — instead of one sub-select per member type OR-ed together."""
        from fkj.search.compartments import compartment_params, definitions, member_types
        ctype, _, cid = value.partition("/")
        if ctype not in definitions() or not cid:
            raise InvalidSearch(f"{raw_name}: {value!r} is not a compartment",
                                expression=raw_name)
        types = [rtype] if rtype else sorted(set(member_types(ctype)) | {ctype})
        by_codes: dict[tuple[str, ...], list[str]] = {}   # parameter codes -> member types
        owner_types = []
        for t in types:
            params = compartment_params(ctype, t)
            if t == ctype or "{def}" in params:
                owner_types.append(t)
            codes = tuple(sorted(c for c in params if c != "{def}"
                                 and (sp := self.param(t, c)) is not None
                                 and sp.type == "reference"))
            if codes:
                by_codes.setdefault(codes, []).append(t)
        parts = []
        if by_codes:
            ref = INDEX_TABLES["reference"].alias()
            pairs = [and_(ref.c.type.in_(ts) if len(ts) > 1 else ref.c.type == ts[0],
                          ref.c.param.in_(codes) if len(codes) > 1 else ref.c.param == codes[0])
                     for codes, ts in sorted(by_codes.items())]
            parts.append(select(ref.c.rid).where(
                ref.c.tenant == self.tenant, ref.c.target_type == ctype,
                ref.c.target_id == cid, or_(*pairs)))
        if owner_types:
            o = resource.alias()
            parts.append(select(o.c.rid).where(
                o.c.tenant == self.tenant,
                o.c.type.in_(owner_types) if len(owner_types) > 1 else o.c.type == owner_types[0],
                o.c.id == cid))
        if not parts:
            return false()
        return self.rid_in(r, parts[0] if len(parts) == 1 else union_all(*parts))

    def _token_in(self, r, rtype, p, modifier, values, raw_name):
        from fkj.search.valuesets import expand_codes
        codes = []
        for v in values:
            codes.extend(expand_codes(self.repo, self.conn, v, raw_name,
                                      policy=self._policy(resource, "ValueSet")))
        def build(idx):
            return or_(*[and_(idx.c.system == key(s), idx.c.code == key(c))
                         for s, c in codes] or [false()])
        if modifier == "not-in":
            return not_(self._has_row(r, INDEX_TABLES["token"], p.code, rtype, build, True))
        return self._has_row(r, INDEX_TABLES["token"], p.code, rtype, build, False)

    def _of_type(self, r, rtype, p, values, raw_name):
        idx = INDEX_TABLES["token"].alias()
        ors = []
        for v in values:
            system, code, val = token_p.of_type_parts(v, raw_name)
            ors.append(and_(idx.c.system == key(f"{system}|{code}"), idx.c.code == key(val)))
        sub = select(idx.c.rid).where(idx.c.tenant == self.tenant,
                                      idx.c.param == p.code + ":of-type",
                                      *([idx.c.type == rtype] if rtype else []), or_(*ors))
        return self.rid_in(r, sub)

    def _composite(self, r, rtype, p, values, raw_name):
        from fkj.search.composite import composite_criterion
        return composite_criterion(self, r, rtype, p, values, raw_name)

    # ------------------------------------------------------------------------ sorting
    def sort_expr(self, r, rtype, name):
        if name == "_id":
            return r.c.id
        if name == "_lastUpdated":
            return r.c.last_updated
        p = self.param(rtype, name)
        if p is None or p.type not in INDEX_TABLES or p.type == "composite":
            raise InvalidSearch(f"_sort: cannot sort by {name!r}", expression="_sort")
        idx = INDEX_TABLES[p.type].alias()
        col = idx.c[{"string": "norm", "token": "code", "reference": "target_id",
                     "date": "low", "number": "low", "quantity": "low", "uri": "uri"}[p.type]]
        if p.type in ("string", "uri"):  # the whole value, not its bounded key
            col = whole(col, idx.c[f"{col.name}_long"])
        return (select(func.min(col)).where(idx.c.rid == r.c.rid,
                                            self._param_is(idx, rtype, p.code))
                .scalar_subquery())

    # ------------------------------------------------------------------------ includes
    def includes(self, matches: list[Row], opts: Options) -> list[Row]:
        seen = {(m.type, m.id) for m in matches}
        out: list[Row] = []
        frontier = matches
        for round_no in range(MAX_INCLUDE_ROUNDS):
            found: list[Row] = []
            for src_type, param, target, iterate in opts.include:
                if round_no > 0 and not iterate:
                    continue
                found += self._include_targets(frontier, src_type, param, target, seen)
            for src_type, param, target, iterate in opts.revinclude:
                if round_no > 0 and not iterate:
                    continue
                found += self._revinclude(frontier, src_type, param, target)
            fresh = []
            for row in found:
                if (row.type, row.id) not in seen:
                    seen.add((row.type, row.id))
                    fresh.append(row)
            out += fresh
            frontier = fresh
            if not fresh:
                break
        return out

    def _include_targets(self, rows, src_type, param, target, seen=frozenset()) -> list[Row]:
        rids = [x.rid for x in rows if src_type == "*" or x.type == src_type]
        if not rids:
            return []
        ref = INDEX_TABLES["reference"].alias()
        # through ix_idx_reference_rid (rid, param): the rows of the page's resources only
        targets = select(ref.c.target_type, ref.c.target_id).where(
            self.noidx(ref.c.tenant) == self.tenant, ref.c.rid.in_(rids),
            ref.c.target_type.is_not(None), ref.c.target_id.is_not(None))
        if param != "*":
            targets = targets.where(ref.c.param == param)
        if target:
            targets = targets.where(ref.c.target_type == target)
        # the targets and their resources in one statement; those already in the result
        # are dropped here (includes() would drop them anyway)
        r2 = resource.alias()
        q = select(r2.c.rid, r2.c.type, r2.c.id, r2.c.version, r2.c.last_updated, r2.c.content) \
            .where(r2.c.tenant == self.tenant, r2.c.deleted.is_(False),
                   tuple_(r2.c.type, r2.c.id).in_(targets), *self._policy(r2))
        return [Row(*x) for x in self.conn.execute(q) if (x.type, x.id) not in seen]

    def _revinclude(self, rows, src_type, param, target) -> list[Row]:
        if not rows:
            return []
        ref = INDEX_TABLES["reference"].alias()
        r2 = resource.alias()
        by_type: dict[str, list[str]] = {}
        for x in rows:
            by_type.setdefault(x.type, []).append(x.id)
        ors = [and_(ref.c.target_type == t, ref.c.target_id.in_(ids)) for t, ids in by_type.items()
               if not target or t == target]
        if not ors:
            return []
        conds = [ref.c.tenant == self.tenant, or_(*ors)]
        if src_type != "*":
            conds.append(ref.c.type == src_type)
        if param != "*":
            conds.append(ref.c.param == param)
        q = select(r2.c.rid, r2.c.type, r2.c.id, r2.c.version, r2.c.last_updated, r2.c.content) \
            .where(r2.c.rid.in_(select(ref.c.rid).where(*conds)), r2.c.deleted.is_(False),
                   self.noidx(r2.c.tenant) == self.tenant, *self._policy(r2)).limit(1000)
        return [Row(*x) for x in self.conn.execute(q)]

    def _policy(self, r2, rtype: str | None = None) -> list:
        """The repository's ``search_filters`` hooks for a resource alias (access policy)."""
        out = []
        for hook in self.repo.services.hooks.search_filters:
            extra = hook(self.repo, r2, rtype)
            if extra is not None:
                out.append(extra)
        return out


def _prefix(v: str) -> tuple[str, str]:
    from fkj.search.parse import split_prefix
    return split_prefix(v)


__all__ = ["run_search", "match_ids", "SearchResult", "Row", "Options", "Any"]
