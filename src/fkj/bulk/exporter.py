"""Writes a bulk export: one NDJSON file per resource type, streamed page by page.

Shared by ``$export`` (worker thread, the requesting principal) and ``fkj export`` (system
principal). Every query applies the access policy's ``search_filters`` hooks for the
principal, so a client gets only what it may read; single resources read by id (the Group of
a Group export) go through :meth:`Repository.read` and so ``check_result``. ``_typeFilter``
queries are compiled by the search engine's own criterion builder, under the same limits
as any search (:mod:`fkj.search.limits`).

The files hold patient data: they are created readable by the server's user only (mode
0600), in directories created with mode 0700 (:func:`private_dir`, :func:`private_file`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import and_, false, or_, select, true

from fkj.errors import BadRequest, FhirError, Forbidden, InvalidSearch, Issue
from fkj.search.limits import limits_of
from fkj.store.backend import scope
from fkj.store.cancel import statement_guard
from fkj.store.schema import INDEX_TABLES, resource

PAGE = 2000
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700 (only the server's user may
    list or enter them). ``mkdir``'s mode is masked by the umask, hence the ``chmod``;
    directories that exist already are left as they are."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)


def _private_opener(path: str, flags: int) -> int:
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # a file that existed keeps its mode through O_CREAT
    return fd


def private_file(path: Path):
    """``open(path, "wb")`` for a file only the server's user may read (mode 0600)."""
    return open(path, "wb", opener=_private_opener)


def parse_since(value: str) -> int:
    """A FHIR instant (or date/dateTime) → microseconds since the epoch."""
    v = value.strip().replace(" ", "+")  # '+' in a query string decodes to a space
    try:
        if len(v) == 10:
            d = dt.datetime.fromisoformat(v).replace(tzinfo=dt.timezone.utc)
        else:
            d = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            if d.tzinfo is None:
                d = d.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise BadRequest(f"_since: {value!r} is not a FHIR instant", expression="_since") from None
    return int(d.timestamp() * 1_000_000)


def _audit_export(repo, job, rows) -> None:
    """Audit every page written to an export file (``job`` is the job id, or None for
    ``fkj export``): one AuditEvent per page, committed before the next page is read, so the
    files (served only when the job is complete) never hold unaudited data."""
    from fkj.security.audit import record_export_page
    record_export_page(repo.services, repo.tenant, repo.principal, job, rows)


@dataclass
class ExportRequest:
    level: str = "system"  # system | patient | group
    group_id: str | None = None
    types: list[str] | None = None
    since: int | None = None
    #: ``Type?query`` strings (several for one type are OR-ed)
    type_filters: list[str] = field(default_factory=list)
    transaction_time: int = 0

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> "ExportRequest":
        return cls(**orjson.loads(text))

    def check(self, repo) -> None:
        """Raise BadRequest (400) for what cannot be exported, before a job starts."""
        from fkj.model.validation import is_known_type
        for t in self.types or []:
            if not is_known_type(t):
                raise BadRequest(f"_type: {t!r} is not a FHIR R4 resource type",
                                 expression="_type")
        for f in self.type_filters:
            t, _, query = f.partition("?")
            if not is_known_type(t) or not query:
                raise BadRequest(f"_typeFilter {f!r} must be Type?search-query",
                                 expression="_typeFilter")
            if self.types and t not in self.types:
                raise BadRequest(f"_typeFilter names {t}, which is not in _type",
                                 expression="_typeFilter")
        if self.level == "group" and not self.group_id:
            raise BadRequest("a Group export needs a Group id")
        with scope(repo.services.engine, repo.tenant) as conn:
            for t, _ in _filters_by_type(self.type_filters).items():
                _type_filter_condition(repo, conn, resource.alias("r"), t,
                                       _filters_by_type(self.type_filters)[t])
        if self.level == "group":
            group_members(repo, self.group_id)


@dataclass
class ExportResult:
    transaction_time: int
    outputs: list[tuple[str, str, int]] = field(default_factory=list)  # (type, file, count)
    errors: int = 0
    error_file: str | None = None
    cancelled: bool = False

    @property
    def total(self) -> int:
        return sum(n for _, _, n in self.outputs)

    def manifest(self, url_for: Callable[[str], str], request: str) -> dict:
        tt = dt.datetime.fromtimestamp(self.transaction_time / 1e6, tz=dt.timezone.utc)
        return {
            "transactionTime": tt.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request": request,
            "requiresAccessToken": True,
            "output": [{"type": t, "url": url_for(f), "count": n} for t, f, n in self.outputs],
            "error": ([{"type": "OperationOutcome", "url": url_for(self.error_file),
                        "count": self.errors}] if self.error_file else []),
        }


# ---------------------------------------------------------------------------- helpers
def _filters_by_type(filters: list[str]) -> dict[str, list[list[tuple[str, str]]]]:
    out: dict[str, list[list[tuple[str, str]]]] = {}
    for f in filters:
        t, _, query = f.partition("?")
        out.setdefault(t, []).append(parse_qsl(query, keep_blank_values=True))
    return out


def _type_filter_condition(repo, conn, r, rtype: str, queries: list[list[tuple[str, str]]]):
    from fkj.search.engine import _Builder
    from fkj.search.limits import check_params
    from fkj.search.options import parse_options, reject_nul
    limits = limits_of(repo.services)
    builder = _Builder(repo, conn, True, [], limits)
    ors = []
    for params in queries:
        reject_nul(params)
        check_params(params, limits)
        opts, criteria = parse_options(params, 50, 1000, "none", True)
        if opts.include or opts.revinclude:
            raise InvalidSearch("_typeFilter may not use _include/_revinclude",
                                expression="_typeFilter")
        conds = [c for name, value in criteria
                 if (c := builder.criterion(r, rtype, name, value)) is not None]
        ors.append(and_(*conds) if conds else true())
    return or_(*ors) if ors else None


def group_members(repo, group_id: str) -> list[str]:
    """Patient ids of a Group's members (reads the Group through the policy)."""
    from fkj.model.references import split_relative
    group = repo.read("Group", group_id).json()  # authorize + check_result
    own = f"{repo.services.settings.base_url}/fhir/{repo.tenant}/"
    out = []
    for m in group.get("member") or []:
        ref = ((m or {}).get("entity") or {}).get("reference") or ""
        if ref.startswith(own):
            ref = ref[len(own):]
        parts = split_relative(ref)
        if parts and parts[0] == "Patient":
            out.append(parts[1])
    return sorted(set(out))


def _compartment_condition(repo, r, rtype: str, patients: list[str] | None):
    """Resources of ``rtype`` in the compartment of any patient (None) or of ``patients``."""
    from fkj.search.compartments import compartment_params
    if rtype == "Patient":
        return true() if patients is None else r.c.id.in_(patients)
    params = [p for p in compartment_params("Patient", rtype) if p != "{def}"]
    if not params:
        return false()
    ref = INDEX_TABLES["reference"].alias()
    conds = [ref.c.tenant == repo.tenant, ref.c.type == rtype, ref.c.param.in_(params),
             ref.c.target_type == "Patient"]
    if patients is not None:
        conds.append(ref.c.target_id.in_(patients))
    return r.c.rid.in_(select(ref.c.rid).where(*conds))


def _present_types(conn, tenant: str) -> list[str]:
    c = resource.c
    return [row[0] for row in conn.execute(
        select(c.type).where(c.tenant == tenant, c.deleted.is_(False)).distinct()
        .order_by(c.type))]


# ---------------------------------------------------------------------------- the export
def run_export(repo, req: ExportRequest, out_dir: Path, *, job: str | None = None,
               on_progress: Callable[[int, str], None] | None = None,
               cancelled: Callable[[], bool] = lambda: False) -> ExportResult:
    """Write ``<Type>.ndjson`` files (and ``error.ndjson``) into ``out_dir``."""
    from fkj.search.compartments import member_types

    out_dir = Path(out_dir)
    private_dir(out_dir)
    result = ExportResult(req.transaction_time)
    issues: list[Issue] = []
    engine, tenant = repo.services.engine, repo.tenant
    patients = None
    if req.level == "group":
        patients = group_members(repo, req.group_id)  # type: ignore[arg-type]
    filters = _filters_by_type(req.type_filters)
    with scope(engine, tenant) as conn:
        present = _present_types(conn, tenant)
    wanted = list(req.types) if req.types else present
    if req.level in ("patient", "group"):
        allowed = set(member_types("Patient")) | {"Patient"}
        for t in wanted:
            if req.types and t not in allowed:
                issues.append(Issue("warning", "not-supported",
                                    f"{t} is not in the Patient compartment; not exported"))
        wanted = [t for t in wanted if t in allowed]
    for rtype in wanted:
        if rtype not in present:
            continue
        try:
            repo.authorize("search-type", rtype)
        except Forbidden as e:
            if req.types:
                issues.append(Issue("error", "forbidden", f"{rtype}: {e.diagnostics}"))
            continue
        if cancelled():
            result.cancelled = True
            break
        try:
            n = _export_type(repo, req, rtype, out_dir, filters.get(rtype), patients, job,
                             on_progress, cancelled)
        except FhirError as e:
            issues.append(Issue("error", e.code if hasattr(e, "code") else "exception",
                                f"{rtype}: {e.diagnostics}"))
            continue
        if n is None:
            result.cancelled = True
            break
        if n:
            result.outputs.append((rtype, f"{rtype}.ndjson", n))
    if issues:
        result.errors = len(issues)
        result.error_file = "error.ndjson"
        with private_file(out_dir / "error.ndjson") as fh:
            for issue in issues:
                fh.write(orjson.dumps({"resourceType": "OperationOutcome",
                                       "issue": [issue.to_fhir()]}) + b"\n")
    return result


def _export_type(repo, req: ExportRequest, rtype: str, out_dir: Path, queries, patients,
                 job, on_progress, cancelled) -> int | None:
    r = resource.alias("r")
    tenant = repo.tenant
    path = out_dir / f"{rtype}.ndjson"
    n = 0
    last_rid = 0
    with scope(repo.services.engine, tenant) as conn, private_file(path) as fh:
        conds = [r.c.tenant == tenant, r.c.type == rtype, r.c.deleted.is_(False),
                 r.c.last_updated <= req.transaction_time]
        if req.since is not None:
            conds.append(r.c.last_updated >= req.since)
        if req.level in ("patient", "group"):
            conds.append(_compartment_condition(repo, r, rtype, patients))
        if queries:
            conds.append(_type_filter_condition(repo, conn, r, rtype, queries))
        for hook in repo.services.hooks.search_filters:  # the access policy
            extra = hook(repo, r, rtype)
            if extra is not None:
                conds.append(extra)
        base = select(r.c.rid, r.c.id, r.c.content).where(and_(*conds)).order_by(r.c.rid)
        timeout = limits_of(repo.services).timeout
        while True:
            # each page's statement under the search timeout (a _typeFilter is a search)
            with statement_guard(conn, timeout, expression=["_typeFilter"]):
                rows = conn.execute(base.where(r.c.rid > last_rid).limit(PAGE)).all()
            if not rows:
                break
            fh.write("\n".join(row.content for row in rows).encode() + b"\n")
            last_rid = rows[-1].rid
            n += len(rows)
            _audit_export(repo, job, [(f"{rtype}/{row.id}", row.content) for row in rows])
            if on_progress is not None:
                on_progress(len(rows), rtype)
            if len(rows) < PAGE:
                break
            if cancelled():
                return None
    if n == 0:
        path.unlink(missing_ok=True)
    return n
