"""The access decision for one request: who the caller is related to (care relations,
emergency grants), which blocks (sperringer) apply to the caller, which sensitive labels and
resource categories the caller may see — and the same decision in two forms:

* :func:`sql_condition` — an SQL condition on a ``resource`` alias (search, includes,
  chains, ``_has``, totals, ``$everything``, conditional matching, export);
* :func:`decide` — Python, on one resource dict (read, vread, history rows, writes).

``tests/policy/test_agreement.py`` checks that both forms give the same answer on a
generated set of resources.

"A resource's patients" are :func:`fkj.repository.patients.patients_of`: the
Patient-compartment references of the resource (R4 CompartmentDefinition; ``Patient`` itself
by its id; ``Device.patient`` too), and an *unknown* patient when it names one only by an
identifier that was never resolved (stored before references were resolved at write time) —
no one is related to an unknown patient. A resource with several patients is visible only if
every one of them is. Non-patient resources (Practitioner, Organization, Medication, ValueSet
…) are visible to all personnel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from sqlalchemy import and_, exists, false, literal, not_, or_, select, true, tuple_

from fkj.model.identifiers import PERSON_IDENTIFIER_SYSTEMS, PID_SYSTEMS
from fkj.repository import patients as P
from fkj.security.policy import roles as R
from fkj.security.policy import sensitivity as S
from fkj.store.idsets import IdSet, member
from fkj.store.memoized import memoized
from fkj.store.schema import idx_date, idx_reference, idx_token, resource

CONSENT_KIND = "http://fkj.no/fhir/CodeSystem/consent-kind"
BLOCKED_TEXT = "noe informasjon er sperret av pasienten"
#: related patients up to this many go into search SQL as a literal list
LITERAL_LIMIT = 2000


# ------------------------------------------------------------------------------ linkage
# "A resource's patients" is one answer for the whole platform (fkj.repository.patients):
# the policy's two forms, the audit record and the events all use it.
patient_links = P.patient_links
_links_of = P.links_of
patients_of = P.patients_of


def _rows(resource_dict: dict, table: str, registry=None) -> list[tuple]:
    from fkj.search.extract import extract
    return extract(resource_dict, registry).get(table, [])


def covers(res: dict, param: str, now: float, bounds: list | None = None) -> bool:
    """Whether the date parameter's period covers ``now`` (no value: open). ``bounds``
    collects the period's start and end when they lie after ``now`` (when the answer
    changes)."""
    from fkj.search.extract import param_rows
    rows = param_rows(res, frozenset((param,)), "date")
    if bounds is not None:
        bounds.extend(x for _, lo, hi in rows for x in (lo, hi) if x is not None and x > now)
    return not rows or any(lo <= now < hi for _, lo, hi in rows)


def _is_sperring(res: dict) -> bool:
    return res.get("resourceType") == "Consent" and any(
        isinstance(t, dict) and t.get("system") == CONSENT_KIND and t.get("code") == "sperring"
        for t in (res.get("meta") or {}).get("tag") or [])


# ------------------------------------------------------------------------------ context
@dataclass
class Rule:
    """One deny provision of a sperring that applies to the caller (all set criteria hold)."""

    patient: str
    labels: frozenset[tuple[str, str]] | None = None
    classes: frozenset[str] | None = None
    data: frozenset[tuple[str, str]] | None = None

    @property
    def whole(self) -> bool:
        return self.labels is None and self.classes is None and self.data is None

    def matches(self, res: dict, pats: set[str]) -> bool:
        if self.patient not in pats:
            return False
        if self.labels is not None and not (self.labels & S.labels(res)):
            return False
        if self.classes is not None and res.get("resourceType") not in self.classes:
            return False
        if self.data is not None and (res.get("resourceType"), res.get("id")) not in self.data:
            return False
        return True


@dataclass
class Context:
    kind: str                      # practitioner | citizen
    tenant: str
    now: float                     # epoch seconds
    practitioner: str | None = None
    role_ids: frozenset[str] = frozenset()
    unit: str | None = None        # "Organization/x"
    read_cats: frozenset[str] = frozenset()
    write_cats: frozenset[str] = frozenset()
    related: frozenset[str] = frozenset()   # care relation (Python form)
    grants: dict = field(default_factory=dict)   # patient → emergency_access row
    rules: list[Rule] = field(default_factory=list)
    hidden_labels: frozenset[str] = frozenset()
    own: frozenset[str] = frozenset()       # citizen: own Patient ids
    #: patients with a block that hides something from the caller (for blocked_notice)
    noticed: frozenset[str] = frozenset()
    #: SQL parts that do not depend on the resource alias (built once per context)
    sql_cache: dict = field(default_factory=dict)
    #: when the decision changes by itself (a period, grant or block starts or ends)
    valid_until: float = float("inf")
    dialect: str = "sqlite"

    def cached(self, key, build):
        if key not in self.sql_cache:
            self.sql_cache[key] = build()
        return self.sql_cache[key]

    @property
    def whole_blocked(self) -> frozenset[str]:
        return frozenset(r.patient for r in self.rules if r.whole)

    @property
    def allowed(self) -> frozenset[str]:
        return (self.related | frozenset(self.grants)) - self.whole_blocked

    @property
    def me_refs(self) -> set[tuple[str, str]]:
        out = {("PractitionerRole", i) for i in self.role_ids}
        if self.practitioner:
            out.add(("Practitioner", self.practitioner))
        return out


def _ref_id(ref: str | None, rtype: str) -> str | None:
    if not ref:
        return None
    if "/" not in ref:
        return ref
    t, _, i = ref.rstrip("/").rpartition("/")
    return i if t.rsplit("/", 1)[-1] == rtype else None


def context(repo) -> Context:
    """The caller's decision context.

    Outside a write transaction it comes from the process-wide cache (valid for the tenant's
    current policy epoch, see :mod:`fkj.security.policy.cache`) and is kept on the repository
    for the rest of the request. Inside one it is rebuilt from the transaction's connection
    whenever the transaction has written a resource the decision depends on."""
    from fkj.security.policy import cache as C

    uow = repo._uow
    if uow is not None:
        marker = (id(uow), sum(op.type in C.EPOCH_TYPES for op in uow._ops))
        held = getattr(repo, "_fkj_policy_uow_ctx", None)
        if held is not None and held[0] == marker:
            return held[1]
        ctx = _build(repo)
        repo._fkj_policy_uow_ctx = (marker, ctx)
        return ctx
    held = getattr(repo, "_fkj_policy_ctx", None)
    if held is not None:
        return held
    cache = C.cache_of(repo.services)
    key = C.principal_key(repo.tenant, repo.principal)
    epoch = C.request_epoch(repo)
    now = time.time()
    ctx = cache.get(key, epoch, now)
    if ctx is None:
        ctx = _build(repo)
        cache.put(key, epoch, min(ctx.valid_until, now + C.MAX_AGE), ctx)
    repo._fkj_policy_ctx = ctx
    return ctx


def _build(repo) -> Context:
    from fkj.security.policy.emergency import active_grants
    from fkj.store.tenants import tenant_settings

    p = repo.principal
    now = time.time()
    if p.kind == "citizen":
        with repo._reading() as conn:
            own = _own_patients(conn, repo.tenant, p.pid)
        return Context("citizen", repo.tenant, now, own=frozenset(own))
    prac = _ref_id(p.fhir_user, "Practitioner")
    unit_id = _ref_id(p.unit, "Organization")
    unit = f"Organization/{unit_id}" if unit_id else None
    read_cats, write_cats = R.categories(frozenset(p.roles))
    try:
        config = tenant_settings(repo.services.engine, repo.tenant)
    except Exception:  # noqa: BLE001 - an unknown tenant fails elsewhere
        config = {}
    hidden, anywhere, home = S.label_access(config, frozenset(p.roles), unit)
    ctx = Context("practitioner", repo.tenant, now, practitioner=prac, unit=unit,
                  read_cats=read_cats, write_cats=write_cats, hidden_labels=hidden,
                  dialect=repo.services.engine.dialect.name)
    bounds: list[float] = []
    with repo._reading() as conn:
        ctx.role_ids = frozenset(_role_ids(conn, repo.tenant, prac))
        ctx.related = frozenset(related_patients(conn, ctx, bounds))
        ctx.rules = _rules(conn, ctx, home, bounds)
    ctx.grants = active_grants(repo)
    bounds.extend(g["expires"] / 1_000_000 for g in ctx.grants.values())
    ctx.valid_until = min(bounds, default=float("inf"))
    ctx.noticed = frozenset(r.patient for r in ctx.rules) & (
        ctx.related | frozenset(ctx.grants))
    return ctx


def _own_patients(conn, tenant: str, pid: str | None) -> set[str]:
    if not pid:
        return set()
    tok = idx_token.alias()
    q = select(resource.c.id).where(
        resource.c.tenant == tenant, resource.c.type == "Patient",
        resource.c.deleted.is_(False),
        resource.c.rid.in_(select(tok.c.rid).where(
            tok.c.tenant == tenant, tok.c.type == "Patient", tok.c.param == "identifier",
            tok.c.system.in_(sorted(PID_SYSTEMS)), tok.c.code == pid)))
    return {x for x, in conn.execute(q)}


def _role_ids(conn, tenant: str, prac: str | None) -> set[str]:
    if not prac:
        return set()
    ref = idx_reference.alias()
    q = select(resource.c.id).where(
        resource.c.tenant == tenant, resource.c.type == "PractitionerRole",
        resource.c.deleted.is_(False), resource.c.rid.in_(select(ref.c.rid).where(
            ref.c.tenant == tenant, ref.c.type == "PractitionerRole",
            ref.c.param == "practitioner", ref.c.target_type == "Practitioner",
            ref.c.target_id == prac)))
    return {x for x, in conn.execute(q)}


def _load(conn, tenant: str, rtype: str, rids_select) -> list[dict]:
    q = select(resource.c.content).where(resource.c.tenant == tenant, resource.c.type == rtype,
                                         resource.c.deleted.is_(False),
                                         resource.c.rid.in_(rids_select))
    return [orjson.loads(c) for c, in conn.execute(q)]


def _refs_to(tenant, rtype, param, targets: list[tuple[str, str]]):
    ref = idx_reference.alias()
    ors = [and_(ref.c.target_type == t, ref.c.target_id == i) for t, i in targets]
    return select(ref.c.rid).where(ref.c.tenant == tenant, ref.c.type == rtype,
                                   ref.c.param == param, or_(*ors) if ors else false())


# ------------------------------------------------------------------------------ care relation
def related_patients(conn, ctx: Context, bounds: list | None = None) -> set[str]:
    """Python form of the care relation: candidate CareTeam/EpisodeOfCare/ServiceRequest
    resources are found through their references to the caller or the caller's unit, then
    status, period, membership and patient are evaluated on the resource JSON."""
    t, now = ctx.tenant, ctx.now
    me = ctx.me_refs
    out: set[str] = set()
    my_teams: set[str] = set()
    for ct in _load(conn, t, "CareTeam", _refs_to(t, "CareTeam", "participant", list(me))):
        members = {(row[1], row[2]) for row in _rows(ct, "reference") if row[0] == "participant"}
        if not members & me:
            continue
        my_teams.add(ct["id"])
        if ct.get("status") == "active" and covers(ct, "date", now, bounds):
            out |= patients_of(ct) - {P.UNRESOLVED}
    unit = [("Organization", ctx.unit.split("/", 1)[1])] if ctx.unit else []
    eoc_rids = _refs_to(t, "EpisodeOfCare", "team", [("CareTeam", i) for i in my_teams])
    eoc_unit = _refs_to(t, "EpisodeOfCare", "organization", unit)
    for eoc in _load(conn, t, "EpisodeOfCare", eoc_rids.union(eoc_unit)):
        if eoc.get("status") != "active" or not covers(eoc, "date", now, bounds):
            continue
        teams = {_ref_id((x or {}).get("reference"), "CareTeam") for x in eoc.get("team") or []
                 if isinstance(x, dict)}
        mo = _ref_id((eoc.get("managingOrganization") or {}).get("reference"), "Organization")
        if teams & my_teams or (ctx.unit and mo and f"Organization/{mo}" == ctx.unit):
            out |= patients_of(eoc) - {P.UNRESOLVED}
    for sr in _load(conn, t, "ServiceRequest", _refs_to(t, "ServiceRequest", "performer", unit)):
        if sr.get("status") == "active" and covers(sr, "occurrence", now, bounds):
            out |= patients_of(sr) - {P.UNRESOLVED}
    return out


def _active(tenant, rid_col, rtype: str):
    tok = idx_token.alias()
    return rid_col.in_(select(tok.c.rid).where(tok.c.tenant == tenant, tok.c.type == rtype,
                                               tok.c.param == "status", tok.c.code == "active"))


def _in_period(tenant, rid_col, rtype: str, param: str, now: float):
    d1, d2 = idx_date.alias(), idx_date.alias()
    covering = select(d1.c.rid).where(d1.c.tenant == tenant, d1.c.type == rtype,
                                      d1.c.param == param, d1.c.low <= now, d1.c.high > now)
    dated = select(d2.c.rid).where(d2.c.tenant == tenant, d2.c.type == rtype,
                                   d2.c.param == param)
    return or_(rid_col.in_(covering), rid_col.not_in(dated))


def _patient_ids(tenant, rtype: str, rids):
    ref = idx_reference.alias()
    return select(ref.c.target_id).where(
        ref.c.tenant == tenant, ref.c.type == rtype, ref.c.param.in_(sorted(_links_of(rtype))),
        ref.c.target_type == "Patient", ref.c.target_id.is_not(None), ref.c.rid.in_(rids))


def related_select(ctx: Context):
    """SQL form of the care relation: a select of the ids of the related patients. Each step
    is a CTE, so the SQL stays flat (SQLite's parser overflows on deeply nested sub-selects)."""
    t, now = ctx.tenant, ctx.now
    parts = []

    def eligible(rtype: str, rids, period_param: str):
        x = resource.alias()
        return select(x.c.rid).where(x.c.tenant == t, x.c.type == rtype, x.c.deleted.is_(False),
                                     x.c.rid.in_(rids), _active(t, x.c.rid, rtype),
                                     _in_period(t, x.c.rid, rtype, period_param, now)).cte()

    def patients(rtype: str, cte):
        return _patient_ids(t, rtype, select(cte.c.rid))

    if ctx.practitioner:
        prole, pref = resource.alias(), idx_reference.alias()
        role_ids = select(prole.c.id).where(
            prole.c.tenant == t, prole.c.type == "PractitionerRole", prole.c.deleted.is_(False),
            prole.c.rid.in_(select(pref.c.rid).where(
                pref.c.tenant == t, pref.c.type == "PractitionerRole",
                pref.c.param == "practitioner", pref.c.target_type == "Practitioner",
                pref.c.target_id == ctx.practitioner))).cte()
        part = idx_reference.alias()
        my_teams = select(part.c.rid).where(
            part.c.tenant == t, part.c.type == "CareTeam", part.c.param == "participant",
            or_(and_(part.c.target_type == "Practitioner", part.c.target_id == ctx.practitioner),
                and_(part.c.target_type == "PractitionerRole",
                     part.c.target_id.in_(select(role_ids.c.id))))).cte()
        # (a) the caller is on the patient's CareTeam, active, within its period
        parts.append(patients("CareTeam", eligible("CareTeam", select(my_teams.c.rid), "date")))
        # (b) the caller is on the team of an active EpisodeOfCare, within its period
        ct2 = resource.alias()
        my_team_ids = select(ct2.c.id).where(ct2.c.tenant == t, ct2.c.type == "CareTeam",
                                             ct2.c.rid.in_(select(my_teams.c.rid))).cte()
        eref = idx_reference.alias()
        team_eocs = select(eref.c.rid).where(
            eref.c.tenant == t, eref.c.type == "EpisodeOfCare", eref.c.param == "team",
            eref.c.target_type == "CareTeam", eref.c.target_id.in_(select(my_team_ids.c.id)))
        parts.append(patients("EpisodeOfCare", eligible("EpisodeOfCare", team_eocs, "date")))
    if ctx.unit:
        unit_id = ctx.unit.split("/", 1)[1]
        # (c) the caller's unit delivers an active service: EpisodeOfCare managed by the unit …
        uref = idx_reference.alias()
        unit_eocs = select(uref.c.rid).where(
            uref.c.tenant == t, uref.c.type == "EpisodeOfCare", uref.c.param == "organization",
            uref.c.target_type == "Organization", uref.c.target_id == unit_id)
        parts.append(patients("EpisodeOfCare", eligible("EpisodeOfCare", unit_eocs, "date")))
        # … or an active ServiceRequest with the unit as performer, within its occurrence
        sref = idx_reference.alias()
        unit_srs = select(sref.c.rid).where(
            sref.c.tenant == t, sref.c.type == "ServiceRequest", sref.c.param == "performer",
            sref.c.target_type == "Organization", sref.c.target_id == unit_id)
        parts.append(patients("ServiceRequest",
                              eligible("ServiceRequest", unit_srs, "occurrence")))
    if not parts:
        return None
    from sqlalchemy import union
    related = union(*parts).cte() if len(parts) > 1 else parts[0].cte()
    return select(related.c.target_id)


# ------------------------------------------------------------------------------ blocks
def _rules(conn, ctx: Context, home_labels: frozenset[str],
           bounds: list | None = None) -> list[Rule]:
    """The deny provisions of active sperring Consents that apply to the caller."""
    tok1, tok2 = idx_token.alias(), idx_token.alias()
    t = ctx.tenant
    rids = select(tok1.c.rid).where(
        tok1.c.tenant == t, tok1.c.type == "Consent", tok1.c.param == "_tag",
        tok1.c.system == CONSENT_KIND, tok1.c.code == "sperring",
        tok1.c.rid.in_(select(tok2.c.rid).where(tok2.c.tenant == t, tok2.c.type == "Consent",
                                                tok2.c.param == "status",
                                                tok2.c.code == "active")))
    out = []
    me = {f"{a}/{b}" for a, b in ctx.me_refs} | ({ctx.unit} if ctx.unit else set())
    for c in _load(conn, t, "Consent", rids):
        if bounds is not None:
            covers(c, "period", ctx.now, bounds)
        rule = consent_rule(c, ctx.now, me, home_labels)
        if rule is not None:
            out.append(rule)
    return out


def consent_rule(c: dict, now: float, me: set[str], home_labels: frozenset[str]) -> Rule | None:
    """The rule a sperring Consent imposes on a caller known by the references ``me``
    (Practitioner/…, PractitionerRole/…, Organization/<unit>); None if it does not apply."""
    if c.get("status") != "active" or not _is_sperring(c):
        return None
    prov = c.get("provision") or {}
    if prov.get("type", "deny") != "deny" or not covers(c, "period", now):
        return None
    pats = {_ref_id((c.get("patient") or {}).get("reference"), "Patient")} - {None}
    if len(pats) != 1:
        return None
    actors = [((a or {}).get("reference") or {}).get("reference") for a in prov.get("actor") or []
              if isinstance(a, dict)]
    actors = [a.split("/fhir/", 1)[-1].split("/", 1)[-1] if "://" in a else a
              for a in actors if a]
    if actors and not set(actors) & me:
        return None
    labels = classes = data = None
    if prov.get("securityLabel"):
        labels = frozenset((s.get("system"), s.get("code")) for s in prov["securityLabel"]
                           if isinstance(s, dict))
        if not actors and all(sys == S.ACTCODE and code in home_labels for sys, code in labels):
            return None  # the recording (home) unit keeps seeing its own data
    if prov.get("class"):
        classes = frozenset(x.get("code") for x in prov["class"] if isinstance(x, dict))
    if prov.get("data"):
        data = set()
        for d in prov["data"]:
            ref = ((d or {}).get("reference") or {}).get("reference") or ""
            typ, _, rid = ref.rpartition("/")
            if typ and rid:
                data.add((typ.rsplit("/", 1)[-1], rid))
        data = frozenset(data)
    return Rule(pats.pop(), labels, classes, data)


# ------------------------------------------------------------------------------ Python form
def decide(ctx: Context, res: dict, pats: set[str] | None = None) -> str | None:
    """None if the caller may see ``res``; else the reason: ``role``, ``relation``,
    ``blocked``, ``sensitive`` (practitioners) or ``not-own`` (citizens). ``pats``: the
    resource's patients when the caller has them already."""
    rtype = res.get("resourceType") or ""
    if pats is None:
        pats = patients_of(res)
    if ctx.kind == "citizen":
        if rtype not in R.patient_types():
            return None
        return None if pats and pats <= ctx.own else "not-own"
    # the care relation first: to someone with no relation to the patient the other
    # reasons (and with them the resource's existence) are not told
    allowed = ctx.related | frozenset(ctx.grants)
    if not pats <= allowed:
        return "relation"
    if R.resource_category(res) not in ctx.read_cats:
        return "role"
    if pats & ctx.whole_blocked:
        return "blocked"
    if S.restricted_labels(res) & ctx.hidden_labels:
        return "sensitive"
    if _is_sperring(res):
        return "blocked"
    if any(r.matches(res, pats) for r in ctx.rules if not r.whole):
        return "blocked"
    return None


# ------------------------------------------------------------------------------ SQL form
def _patient_match(tenant, r, rtype: str | None, pids):
    """SQL: the resource ``r`` belongs to one of the patients ``pids``."""
    pids = sorted(pids)
    ref = idx_reference.alias()
    pairs = _pairs(rtype)
    conds = [and_(r.c.type == "Patient", r.c.id.in_(pids))]
    if pairs:
        conds.append(exists().where(
            _per_row(ref, r, tenant), _pair_cond(ref, pairs), ref.c.target_id.in_(pids)))
    return or_(*conds)


def _is_in(col, values):
    """``col IN (values)`` without an expanding bind parameter for short lists: ``false``
    for none, ``col = v OR …`` for up to 16 (an expanding list is re-rendered on every
    execution; the policy's lists are fixed per caller), ``IN`` beyond."""
    values = list(values)
    if not values:
        return false()
    if len(values) <= 16:
        return or_(*[col == v for v in values])
    return col.in_(values)


def _not_in(col, values):
    """``col NOT IN (values)``, as :func:`_is_in` (``true`` for none)."""
    values = list(values)
    if not values:
        return true()
    if len(values) <= 16:
        return and_(*[col != v for v in values])
    return col.not_in(values)


def _member_of(col, values, dialect: str, name: str):
    """``col IN (values)`` as one bound JSON parameter rather than one per value (building
    and compiling hundreds of bind parameters per request cost more than the query)."""
    values = sorted(values)
    if len(values) <= 8:
        return _is_in(col, values)
    from sqlalchemy import String, column, text
    # a textual sub-select over one JSON parameter: cheap to build (no alias, no column
    # collection) and to send (psycopg escapes text arrays element by element with regular
    # expressions); both uses in one statement bind the same list under the same name
    sql = (f"SELECT json_array_elements_text(CAST(:{name} AS json)) AS value"
           if dialect == "postgresql" else f"SELECT value FROM json_each(:{name})")
    sub = text(sql).bindparams(**{name: orjson.dumps(values).decode()}).columns(
        column("value", String))
    return col.in_(sub)


def _per_row(ref, r, tenant):
    """The correlation of a per-row sub-select on ``idx_reference``: by ``rid`` (index
    ``ix_idx_reference_rid``). ``tenant`` and ``target_type`` are compared as expressions
    (``|| ''``) so that SQLite's planner, which has no statistics, cannot prefer the
    target index (it did: a scan of every Patient reference of the tenant per row)."""
    return and_(ref.c.rid == r.c.rid, ref.c.tenant.concat("") == tenant,
                ref.c.target_type.concat("") == "Patient")


def _unresolved_rows(ref, rtype: str | None):
    """SQL form of :func:`fkj.repository.patients.unresolved`: a row of one of the
    resource's :func:`~fkj.repository.patients.scan_params` naming the patient only by a
    person identifier."""
    pairs = P.scan_pairs() if rtype is None else tuple(
        (rtype, p) for p in sorted(P.scan_params(rtype)))
    return and_(ref.c.target_id.is_(None), _pair_cond(ref, pairs),
                ref.c.ident_system.in_(sorted(PERSON_IDENTIFIER_SYSTEMS)),
                or_(ref.c.target_type.is_(None), ref.c.target_type == "Patient"))


def _pairs(rtype: str | None):
    if rtype is None:
        return patient_links()
    return tuple((rtype, p) for p in sorted(_links_of(rtype)))


def _pair_cond(ref, pairs):
    types = {t for t, _ in pairs}
    if len(types) == 1:
        return and_(ref.c.type == next(iter(types)), _is_in(ref.c.param, [p for _, p in pairs]))
    return tuple_(ref.c.type, ref.c.param).in_(list(pairs))


def _token_rids(tenant, param: str, system: str | None, codes, rtype: str | None = None):
    tok = idx_token.alias()
    conds = [tok.c.tenant == tenant, tok.c.param == param, _is_in(tok.c.code, sorted(codes))]
    if system is not None:
        conds.append(tok.c.system == system)
    if rtype:
        conds.append(tok.c.type == rtype)
    return select(tok.c.rid).where(*conds)


def sql_condition(ctx: Context, r, rtype: str | None):
    """The decision as an SQL condition on the resource alias ``r``.

    Built conditions are kept on the context per (alias object, type): the search engine's
    main alias is one long-lived object, so a caller's repeated searches reuse the
    condition instead of rebuilding it (building it costs more than running it)."""
    key = ("condition", rtype)
    held = ctx.sql_cache.get(key)
    if held is not None and held[0] is r:
        return held[1]
    cond = _sql_condition(ctx, r, rtype)
    from fkj.search.engine import MAIN
    if r is MAIN:
        # kept for this caller's next searches: its statement-cache key is computed once
        # (fkj.store.memoized) instead of in every statement that holds it
        cond = memoized(cond)
    if len(ctx.sql_cache) < 256:
        ctx.sql_cache[key] = (r, cond)
    return cond


def _sql_condition(ctx: Context, r, rtype: str | None):
    t = ctx.tenant
    ref = idx_reference.alias()
    pairs = _pairs(rtype)
    if ctx.kind == "citizen":
        own = sorted(ctx.own)
        conds = [r.c.type.not_in(sorted(R.patient_types()))]
        if rtype is None or rtype in R.patient_types():
            ref2 = idx_reference.alias()
            linked = [and_(r.c.type == "Patient", r.c.id.in_(own))]
            mine = []
            if pairs:
                linked.append(exists().where(
                    ref2.c.rid == r.c.rid, ref2.c.tenant == t, _pair_cond(ref2, pairs),
                    ref2.c.target_type == "Patient", ref2.c.target_id.in_(own)))
                mine.append(not_(exists().where(
                    ref.c.rid == r.c.rid, ref.c.tenant.concat("") == t,
                    or_(and_(ref.c.target_type.concat("") == "Patient", _pair_cond(ref, pairs),
                             ref.c.target_id.is_not(None), ref.c.target_id.not_in(own)),
                        _unresolved_rows(ref, rtype)))))
            conds.append(and_(or_(*linked), *mine))
        return or_(*conds)

    conds = []
    # A search of one type (``rtype``) gets only the parts that can apply to that type: a
    # sub-select that cannot match still costs the planner (and SQLAlchemy) its share.
    def may_be(t_: str) -> bool:
        return rtype is None or rtype == t_

    # 1. role: categories of patient data the caller may read
    hidden_types = sorted(x for x in R.patient_types()
                          if x != "Observation" and R.category_of(x) not in ctx.read_cats)
    if rtype is not None:
        if rtype in hidden_types:
            return false()
    elif hidden_types:
        conds.append(_not_in(r.c.type, hidden_types))
    vitals, lab = "vitals" in ctx.read_cats, "lab" in ctx.read_cats
    if not (vitals and lab) and may_be("Observation"):
        labs = ctx.cached("labs", lambda: _token_rids(t, "category", None, ["laboratory"],
                                                      "Observation"))
        is_obs = r.c.type == "Observation" if rtype is None else true()
        if not vitals and not lab:
            conds.append(not_(is_obs))
        elif not lab:
            conds.append(not_(and_(is_obs, r.c.rid.in_(labs))))
        else:
            conds.append(not_(and_(is_obs, r.c.rid.not_in(labs))))
    # 2. care relation or emergency grant, for every patient of the resource
    grants = sorted(ctx.grants)
    whole = sorted(ctx.whole_blocked)

    # the care relation as computed for the context (a literal list), unless it is so long
    # that the sub-select is cheaper
    literal_related = len(ctx.related) <= LITERAL_LIMIT
    related = ctx.cached("related", lambda: sorted(ctx.related)
                         if literal_related else related_select(ctx))
    # SQLite: a longer list is loaded once per connection (fkj.store.idsets) instead of
    # being built into a temporary index by every statement
    related_set = (ctx.cached("related_set", lambda: IdSet(related))
                   if literal_related and ctx.dialect == "sqlite" and len(related) > 8
                   else None)

    def allowed(col):
        ors = [_is_in(col, grants)]
        if related_set is not None:
            ors.append(member(col, related_set))
        elif literal_related:
            ors.append(_member_of(col, related, ctx.dialect, "fkj_policy_related"))
        elif related is not None:
            ors.append(col.in_(related))
        return and_(or_(*ors), _not_in(col, whole))

    if rtype is None:
        conds.append(or_(r.c.type != "Patient", allowed(r.c.id)))
    elif rtype == "Patient":
        conds.append(allowed(r.c.id))
    if pairs:
        # no patient of the resource outside the allowed ones — an unknown patient (a person
        # identifier never resolved) included: one sub-select over the resource's rows
        conds.append(not_(exists().where(
            ref.c.rid == r.c.rid, ref.c.tenant.concat("") == t,
            or_(and_(ref.c.target_type.concat("") == "Patient", _pair_cond(ref, pairs),
                     ref.c.target_id.is_not(None), not_(allowed(ref.c.target_id))),
                _unresolved_rows(ref, rtype)))))
    # 3. sensitive labels
    if ctx.hidden_labels:
        conds.append(r.c.rid.not_in(ctx.cached("hidden", lambda: _token_rids(
            t, "_security", S.ACTCODE, ctx.hidden_labels))))
    # 4. sperring Consents themselves
    if may_be("Consent"):
        sperring = r.c.rid.in_(ctx.cached("sperring", lambda: _token_rids(
            t, "_tag", CONSENT_KIND, ["sperring"], "Consent")))
        conds.append(not_(and_(r.c.type == "Consent", sperring) if rtype is None
                          else sperring))
    # 5. partial blocks (by label, class or resource)
    hides = []
    for rule in ctx.rules:
        if rule.whole:
            continue
        parts = [_patient_match(t, r, rtype, [rule.patient])]
        if rule.labels is not None:
            tok = idx_token.alias()
            parts.append(r.c.rid.in_(select(tok.c.rid).where(
                tok.c.tenant == t, tok.c.param == "_security",
                or_(*[and_(tok.c.system == s, tok.c.code == c) for s, c in rule.labels]))))
        if rule.classes is not None:
            parts.append(_is_in(r.c.type, sorted(x for x in rule.classes if x)))
        if rule.data is not None:
            parts.append(or_(*[and_(r.c.type == ty, r.c.id == i) for ty, i in rule.data])
                         if rule.data else false())
        hides.append(and_(*parts))
    if hides:
        conds.append(not_(or_(*hides)))
    return and_(*conds) if conds else true()


__all__ = ["Context", "context", "decide", "sql_condition", "patients_of", "related_patients",
           "related_select", "consent_rule", "BLOCKED_TEXT", "literal"]
