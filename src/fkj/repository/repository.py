"""The per-request repository: every read and write of clinical data goes through here, on
behalf of a :class:`~fkj.types.Principal`, so the access policy and audit apply in one place.

A write is: validate → set server fields (id, meta.versionId, meta.lastUpdated) → extract
search-index rows → store the version, the index rows and an event in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from fkj.errors import (
    BadRequest,
    Conflict,
    FhirError,
    Gone,
    InvalidResource,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from fkj.fhir.jsonio import instant
from fkj.model.references import iter_references, split_relative
from fkj.repository.patching import apply_json_patch
from fkj.repository.services import Services
from fkj.repository.unit_of_work import Prepared, UnitOfWork
from fkj.store import resources as sql
from fkj.store.backend import is_unique_violation, now_us, point_read, scope
from fkj.types import Principal

log = logging.getLogger("fkj.repository")


#: how often a PATCH without If-Match is tried when another write wins the race for the row
PATCH_ATTEMPTS = 5


class VersionConflict(PreconditionFailed):
    """The stored version changed between reading and writing it (optimistic locking)."""


@dataclass
class Stored:
    """A resource version as stored: ``content`` is the JSON text served to clients."""

    type: str
    id: str
    version: int
    last_updated: int
    content: str
    deleted: bool = False

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def json(self) -> dict:
        return orjson.loads(self.content)


@dataclass
class WriteOutcome:
    stored: Stored
    #: 201 created, 200 updated/matched, 204 nothing done (conditional delete, no match)
    status: int
    created: bool = False


def new_id() -> str:
    return str(uuid.uuid4())


class Repository:
    def __init__(self, services: Services, principal: Principal, tenant: str):
        if principal is None:  # the seam: nothing touches data without a principal
            raise ValueError("a Principal is required")
        self.services = services
        self.principal = principal
        self.tenant = tenant
        self._conn: Connection | None = None
        self._uow: UnitOfWork | None = None
        #: where the current write sits in a Bundle (``Bundle.entry[3]``), for error locations
        self.where = ""
        #: ``Patient/x`` of what this request was refused or resolved to, which its answer
        #: does not show: the audit record of a refusal names them too
        self.refused_patients: list[str] = []
        #: how logical references to patients are looked up (:meth:`find_patients`, the
        #: tenant's Patients; ``fkj import`` workers look in the import's own index)
        self.person_lookup = None

    @property
    def registry(self):
        """The tenant's search parameters (R4 plus its own SearchParameter resources)."""
        from fkj.search.tenant_registry import tenant_registry
        return tenant_registry(self.services, self.tenant)

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self, *, flush: bool = True) -> Iterator["Repository"]:
        """All operations inside run in one database transaction (all-or-nothing);
        ``flush=False``: see :func:`fkj.store.backend.scope`."""
        if self._uow is not None:
            yield self
            return
        with scope(self.services.engine, self.tenant, write=True, flush=flush) as conn:
            self._conn = conn
            self._uow = UnitOfWork(conn, self.tenant, self.principal.display)
            try:
                yield self
                self._uow.finish()
                for hook in self.services.hooks.before_commit:
                    hook(self, conn, self._uow.operations)
            except IntegrityError as e:
                raise self._integrity(e) from None
            finally:
                ops = self._uow.operations
                self._conn, self._uow = None, None
        for hook in self.services.hooks.after_commit:
            hook(self, ops)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        if self._uow is not None:
            self._uow.flush()
            yield self._conn  # type: ignore[misc]
        else:
            companion = self.services.extras.get("read_companion")
            if companion is not None and getattr(self, "_fkj_companion_read", False):
                companion = None  # this request has its value already
            elif companion is not None:
                scalar, remember = companion
                self._fkj_companion_read = True
                companion = (scalar, lambda value: remember(self, value))
            with scope(self.services.engine, self.tenant, companion=companion) as conn:
                yield conn

    @staticmethod
    def _integrity(e: IntegrityError) -> Exception:
        if is_unique_violation(e):
            return Conflict("the resource was created concurrently by another request; retry")
        # the database's message can quote the row (PostgreSQL: "Failing row contains …"):
        # it goes to the log, not to the caller
        log.warning("integrity error on write: %s", e.orig)
        return Conflict("the write conflicts with stored data")

    def authorize(self, interaction: str, rtype: str | None, resource: dict | None = None) -> None:
        for hook in self.services.hooks.authorize:
            hook(self, interaction, rtype, resource)

    def check_result(self, interaction: str, content: str | dict) -> None:
        """Let the policy veto a resource that was read (raises to deny)."""
        hooks = self.services.hooks.check_result
        if hooks:
            resource = orjson.loads(content) if isinstance(content, str) else content
            for hook in hooks:
                hook(self, interaction, resource)

    def visible(self, interaction: str, content: str | dict) -> bool:
        """True if :meth:`check_result` lets the caller see this resource."""
        from fkj.errors import FhirError
        try:
            self.check_result(interaction, content)
        except FhirError:
            return False
        return True

    def unknown(self, rtype: str | None, text: str) -> NotFound:
        """The "not known" answer for ``text`` (``Type/id is not known``): the same whether
        the resource does not exist or the caller may not know of it (no existence
        oracle). The access policy may add a hint for its callers (``not_found_hint``)."""
        hint = self.services.extras.get("not_found_hint")
        extra = hint(self, rtype) if hint is not None else None
        return NotFound(f"{text} ({extra})" if extra else text)

    def _check_stored(self, interaction: str, rtype: str, content: str, text: str) -> None:
        """:meth:`check_result` on a stored resource an instance-level interaction is about:
        one the caller may not know of (NotFound from the hooks) is answered exactly as
        :meth:`unknown` answers one that does not exist."""
        try:
            self.check_result(interaction, content)
        except FhirError as e:
            from fkj.repository.patients import patient_refs
            self.refused_patients.extend(patient_refs(orjson.loads(content)))
            if isinstance(e, NotFound):
                raise self.unknown(rtype, text) from None
            raise

    # ------------------------------------------------------------------ patients
    def find_patients(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """The ids of the tenant's (not deleted) Patients with each person identifier
        ``(kind, value)`` (kinds of :data:`fkj.model.identifiers.PERSON_IDENTIFIER_SYSTEMS`,
        every alias of a kind's system counted). One query; inside a transaction it sees the
        transaction's own writes."""
        from sqlalchemy import select

        from fkj.model.identifiers import PERSON_IDENTIFIER_SYSTEMS
        from fkj.store.schema import idx_token, resource

        if not wanted:
            return {}
        kinds = {k for k, _ in wanted}
        systems = sorted(s for s, k in PERSON_IDENTIFIER_SYSTEMS.items() if k in kinds)
        tok = idx_token
        q = select(tok.c.system, tok.c.code, resource.c.id).join(
            resource, resource.c.rid == tok.c.rid).where(
            tok.c.tenant == self.tenant, tok.c.type == "Patient", tok.c.param == "identifier",
            tok.c.system.in_(systems), tok.c.code.in_(sorted({v for _, v in wanted})),
            resource.c.tenant == self.tenant, resource.c.deleted.is_(False))
        out: dict[tuple[str, str], list[str]] = {}
        with self._reading() as conn:
            for system, code, pid in conn.execute(q):
                key = (PERSON_IDENTIFIER_SYSTEMS[system], code)
                if key in wanted and pid not in out.setdefault(key, []):
                    out[key].append(pid)
        return out

    def resolve_persons(self, resource: Any) -> Any:
        """``resource`` with its logical references to patients (a fødselsnummer, D-nummer
        … and no ``reference``) resolved to the tenant's Patient
        (:func:`fkj.repository.patients.resolve`). Runs before the access policy judges a
        write, so the policy sees the patient; what does not resolve is left for the policy
        (an unknown patient, refused as unrelated) and then for :meth:`prepare` (422)."""
        from fkj.repository import patients as P
        if not isinstance(resource, dict):
            return resource
        resolved, _ = P.resolve(resource, self.person_lookup or self.find_patients)
        if resolved is not resource:
            self.refused_patients.extend(P.patient_refs(resolved))
        return resolved

    # ------------------------------------------------------------------ reads
    @contextmanager
    def _point_read(self) -> Iterator[Connection]:
        if self._uow is not None:
            with self._reading() as conn:
                yield conn
        else:
            with point_read(self.services.engine, self.tenant) as conn:
                yield conn

    def read(self, rtype: str, rid: str) -> Stored:
        self.authorize("read", rtype)
        companion = self.services.extras.get("read_companion")
        with self._point_read() as conn:
            if companion is None:
                cur = sql.get_current(conn, self.tenant, rtype, rid)
            else:  # (scalar sub-select, callback(repo, value)), e.g. the policy epoch
                cur, value = sql.get_current_with(conn, self.tenant, rtype, rid, companion[0])
                if cur is not None:
                    companion[1](self, value)
        if cur is None:
            raise self.unknown(rtype, f"{rtype}/{rid} is not known")
        self._check_stored("read", rtype, cur.content, f"{rtype}/{rid} is not known")
        if cur.deleted:
            raise Gone(f"{rtype}/{rid} was deleted", headers={"ETag": f'W/"{cur.version}"'})
        return Stored(rtype, rid, cur.version, cur.last_updated, cur.content)

    def vread(self, rtype: str, rid: str, vid: str) -> Stored:
        self.authorize("vread", rtype)
        if not vid.isdigit():
            raise self.unknown(rtype, f"{rtype}/{rid} has no version {vid!r}")
        with self._point_read() as conn:
            row = sql.get_version(conn, self.tenant, rtype, rid, int(vid))
        if row is None:
            raise self.unknown(rtype, f"{rtype}/{rid} has no version {vid}")
        self._check_stored("vread", rtype, row.content, f"{rtype}/{rid} has no version {vid}")
        if row.deleted:
            raise Gone(f"version {vid} of {rtype}/{rid} is a deletion")
        return Stored(rtype, rid, int(vid), row.last_updated, row.content)

    def known(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (type, id) pairs have ever been stored in the tenant (deleted included)."""
        with self._reading() as conn:
            return sql.existing_ids(conn, self.tenant, keys, include_deleted=True)

    def put_many(self, resources: list[dict]) -> int:
        """Store resources under their own ids in one transaction: new ones are created in
        bulk, known ones updated (idempotent loading: seed and import)."""
        with self.transaction():
            self.prefetch([(r["resourceType"], r["id"]) for r in resources])
            for r in resources:
                self.update(r["resourceType"], r["id"], r)
        return len(resources)

    def current_or_none(self, rtype: str, rid: str) -> sql.Current | None:
        with self._reading() as conn:
            return sql.get_current(conn, self.tenant, rtype, rid)

    def history(self, rtype: str | None, rid: str | None, *, since: int | None,
                before_seq: int | None, limit: int):
        self.authorize("history-instance" if rid else "history-type" if rtype else "history-system",
                       rtype)
        with self._reading() as conn:
            rows = sql.history_rows(conn, self.tenant, rtype, rid, since=since,
                                    before_seq=before_seq, limit=limit)
            total = None
            if before_seq is None:
                total = sql.count_history(conn, self.tenant, rtype, rid, since)
        if rid is not None and not rows:
            # none in the window (``_since``, ``_before_seq``) or none at all: a resource
            # that does not exist and one the caller may not know of get the same answer
            cur = self.current_or_none(rtype, rid)  # type: ignore[arg-type]
            if cur is None:
                raise self.unknown(rtype, f"{rtype}/{rid} is not known")
            self._check_stored("history", rtype, cur.content,  # type: ignore[arg-type]
                               f"{rtype}/{rid} is not known")
        if self.services.hooks.check_result:
            kept = [r for r in rows if self.visible("history", r.content)]
            if len(kept) != len(rows):
                if rid is not None and not kept:
                    raise self.unknown(rtype, f"{rtype}/{rid} is not known")
                # the caller may not know how many versions it cannot see
                rows, total = kept, None
        return rows, total

    def search(self, rtype: str | None, params: list[tuple[str, str]], **options: Any):
        from fkj.search.engine import run_search
        self.authorize("search-type" if rtype else "search-system", rtype)
        with self._reading() as conn:
            return run_search(self, conn, rtype, params, **options)

    def find_ids(self, rtype: str, criteria: list[tuple[str, str]], limit: int = 2) -> list[str]:
        """Ids of resources matching search criteria (for conditional interactions)."""
        from fkj.search.engine import match_ids
        with self._reading() as conn:
            return match_ids(self, conn, rtype, criteria, limit=limit)

    # ------------------------------------------------------------------ writes
    def create(self, resource: Any, *, rtype: str | None = None,
               if_none_exist: list[tuple[str, str]] | None = None,
               assigned_id: str | None = None) -> WriteOutcome:
        rtype = rtype or (resource.get("resourceType") if isinstance(resource, dict) else None)
        resource = self.resolve_persons(resource)
        self.authorize("create", rtype, resource if isinstance(resource, dict) else None)
        with self.transaction():
            if if_none_exist is not None:
                found = self.find_ids(rtype, if_none_exist)
                if len(found) > 1:
                    raise PreconditionFailed(
                        f"If-None-Exist matched {len(found)} resources; the criteria must be "
                        "selective enough to match at most one")
                if found:
                    return WriteOutcome(self.read(rtype, found[0]), 200)
            op = self.prepare(resource, rtype=rtype, rid=assigned_id or new_id(), version=1,
                              method="POST")
            self._uow.add(op)  # type: ignore[union-attr]
        return WriteOutcome(_stored(op), 201, created=True)

    def update(self, rtype: str, rid: str, resource: Any, *, if_match: str | None = None,
               method: str = "PUT") -> WriteOutcome:
        resource = self.resolve_persons(resource)
        self.authorize("update", rtype, resource if isinstance(resource, dict) else None)
        with self.transaction():
            cur = self._current_for_write(rtype, rid)
            if cur is not None:
                # before If-Match: a version conflict would confirm the resource exists; to
                # If-Match, one the caller may not know of is one that does not exist
                try:
                    self._check_stored("update", rtype, cur.content,
                                       f"{rtype}/{rid} is not known")
                except NotFound:
                    check_if_match(if_match, None)
                    raise
            check_if_match(if_match, cur)
            if cur is None:
                op = self.prepare(resource, rtype=rtype, rid=rid, version=1, method=method)
                self._uow.add(op)  # type: ignore[union-attr]
                return_status, created = 201, True
            else:
                self.authorize("update-check", rtype, orjson.loads(cur.content))
                op = self.prepare(resource, rtype=rtype, rid=rid, version=cur.version + 1,
                                  method=method)
                op.rid, op.action = cur.rid, "update"
                if not sql.update_current(self._conn, cur.rid, cur.version, {  # type: ignore[arg-type]
                        "version": op.version, "last_updated": op.last_updated,
                        "deleted": False, "content": op.content}):
                    raise VersionConflict(
                        f"{rtype}/{rid} was changed by another request (version conflict)")
                self._uow.add(op)  # type: ignore[union-attr]
                return_status, created = (201, True) if cur.deleted else (200, False)
        return WriteOutcome(_stored(op), return_status, created)

    def _current_for_write(self, rtype: str, rid: str) -> sql.Current | None:
        """The stored row to update, locked on PostgreSQL. Uses a row read ahead by
        :meth:`prefetch` when nothing in this transaction has written it since."""
        uow = self._uow
        key = (rtype, rid)
        if key in uow.prefetched and key not in uow.pending_keys:  # type: ignore[union-attr]
            return uow.prefetched.pop(key)  # type: ignore[union-attr,return-value]
        uow.prefetched.pop(key, None)  # type: ignore[union-attr]
        uow.flush()  # type: ignore[union-attr]
        return sql.get_current(self._conn, self.tenant, rtype, rid, for_update=True)  # type: ignore[arg-type]

    def prefetch(self, keys: list[tuple[str, str]]) -> None:
        """Read ahead (and lock) the rows a batch of updates will touch: one query instead of
        one per update (transaction Bundles full of PUTs)."""
        if self._uow is None or not keys:
            return
        self._uow.flush()
        found = sql.get_many_current(self._conn, self.tenant, keys, for_update=True)  # type: ignore[arg-type]
        for key in keys:
            self._uow.prefetched[key] = found.get(key)

    def conditional_update(self, rtype: str, criteria: list[tuple[str, str]], resource: Any, *,
                           if_match: str | None = None) -> WriteOutcome:
        resource = self.resolve_persons(resource)
        self.authorize("update", rtype, resource if isinstance(resource, dict) else None)
        self.authorize("search-type", rtype)
        with self.transaction():
            found = self.find_ids(rtype, criteria)
            if len(found) > 1:
                raise PreconditionFailed(
                    f"conditional update matched {len(found)} resources; it must match at most one")
            body_id = resource.get("id") if isinstance(resource, dict) else None
            if found:
                if body_id and body_id != found[0]:
                    raise BadRequest(f"the id in the body ({body_id}) is not the id of the "
                                     f"matching resource ({found[0]})", expression=f"{rtype}.id")
                return self.update(rtype, found[0], resource, if_match=if_match)
            if body_id:
                return self.update(rtype, body_id, resource, if_match=if_match)
            return self.create(resource, rtype=rtype)

    def patch(self, rtype: str, rid: str, patch: Any, *, if_match: str | None = None) -> WriteOutcome:
        """JSON Patch. Without If-Match the patch applies to the current version whatever
        else is written meanwhile: the row is locked before it is read (PostgreSQL), and a
        version conflict that still happens (the row changed between read and write) is
        retried with a fresh read, up to :data:`PATCH_ATTEMPTS` times. With If-Match a
        conflict is the client's 412."""
        self.authorize("patch", rtype)
        if not isinstance(patch, list):
            raise BadRequest("a JSON Patch document must be a JSON array of operations")
        attempts = 1 if (if_match is not None or self._uow is not None) else PATCH_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                return self._patch_once(rtype, rid, patch, if_match)
            except VersionConflict:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _patch_once(self, rtype: str, rid: str, patch: list, if_match: str | None
                    ) -> WriteOutcome:
        with self.transaction():
            self._uow.flush()  # type: ignore[union-attr]
            cur = sql.get_current(self._conn, self.tenant, rtype, rid,  # type: ignore[arg-type]
                                  for_update=True)
            if cur is None:
                raise self.unknown(rtype, f"{rtype}/{rid} is not known")
            self._check_stored("update", rtype, cur.content, f"{rtype}/{rid} is not known")
            self.authorize("update-check", rtype, orjson.loads(cur.content))
            if cur.deleted:
                raise Gone(f"{rtype}/{rid} was deleted")
            check_if_match(if_match, cur)
            patched = apply_json_patch(rtype, orjson.loads(cur.content), patch)
            if patched.get("id") != rid or patched.get("resourceType") != rtype:
                raise Unprocessable("a JSON Patch may not change resourceType or id",
                                    expression=f"{rtype}.id")
            # the row is locked and read in this transaction: it is the version we patched
            self._uow.prefetched[(rtype, rid)] = cur  # type: ignore[union-attr]
            try:
                return self.update(rtype, rid, patched, if_match=f'W/"{cur.version}"',
                                   method="PATCH")
            except FhirError as e:
                raise self._patch_error(e, rtype, cur.content) from None

    def _patch_error(self, e: Exception, rtype: str, content: str) -> Exception:
        """A refusal of the patched resource. Its message may quote what was stored (an
        invalid reference, a value): a caller who may not read the resource (update but no
        read scope) gets the problem's location only."""
        if not isinstance(e, (BadRequest, Unprocessable)) or not e.issues \
                or self.visible("read", content):
            return e
        issue = e.issues[0]
        return type(e)(f"the patched {rtype} is not valid at {', '.join(issue.expression)}"
                       if issue.expression else f"the patched {rtype} is not valid",
                       expression=list(issue.expression), code=issue.code)

    def delete(self, rtype: str, rid: str, *, if_match: str | None = None) -> WriteOutcome:
        self.authorize("delete", rtype)
        with self.transaction():
            self._uow.flush()  # type: ignore[union-attr]
            cur = sql.get_current(self._conn, self.tenant, rtype, rid, for_update=True)  # type: ignore[arg-type]
            if cur is None:
                raise self.unknown(rtype, f"{rtype}/{rid} is not known")
            # before If-Match and "deleted already": both would confirm the resource exists
            self._check_stored("delete", rtype, cur.content, f"{rtype}/{rid} is not known")
            check_if_match(if_match, cur)
            if cur.deleted:
                return WriteOutcome(Stored(rtype, rid, cur.version, cur.last_updated,
                                           cur.content, True), 204)
            for hook in self.services.hooks.authorize:
                hook(self, "delete-check", rtype, orjson.loads(cur.content))
            ts = now_us()
            op = Prepared(rtype, rid, cur.version + 1, ts, "DELETE", cur.content, deleted=True,
                          rid=cur.rid, action="delete")
            if not sql.update_current(self._conn, cur.rid, cur.version, {  # type: ignore[arg-type]
                    "version": op.version, "last_updated": ts, "deleted": True}):
                raise VersionConflict(f"{rtype}/{rid} was changed by another request")
            self._uow.add(op)  # type: ignore[union-attr]
        return WriteOutcome(_stored(op), 200)

    def conditional_delete(self, rtype: str, criteria: list[tuple[str, str]]) -> WriteOutcome | None:
        self.authorize("delete", rtype)
        self.authorize("search-type", rtype)
        with self.transaction():
            found = self.find_ids(rtype, criteria)
            if len(found) > 1:
                raise PreconditionFailed(
                    f"conditional delete matched {len(found)} resources; it must match at most one")
            if not found:
                return None
            return self.delete(rtype, found[0])

    # ------------------------------------------------------------------ preparation
    def prepare(self, resource: Any, *, rtype: str | None, rid: str, version: int,
                method: str, ts: int | None = None) -> Prepared:
        """Validate and complete a resource for storage. Raises InvalidResource/Unprocessable."""
        from fkj.model.identifiers import identifier_issues
        from fkj.model.validation import validate_resource

        issues = validate_resource(resource, expected_type=rtype)
        if not issues:
            issues = identifier_issues(resource)
        if issues:
            raise InvalidResource(issues[0].diagnostics, issues=issues)
        assert isinstance(resource, dict)
        # a patient named only by a person identifier is resolved to the tenant's Patient
        # (already done before the policy judged the write; here for every other path —
        # fkj import, seed) or the write refused: a resource never escapes its patient
        from fkj.repository import patients as P
        resource, problems = P.resolve(resource, self.person_lookup or self.find_patients)
        if problems:
            raise problems[0]
        for hook in self.services.hooks.prepare:
            resource = hook(self, self._conn, resource, rid) or resource
        rtype = resource["resourceType"]
        ts = ts or now_us()
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(ts)
        body = {"resourceType": rtype, "id": rid, "meta": meta}
        for k, v in resource.items():
            if k not in body:
                body[k] = v
        refs = self._references(body)
        index = {}
        if self.services.indexing:
            from fkj.search.extract import extract
            index = extract(body, self.registry)
        return Prepared(rtype, rid, version, ts, method,
                        orjson.dumps(body).decode(), index=index, references=refs,
                        action="create" if version == 1 else "update", where=self.where)

    def _references(self, body: dict) -> list[tuple[str, str, str]]:
        from fkj.model.validation import is_known_type

        rtype = body["resourceType"]
        contained = {c.get("id") for c in body.get("contained", []) if isinstance(c, dict)}
        own_base = f"{self.services.settings.base_url}/fhir/{self.tenant}/"
        out = []
        for path, obj in iter_references(body, rtype):
            ref = obj["reference"]
            expr = f"{path}.reference"
            if ref.startswith("#"):
                if ref != "#" and ref[1:] not in contained:
                    raise Unprocessable(f"reference {ref} names no contained resource",
                                        expression=expr)
                continue
            if ref.startswith(own_base):
                ref = ref[len(own_base):]
            elif ref.startswith(("http://", "https://")):
                continue  # an absolute reference to another server
            parts = split_relative(ref)
            if parts is None or not is_known_type(parts[0]):
                raise Unprocessable(
                    f"reference {ref!r} is neither Type/id in this municipality nor an absolute "
                    "URL", expression=expr)
            out.append((expr, parts[0], parts[1]))
        return out


def check_if_match(if_match: str | None, cur: sql.Current | None) -> None:
    if if_match is None:
        return
    want = if_match.strip()
    if want.startswith("W/"):
        want = want[2:]
    want = want.strip('"')
    if cur is None:
        raise PreconditionFailed("If-Match was given but the resource does not exist")
    if want != str(cur.version):
        raise PreconditionFailed(
            f"If-Match expects version {want} but the current version is {cur.version}")


def _stored(op: Prepared) -> Stored:
    return Stored(op.type, op.id, op.version, op.last_updated, op.content, op.deleted)
