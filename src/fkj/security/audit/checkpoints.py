"""Checkpoints: each tenant's audit chain anchored outside the database.

The hash chain (:mod:`fkj.security.audit.chain`) shows any change made *within* it, but
someone who can write the database can rewrite a record and compute every later hash
again ("rehash forward"), or delete the last records and move the chain head back: the
chain is then consistent, and on its own ``verify`` finds nothing. So the chain is anchored
outside the database:

* **What.** A *checkpoint* is the chain head of one tenant — (tenant, seq, hash, time),
  and the database it belongs to — signed with the platform's signing key (ES256, the
  ``signing_key`` keys of :mod:`fkj.security.keys`) as a compact JWS.
* **Where.** One line per checkpoint, appended (``O_APPEND``, one ``write`` and
  ``fdatasync``; never rewritten) to ``<tenant>.checkpoints`` in the checkpoint directory:
  ``FKJ_AUDIT_CHECKPOINT_DIR`` (default: beside the audit journals,
  :func:`default_directory`), in a folder named after the database. Put it where the
  database's users cannot write (another machine's mount, an append-only file system
  ``chattr +a``, a WORM bucket synced from it). ``FKJ_AUDIT_CHECKPOINT_WITNESS`` names a
  second directory that gets every line too (an independent witness: one location lost or
  rewritten is then seen against the other).
* **When.** A server's :class:`Checkpointer` thread looks at every tenant's chain head every
  ``FKJ_AUDIT_CHECKPOINT_INTERVAL`` seconds (default :data:`INTERVAL`) and writes a
  checkpoint for each head that moved since the last line of its file; one process at a
  time writes (an ``flock`` on the directory's ``.lock``), and a stopping server writes a
  last one. Command-line tools that write the audit log (``fkj seed``, ``fkj import``,
  ``fkj tenant create``, ``fkj reindex``) write one when they finish; ``fkj audit
  checkpoint`` writes one on demand.
* **Checked.** :func:`verify_checkpoints` (``fkj audit verify``): every line's signature
  (an unknown key or a bad signature: forged or edited), its tenant and database, that a
  file's seqs and times never go back, that no two checkpoints name different hashes for a
  seq, that both locations agree, that every tenant in a location's index (``INDEX``:
  one signed line per tenant, written before its first checkpoint) still has its file —
  and then, in the walk of the chain, that the record at every checkpointed seq still has
  the checkpointed hash (rewrite + rehash forward) and that the chain reaches the highest
  checkpointed seq (the tail deleted and the head moved back).

What it cannot see: changes to the records after the last checkpoint (within the interval
— a truncated tail shorter than that, or a rewrite of records not yet anchored); a whole
location removed, its index with it, unless there is a witness to compare with; and an
attacker who can write the checkpoint location *and* sign (the private keys are in the
database's ``signing_key`` table: someone with the database *and* the checkpoint location
can forge; keep the location out of the database's reach). See docs/audit.md.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import Engine, select

from fkj.security.audit.tables import audit_head
from fkj.store.backend import ALL_TENANTS, now_us, scope

log = logging.getLogger(__name__)

SUFFIX = ".checkpoints"
TYP = "fkj-audit-checkpoint"
#: the directory's list of the tenants that have a checkpoint file (one signed line each,
#: written before the tenant's first checkpoint): a tenant listed without its file had
#: its file removed
INDEX = "tenants.index"
INDEX_TYP = "fkj-audit-checkpoint-index"
#: seconds between a server's looks at the chain heads (what a truncation may take
#: unnoticed is at most the records of this long)
INTERVAL = 10.0


def interval_setting() -> float:
    return float(os.environ.get("FKJ_AUDIT_CHECKPOINT_INTERVAL") or INTERVAL)


def default_directory(url: str, base: str | os.PathLike | None = None) -> Path:
    """Where the checkpoints of the database at ``url`` are written:
    ``FKJ_AUDIT_CHECKPOINT_DIR`` (or ``base``), else the folder the audit journals are in
    (``FKJ_AUDIT_JOURNAL_DIR``, the SQLite file's folder, or ``./fkj-data``), in a folder
    named after the database."""
    from fkj.security.audit.journal import default_directory as journal_directory
    journals = journal_directory(url)
    digest = journals.name.rsplit("-", 1)[-1]
    base = base or os.environ.get("FKJ_AUDIT_CHECKPOINT_DIR") or journals.parent
    return Path(base) / f"audit-checkpoints-{digest}"


def witness_directory(url: str, base: str | os.PathLike | None = None) -> Path | None:
    """The second location (``FKJ_AUDIT_CHECKPOINT_WITNESS`` or ``base``), if any."""
    base = base or os.environ.get("FKJ_AUDIT_CHECKPOINT_WITNESS")
    return default_directory(url, base) if base else None


@dataclass(frozen=True)
class Checkpoint:
    tenant: str
    seq: int
    hash: str
    time: int
    database: str

    def payload(self) -> bytes:
        return orjson.dumps({"typ": TYP, "tenant": self.tenant, "seq": self.seq,
                             "hash": self.hash, "time": self.time,
                             "database": self.database}, option=orjson.OPT_SORT_KEYS)


class Store:
    """The checkpoint files of one database: a directory and optionally a witness."""

    def __init__(self, directory: str | os.PathLike, witness: str | os.PathLike | None = None):
        self.directory = Path(directory)
        self.witness = Path(witness) if witness else None
        self._tails: dict[tuple[Path, str], tuple[int, tuple[int, str] | None]] = {}

    @property
    def locations(self) -> list[Path]:
        return [self.directory] + ([self.witness] if self.witness else [])

    def path(self, location: Path, tenant: str) -> Path:
        return location / f"{tenant}{SUFFIX}"

    def append(self, tenant: str, line: bytes) -> None:
        """Append one line to the tenant's file in every location (``O_APPEND``, one write,
        synced). Raises ``OSError`` if a location cannot be written."""
        self._append_everywhere(lambda loc: self.path(loc, tenant), line)

    def last(self, tenant: str) -> tuple[int, str] | None:
        """(seq, hash) of the last line of the tenant's file in the first location (its
        payload as written; checked by ``verify``, not here)."""
        path = self.path(self.directory, tenant)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        held = self._tails.get((self.directory, tenant))
        if held is not None and held[0] == size:
            return held[1]
        with open(path, "rb") as f:
            f.seek(max(0, size - 4096))
            lines = [x for x in f.read().split(b"\n") if x.strip()]
        found = None
        if lines:
            try:
                body = _b64decode(lines[-1].split(b".")[1])
                obj = orjson.loads(body)
                found = (int(obj["seq"]), str(obj["hash"]))
            except (IndexError, ValueError, KeyError, TypeError):
                found = None
        self._tails[(self.directory, tenant)] = (size, found)
        return found

    def lines(self, location: Path, tenant: str) -> list[bytes] | None:
        """The lines of the tenant's file at ``location`` (None: there is no file)."""
        return _lines(self.path(location, tenant))

    def index_path(self, location: Path) -> Path:
        return location / INDEX

    def index_lines(self, location: Path) -> list[bytes] | None:
        return _lines(self.index_path(location))

    def add_to_index(self, line: bytes) -> None:
        """Append a line to the index of every location (as :meth:`append`)."""
        self._append_everywhere(lambda loc: self.index_path(loc), line)

    def _append_everywhere(self, path_of, line: bytes) -> None:
        errors = []
        for location in self.locations:
            try:
                location.mkdir(parents=True, exist_ok=True)
                fd = os.open(path_of(location), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                try:
                    data = memoryview(line + b"\n")
                    while data:  # one write on a local file system; the rest if not
                        data = data[os.write(fd, data):]
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                errors.append(f"{location}: {e}")
        if errors:
            raise OSError("audit checkpoint not written to " + "; ".join(errors))


def _lines(path: Path) -> list[bytes] | None:
    try:
        return path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return None


def _b64decode(part: bytes) -> bytes:
    import base64
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


class Checkpointer:
    """Writes checkpoints of every tenant's chain head whose head moved (see the module
    docstring); :meth:`start` runs it every ``interval`` seconds in a thread of its own."""

    def __init__(self, engine: Engine, store: Store, database: str, *,
                 interval: float | None = None, keys=None):
        self.engine = engine
        self.store = store
        self.database = database
        self.interval = interval_setting() if interval is None else interval
        self._keys = keys
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()
        self._indexed: tuple[int, set[str]] | None = None
        #: statistics and the last error (for the operator)
        self.written = 0
        self.last_error: str | None = None

    @classmethod
    def for_engine(cls, engine: Engine, **kw) -> Checkpointer:
        """The checkpointer of the database ``engine`` is connected to, where the
        environment says (:func:`default_directory`, :func:`witness_directory`)."""
        from fkj.security.audit.journal import database_identity
        url = engine.url.render_as_string(hide_password=False)
        return cls(engine, Store(default_directory(url), witness_directory(url)),
                   database_identity(url), **kw)

    def keys(self):
        if self._keys is None:
            from fkj.security.keys import KeyRing
            self._keys = KeyRing(self.engine)
        return self._keys

    def sign(self, payload: bytes) -> bytes:
        from joserfc import jws
        key = self.keys().current()
        return jws.serialize_compact({"alg": key.alg, "kid": key.kid, "typ": TYP},
                                     payload, key.jwk).encode("ascii")

    def _index(self) -> set[str]:
        """The tenants in the first location's index (payloads as written)."""
        path = self.store.index_path(self.store.directory)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = -1
        if self._indexed is None or self._indexed[0] != size:
            tenants = set()
            for raw in self.store.index_lines(self.store.directory) or ():
                try:
                    tenants.add(str(orjson.loads(_b64decode(raw.split(b".")[1]))["tenant"]))
                except (IndexError, ValueError, KeyError, TypeError):
                    continue
            self._indexed = (size, tenants)
        return self._indexed[1]

    def heads(self, tenants: list[str] | None = None) -> list[tuple[str, int, str]]:
        q = select(audit_head.c.tenant, audit_head.c.last_seq, audit_head.c.last_hash)
        if tenants is not None:
            q = q.where(audit_head.c.tenant.in_(tenants))
        with scope(self.engine, ALL_TENANTS) as conn:
            return [(r.tenant, int(r.last_seq), r.last_hash)
                    for r in conn.execute(q.order_by(audit_head.c.tenant))]

    def run(self, *, wait: bool = False, tenants: list[str] | None = None) -> int:
        """Write a checkpoint for every tenant (of ``tenants``, default all) whose chain
        head differs from its file's last checkpoint. Another process writing at the same
        time: skipped (``wait``: waits for it). Returns how many were written; raises if
        one could not be."""
        with self._run_lock:
            self.store.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.store.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    return 0
                n = 0
                for tenant, seq, h in self.heads(tenants):
                    if seq == 0 or self.store.last(tenant) == (seq, h):
                        continue
                    if tenant not in self._index():
                        self.store.add_to_index(self.sign(orjson.dumps(
                            {"typ": INDEX_TYP, "tenant": tenant, "time": now_us(),
                             "database": self.database}, option=orjson.OPT_SORT_KEYS)))
                    cp = Checkpoint(tenant, seq, h, now_us(), self.database)
                    self.store.append(tenant, self.sign(cp.payload()))
                    n += 1
                self.written += n
                self.last_error = None
                return n
            finally:
                os.close(fd)  # and the lock with it

    # ------------------------------------------------------------------ the thread
    def start(self) -> Checkpointer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name="fkj-audit-checkpoint")
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._run_logged()

    def _run_logged(self) -> None:
        try:
            self.run()
        except Exception as e:  # noqa: BLE001 - retried at the next interval, and reported
            self.last_error = str(e)
            log.error("audit checkpoint not written (retried in %.0f s): %s", self.interval, e)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and write a last checkpoint (in at most ``timeout`` seconds)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        done = threading.Event()

        def last() -> None:
            self._run_logged()
            done.set()
        threading.Thread(target=last, daemon=True, name="fkj-audit-checkpoint-last").start()
        done.wait(timeout)


def checkpoint_now(engine: Engine, tenants: list[str] | None = None) -> int:
    """Write a checkpoint of the chains of ``tenants`` (default: all) where the environment
    says, for command-line tools that wrote audit records; waits for a server writing at
    the same time. Returns how many were written."""
    return Checkpointer.for_engine(engine).run(wait=True, tenants=tenants)


# ---------------------------------------------------------------------- verification
@dataclass
class Anchors:
    """What the checkpoint files say about one tenant's chain, checked on their own."""

    #: seq → (hash, time) of every checkpoint
    points: dict[int, tuple[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: notes that are not failures (not yet anchored, a stale anchor)
    notes: list[str] = field(default_factory=list)
    files: int = 0
    lines: int = 0

    @property
    def last(self) -> tuple[int, str, int] | None:
        if not self.points:
            return None
        seq = max(self.points)
        return seq, *self.points[seq]


def public_keys(engine: Engine) -> dict[str, object]:
    """Every signing key the platform has had (retired and expired ones too: they signed
    checkpoints), by kid, as public JWKs."""
    import json

    from joserfc.jwk import ECKey

    from fkj.security.tables import signing_key
    with engine.connect() as conn:
        rows = conn.execute(select(signing_key.c.kid, signing_key.c.private_jwk)).all()
    out = {}
    for kid, private in rows:
        try:
            key = ECKey.import_key(json.loads(private))
            public = ECKey.import_key(key.as_dict(private=False))
        except Exception as e:  # noqa: BLE001 - a broken key verifies nothing
            log.warning("signing key %s cannot be read (%s): checkpoints it signed will not "
                        "verify", kid, e)
            continue
        # a kid is its key's thumbprint: a key swapped in under another's kid is not used
        if public.thumbprint() == kid:
            out[kid] = public
    return out


def _verified(token: bytes, keys: dict[str, object]) -> dict | str:
    """The payload of a signed line, or why it is not to be trusted."""
    from joserfc import jws
    from joserfc.errors import JoseError
    try:
        text = token.decode("ascii").strip()
        header = orjson.loads(_b64decode(text.split(".")[0].encode()))
        key = keys.get(str(header.get("kid")))
        if key is None:
            return "signed by a key the platform does not have (forged?)"
        obj = orjson.loads(jws.deserialize_compact(text, key).payload)
    except (UnicodeDecodeError, ValueError, IndexError, TypeError, AttributeError,
            JoseError) as e:
        return f"signature does not verify (changed or forged: {type(e).__name__})"
    return obj if isinstance(obj, dict) else "not a checkpoint (its payload is no object)"


def read_index(store: Store, location: Path, database: str,
               keys: dict[str, object]) -> tuple[set[str] | None, list[str]]:
    """The tenants listed in ``location``'s index (None: no index) and its problems."""
    lines = store.index_lines(location)
    if lines is None:
        return None, []
    tenants, problems = set(), []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        obj = _verified(raw, keys)
        where = f"{store.index_path(location)} line {n}"
        if isinstance(obj, str):
            problems.append(f"checkpoint index {where}: {obj}")
        elif obj.get("typ") != INDEX_TYP or obj.get("database") != database:
            problems.append(f"checkpoint index {where}: not this database's index")
        else:
            tenants.add(str(obj.get("tenant")))
    return tenants, problems


def read_anchors(store: Store, tenant: str, database: str, keys: dict[str, object]) -> Anchors:
    """Read and check ``tenant``'s checkpoint files and the index in every location."""
    a = Anchors()
    found: dict[Path, list[tuple[int, str]]] = {}
    listed: dict[Path, bool] = {}
    for location in store.locations:
        index, problems = read_index(store, location, database, keys)
        a.problems.extend(problems)
        listed[location] = index is not None and tenant in index
        path = store.path(location, tenant)
        lines = store.lines(location, tenant)
        if lines is None:
            if listed[location]:
                a.problems.append(f"checkpoint file {path} is missing, but the index lists "
                                  f"tenant {tenant} (the file was deleted)")
            continue
        if not listed[location]:
            a.problems.append(f"checkpoint file {path}: tenant {tenant} is not in the index "
                              f"{store.index_path(location)} (index deleted or changed)")
        a.files += 1
        seen: list[tuple[int, str]] = []
        last_seq, last_time = 0, 0
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            a.lines += 1
            where = f"{path} line {n}"
            obj = _verified(raw, keys)
            if isinstance(obj, str):
                a.problems.append(f"checkpoint {where}: {obj}")
                continue
            if obj.get("typ") != TYP or obj.get("tenant") != tenant or \
                    obj.get("database") != database:
                a.problems.append(f"checkpoint {where}: is not a checkpoint of tenant {tenant} "
                                  f"of this database (copied from elsewhere?)")
                continue
            try:
                seq, h, t = int(obj["seq"]), str(obj["hash"]), int(obj["time"])
            except (KeyError, TypeError, ValueError):
                a.problems.append(f"checkpoint {where}: incomplete")
                continue
            if seq < last_seq:
                a.problems.append(f"checkpoint {where}: seq {seq} after seq {last_seq} — the "
                                  "chain head moved back (records deleted at the end)")
            if t < last_time:
                a.problems.append(f"checkpoint {where}: written before the line above it "
                                  "(lines reordered?)")
            last_seq, last_time = max(last_seq, seq), max(last_time, t)
            held = a.points.get(seq)
            if held is not None and held[0] != h:
                a.problems.append(f"checkpoint {where}: seq {seq} has hash {h[:16]}… but "
                                  f"another checkpoint says {held[0][:16]}… (records up to "
                                  f"seq {seq} were rewritten)")
            elif held is None:
                a.points[seq] = (h, t)
            seen.append((seq, h))
        found[location] = seen
    if len(found) == 2:
        primary, witness = (set(found[loc]) for loc in store.locations)
        if not (primary <= witness or witness <= primary):
            a.problems.append(f"checkpoint files of tenant {tenant} in {store.directory} and "
                              f"{store.witness} disagree (one was changed)")
    elif len(store.locations) == 2 and len(found) == 1:
        for location in store.locations:
            if location not in found and not listed[location]:
                a.problems.append(f"checkpoint file {store.path(location, tenant)} is missing "
                                  "but the other location has one (deleted?)")
    return a


def verify_checkpoints(engine: Engine, tenant: str, store: Store, database: str, *,
                       keys: dict[str, object] | None = None):
    """Verify ``tenant``'s chain (:func:`~fkj.security.audit.chain.verify_chain`) against
    its checkpoints. Returns the chain's :class:`VerifyResult` with the checkpoints'
    problems added and ``anchors`` (:class:`Anchors`) set."""
    from fkj.security.audit.chain import verify_chain

    keys = public_keys(engine) if keys is None else keys
    anchors = read_anchors(store, tenant, database, keys)
    result = verify_chain(engine, tenant, anchors={s: h for s, (h, _) in anchors.points.items()})
    for p in anchors.problems:
        result.add(p)
    last = anchors.last
    if result.checked:
        if last is None and not anchors.files:
            where = " and ".join(str(store.path(loc, tenant)) for loc in store.locations)
            anchors.notes.append(f"not anchored: no checkpoint of its {result.checked} records "
                                 f"({where}; the server writes one within "
                                 f"{interval_setting():.0f} s, `fkj audit checkpoint` now)")
        elif last is not None and result.last_seq > last[0]:
            anchors.notes.append(f"{result.last_seq - last[0]} record(s) after the last "
                                 f"checkpoint (seq {last[0]}) are not anchored yet")
    result.anchors = anchors
    return result


def iter_tenants(store: Store) -> Iterator[str]:
    """Tenants that have a checkpoint file in any location."""
    seen = set()
    for location in store.locations:
        if location.is_dir():
            for p in location.glob(f"*{SUFFIX}"):
                t = p.name[:-len(SUFFIX)]
                if t not in seen:
                    seen.add(t)
                    yield t


__all__ = ["INTERVAL", "Anchors", "Checkpoint", "Checkpointer", "Store",
           "checkpoint_now", "default_directory", "iter_tenants", "public_keys",
           "read_anchors", "verify_checkpoints", "witness_directory"]
