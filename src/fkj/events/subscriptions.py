"""Subscription resources (R4 + Subscriptions Backport IG) → delivery state, and the
notification Bundles sent for them.

A Subscription written through the repository is first prepared (``prepare`` hook: its
``channel.header`` lines are checked, their values taken out and masked, the owner tag set —
see :mod:`fkj.events.secrets` and :mod:`fkj.events.access`), then parsed in the write
transaction (``before_commit``): an invalid one (unknown topic, bad filter, an endpoint the
endpoint policy refuses, a forbidden header) rolls the write back with an OperationOutcome.
The writer becomes the owner: its Principal is stored, and matching and full-resource
payloads use its rights; the header values are stored sealed in ``subscription_state``.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
import weakref
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy import delete, insert, select, update

from fkj.errors import Issue, Unprocessable
from fkj.events.tables import subscription_event, subscription_state
from fkj.events.topics import TOPICS
from fkj.fhir.jsonio import instant
from fkj.store.backend import now_us
from fkj.store.schema import tenant as tenant_table
from fkj.types import Principal

BP = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
EXT_FILTER = BP + "backport-filter-criteria"
EXT_CONTENT = BP + "backport-payload-content"
EXT_HEARTBEAT = BP + "backport-heartbeat-period"
EXT_TIMEOUT = BP + "backport-timeout"
EXT_MAX_COUNT = BP + "backport-max-count"
STATUS_PROFILE = BP + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = BP + "backport-subscription-notification-r4"
#: the principal the event side writes Subscription status changes as
EVENTS_SUBJECT = "fkj-events"
CHANNELS = ("rest-hook", "websocket")
CONTENTS = ("empty", "id-only", "full-resource")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00-\x08\x0a-\x1f\x7f]*$")
#: headers a subscriber may not set: they frame or route the request or the connection, are
#: set by the platform itself, or are ambient credentials of browsers and proxies
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "te", "trailer", "expect", "proxy-authorization", "proxy-authenticate",
    "proxy-connection", "content-type", "content-encoding", "cookie", "forwarded",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"})
MAX_HEADERS = 32
MAX_HEADER_CHARS = 8192


@dataclass
class Config:
    topic: str
    filters: list
    channel: str
    endpoint: str | None
    headers: list[str]
    content: str
    heartbeat: int
    timeout: int
    max_count: int
    status: str
    end_time: int | None


def _ext(exts, url):
    for e in exts or ():
        if isinstance(e, dict) and e.get("url") == url:
            return e
    return None


def _obj(v) -> dict:
    return v if isinstance(v, dict) else {}


def _list(v) -> list:
    return v if isinstance(v, list) else []


def parse_subscription(res: dict) -> Config:
    """The delivery configuration of a Subscription resource (R4 + Backport IG); raises
    :class:`Unprocessable` (422) with the offending element as the expression."""
    def bad(msg, expr):
        raise Unprocessable(msg, issues=[Issue("error", "invalid", msg, [f"Subscription.{expr}"])])

    topic = res.get("criteria")
    if not isinstance(topic, str) or topic not in TOPICS:
        bad(f"criteria must be the canonical URL of a SubscriptionTopic of this server "
            f"({', '.join(TOPICS)}), got {topic!r}", "criteria")
    t = TOPICS[topic]
    filters = []
    for e in _list(_obj(res.get("_criteria")).get("extension")):
        if not isinstance(e, dict) or e.get("url") != EXT_FILTER:
            continue
        value = e.get("valueString")
        if not isinstance(value, str) or not value.strip():
            bad("a filter criteria extension needs a valueString (Type?param=value)",
                "criteria")
        rtype, _, query = value.partition("?")
        rtype = rtype.strip() or None
        if rtype is not None and not _TYPE.match(rtype):
            bad(f"filter criteria {value!r}: expected Type?param=value", "criteria")
        if rtype is not None:
            from fkj.model.validation import RESOURCE_TYPES
            if rtype not in RESOURCE_TYPES:
                bad(f"filter criteria {value!r}: {rtype} is not a FHIR R4 resource type",
                    "criteria")
        if rtype is not None and t.types is not None and rtype not in t.types:
            bad(f"filter criteria {value!r}: the topic covers {', '.join(t.types)}",
                "criteria")
        filters.append([rtype, [list(p) for p in parse_qsl(query, keep_blank_values=True)]])
    if t.types is None and (not filters or any(f[0] is None for f in filters)):
        bad(f"the topic {topic} needs filter criteria naming a resource type "
            "(e.g. Observation?patient=Patient/1)", "criteria")
    ch = _obj(res.get("channel"))
    channel = ch.get("type")
    if not isinstance(channel, str) or channel not in CHANNELS:
        bad(f"channel.type must be one of {', '.join(CHANNELS)}, got {channel!r}", "channel.type")
    endpoint = ch.get("endpoint")
    if channel == "rest-hook":
        ok = isinstance(endpoint, str) and endpoint.startswith(("http://", "https://"))
        if ok:
            try:
                parts = urlsplit(endpoint)
                ok = bool(parts.hostname) and (parts.port or 1) > 0
            except ValueError:
                ok = False
        if not ok:
            bad("a rest-hook channel needs an http(s) channel.endpoint", "channel.endpoint")
    elif endpoint is not None and not isinstance(endpoint, str):
        bad("channel.endpoint must be a URL", "channel.endpoint")
    payload = ch.get("payload")
    if payload is not None and not isinstance(payload, str):
        bad("channel.payload must be a MIME type", "channel.payload")
    if payload and payload.split(";")[0].strip() not in ("application/fhir+json",
                                                         "application/json"):
        bad(f"channel.payload {payload!r} is not supported (application/fhir+json)",
            "channel.payload")
    ce = _ext(_list(_obj(ch.get("_payload")).get("extension")), EXT_CONTENT)
    content = ce.get("valueCode") if ce else ("id-only" if payload else "empty")
    if content not in CONTENTS:
        bad(f"payload content must be one of {', '.join(CONTENTS)}", "channel.payload")
    exts = _list(ch.get("extension"))
    hb = _ext(exts, EXT_HEARTBEAT)
    to = _ext(exts, EXT_TIMEOUT)
    mc = _ext(exts, EXT_MAX_COUNT)
    end = None
    if res.get("end"):
        from fkj.security.audit.events import parse_instant
        try:
            end = parse_instant(str(res["end"]).replace("Z", "+00:00"))
        except (ValueError, TypeError):
            bad("end must be an instant", "end")
    headers = check_headers(ch.get("header"))
    status = res.get("status")
    return Config(topic=topic, filters=filters, channel=channel, endpoint=endpoint,
                  headers=list(headers),
                  content=content, heartbeat=_count(hb, "valueUnsignedInt", bad),
                  timeout=_count(to, "valueUnsignedInt", bad),
                  max_count=_count(mc, "valuePositiveInt", bad),
                  status="off" if status == "off" else "requested", end_time=end)


def check_headers(headers) -> list[str]:
    """``channel.header`` as a list of ``Name: value`` lines; 422 on
    ``Subscription.channel.header[i]`` for a malformed or forbidden one (the value is never
    echoed: it is a secret)."""
    def bad(msg, expr):
        raise Unprocessable(msg, issues=[Issue("error", "invalid", msg, [f"Subscription.{expr}"])])

    if headers is None:
        return []
    if not isinstance(headers, list):
        bad("channel.header must be a list of 'Name: value' strings", "channel.header")
    if len(headers) > MAX_HEADERS:
        bad(f"channel.header: at most {MAX_HEADERS} headers", "channel.header")
    for i, h in enumerate(headers):
        if not isinstance(h, str) or len(h) > MAX_HEADER_CHARS or not _HEADER.match(h):
            bad(f"channel.header[{i}] must be 'Name: value' on one line (a header name, a "
                f"colon, at most {MAX_HEADER_CHARS} characters without control characters)",
                f"channel.header[{i}]")
        name = h.partition(":")[0].strip()
        if name.lower() in FORBIDDEN_HEADERS or name.lower().startswith("proxy-"):
            bad(f"channel.header[{i}]: the header {name} may not be set by a subscriber "
                "(it is set by the platform, or frames or routes the request)",
                f"channel.header[{i}]")
    return list(headers)


def _count(ext, key, bad) -> int:
    if ext is None:
        return 0
    v = ext.get(key)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 2_000_000_000:
        bad(f"{ext.get('url', '').rsplit('/', 1)[-1]}: {key} must be a whole number, "
            f"got {v!r}", "channel.extension")
    return v


# --------------------------------------------------------------------------- owners
def principal_json(p: Principal) -> str:
    d = dataclasses.asdict(p)
    for k, v in d.items():
        if isinstance(v, (set, frozenset)):
            d[k] = sorted(v)
    return orjson.dumps(d).decode()


def principal_from_json(text: str) -> Principal:
    d = orjson.loads(text)
    for k in ("scopes", "roles"):
        d[k] = frozenset(d.get(k) or ())
    known = {f.name for f in dataclasses.fields(Principal)}
    return Principal(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------- the hooks
#: header values taken out of Subscriptions prepared in a write transaction, until its
#: ``before_commit`` seals them: transaction connection → {Subscription id: headers}
_pending: weakref.WeakKeyDictionary[object, dict[str, list[str]]] = \
    weakref.WeakKeyDictionary()


def _internal(repo) -> bool:
    return bool(getattr(repo, "fkj_events_internal", False))


def prepare(repo, conn, res: dict, rid: str) -> dict | None:
    """The ``prepare`` hook: a Subscription is stored with its header values masked and the
    writer's owner tag; the values wait for ``before_commit`` (which seals them). A value
    sent back masked keeps the stored one of that header, if the writer is the owner."""
    if res.get("resourceType") != "Subscription" or _internal(repo):
        return None  # the status write-back stores what it read (masked, tagged)
    from fkj.events.access import with_owner
    from fkj.events.secrets import MASK, redact

    ch = res.get("channel")
    headers = check_headers(ch.get("header")) if isinstance(ch, dict) else []
    plain = list(headers)
    masked = [i for i, h in enumerate(headers) if h.partition(":")[2].strip() == MASK]
    if masked:
        kept = _stored_headers(repo, conn, rid)
        for i in masked:
            name = headers[i].partition(":")[0].strip()
            values = kept.get(name.lower())
            if not values:
                msg = (f"channel.header[{i}]: {name} is sent masked ({MASK}) but no value of "
                       "yours is stored for it; send the value")
                raise Unprocessable(msg, issues=[Issue(
                    "error", "invalid", msg, [f"Subscription.channel.header[{i}]"])])
            plain[i] = values.pop(0)
    if conn is not None:
        _pending.setdefault(conn, {})[rid] = plain
    return with_owner(redact(res), repo.principal)


def _stored_headers(repo, conn, sid: str) -> dict[str, list[str]]:
    """The header lines stored for ``sid`` by name (lower case), if the writer owns it."""
    from fkj.events.access import owner_key
    from fkj.events.secrets import box_of

    if conn is None:
        return {}
    row = conn.execute(select(subscription_state.c.headers, subscription_state.c.owner).where(
        subscription_state.c.tenant == repo.tenant, subscription_state.c.id == sid)).first()
    if row is None or owner_key(principal_from_json(row.owner)) != owner_key(repo.principal):
        return {}
    out: dict[str, list[str]] = {}
    for h in box_of(repo.services).open(repo.tenant, sid, row.headers, conn):
        out.setdefault(h.partition(":")[0].strip().lower(), []).append(h)
    return out


def before_commit(repo, conn, operations) -> None:
    """Keep ``subscription_state`` in step with Subscription writes (same transaction)."""
    pending = _pending.pop(conn, None) or {}
    subs = [op for op in operations if op.type == "Subscription"]
    if not subs or _internal(repo):
        return  # the event side reflecting a status change
    from fkj.events.secrets import box_of
    latest = {}
    for op in subs:
        latest[op.id] = op
    for sid, op in latest.items():
        if op.deleted:
            conn.execute(delete(subscription_state).where(
                subscription_state.c.tenant == repo.tenant, subscription_state.c.id == sid))
            conn.execute(delete(subscription_event).where(
                subscription_event.c.tenant == repo.tenant, subscription_event.c.sub_id == sid))
            continue
        cfg = parse_subscription(orjson.loads(op.content))
        check_endpoint(repo, cfg)
        check_filters(repo, conn, cfg)
        plain = pending.get(sid)
        sealed = None if plain is None else box_of(repo.services).seal(
            conn, repo.tenant, sid, plain)
        upsert(conn, repo.tenant, sid, cfg, repo.principal, sealed)


def not_importable(rtype: str | None) -> str | None:
    """Why a resource of type ``rtype`` may not come in through a bulk import (``fkj
    import``), which stores resources without the repository's hooks: a Subscription would
    have no owner, no delivery state, and its header values would be stored in the clear."""
    if rtype == "Subscription":
        return ("Subscriptions are not imported: create them through the FHIR API, where "
                "the writer becomes the owner and channel.header values are kept secret")
    return None


def check_endpoint(repo, cfg: Config) -> None:
    """A rest-hook endpoint must pass the endpoint policy (:mod:`fkj.events.endpoints`)."""
    if cfg.channel != "rest-hook" or not cfg.endpoint:
        return
    worker = repo.services.extras.get("events")
    if worker is not None:
        policy = worker.endpoint_policy()
    else:  # the strictest: nothing but https to public addresses
        from fkj.events.endpoints import EndpointPolicy
        policy = EndpointPolicy(base_url=repo.services.settings.base_url)
    problem = policy.problem(cfg.endpoint)
    if problem is not None:
        raise Unprocessable(problem, issues=[Issue("error", "invalid", problem,
                                                   ["Subscription.channel.endpoint"])])


def check_filters(repo, conn, cfg: Config) -> None:
    """The writer (the owner) must be allowed to search the types the subscription covers,
    and the filter criteria must be a valid search on them."""
    from fkj.errors import FhirError
    from fkj.search.engine import match_ids

    topic = TOPICS[cfg.topic]
    types = {f[0] for f in cfg.filters if f[0]} | set(topic.types or ())
    for rtype in sorted(types):
        repo.authorize("search-type", rtype)
    for rtype, params in cfg.filters:
        for t in ([rtype] if rtype else sorted(topic.types or ())):
            if not params:
                continue
            try:
                with conn.begin_nested():
                    match_ids(repo, conn, t, [tuple(p) for p in params] + [("_id", "x")],
                              limit=1)
            except FhirError as e:
                q = "&".join(f"{k}={v}" for k, v in params)
                msg = f"filter criteria {t}?{q}: {e.diagnostics}"
                raise Unprocessable(msg, issues=[Issue("error", "invalid", msg,
                                                       ["Subscription.criteria"])]) from None


def upsert(conn, tenant: str, sid: str, cfg: Config, owner: Principal,
           headers: str | None = None) -> None:
    """Write the delivery state of a Subscription; ``headers``: its sealed header lines
    (:meth:`fkj.events.secrets.HeaderBox.seal`), None to keep the stored ones."""
    now = now_us()
    values = {"topic": cfg.topic, "filters": orjson.dumps(cfg.filters).decode(),
              "channel": cfg.channel, "endpoint": cfg.endpoint, "content": cfg.content,
              "heartbeat": cfg.heartbeat, "timeout": cfg.timeout, "max_count": cfg.max_count,
              "owner": principal_json(owner), "end_time": cfg.end_time, "updated": now}
    if headers is not None:
        values["headers"] = headers
    row = conn.execute(select(subscription_state.c.status, subscription_state.c.channel,
                              subscription_state.c.endpoint).where(
        subscription_state.c.tenant == tenant, subscription_state.c.id == sid)).first()
    status = cfg.status
    if status != "off" and cfg.channel == "websocket":
        status = "active"  # the handshake is sent when a client binds

    def current_seq() -> int:
        return conn.execute(select(tenant_table.c.event_seq).where(
            tenant_table.c.id == tenant)).scalar_one()

    if row is None:
        # notifications start with the events after this write; last_sent 0 = no handshake yet
        values.setdefault("headers", "[]")
        conn.execute(insert(subscription_state).values(
            tenant=tenant, id=sid, status=status, matched_seq=current_seq(), event_count=0,
            delivered=0, failures=0, next_attempt=0, last_sent=0, lease_owner=None,
            lease_until=0, last_error=None, created=now, **values))
        return
    if row.status == "off" and status != "off":
        # switched on again: what happened while it was off is not notified
        values["matched_seq"] = current_seq()
    elif (status != "off" and row.status in ("active", "error") and cfg.channel == "rest-hook"
          and row.channel == cfg.channel and row.endpoint == cfg.endpoint):
        status = row.status  # a change of the rest of the configuration keeps the state
    if status == "requested":
        values["last_sent"] = 0  # a new handshake is due
    conn.execute(update(subscription_state).where(
        subscription_state.c.tenant == tenant, subscription_state.c.id == sid).values(
        status=status, failures=0, next_attempt=0, **values))


# --------------------------------------------------------------------------- bundles
def sub_url(base_url: str, tenant: str, sid: str) -> str:
    return f"{base_url}/fhir/{tenant}/Subscription/{sid}"


def status_parameters(base_url: str, tenant: str, row, ntype: str,
                      events: list | None = None, content: str | None = None,
                      error: str | None = None) -> dict:
    params = [
        {"name": "subscription", "valueReference": {
            "reference": sub_url(base_url, tenant, row.id)}},
        {"name": "topic", "valueCanonical": row.topic},
        {"name": "status", "valueCode": row.status},
        {"name": "type", "valueCode": ntype},
        {"name": "events-since-subscription-start", "valueString": str(row.event_count)},
    ]
    content = content or row.content
    for ev in events or ():
        part = [{"name": "event-number", "valueString": str(ev.number)},
                {"name": "timestamp", "valueInstant": instant(ev.time)}]
        if content != "empty":
            part.append({"name": "focus", "valueReference": {
                "reference": f"{base_url}/fhir/{tenant}/{ev.type}/{ev.rid}"}})
        params.append({"name": "notification-event", "part": part})
    if error:
        params.append({"name": "error", "valueCodeableConcept": {"text": error}})
    sid = str(uuid.uuid4())
    return {"resourceType": "Parameters", "id": sid,
            "meta": {"profile": [STATUS_PROFILE]}, "parameter": params}


def notification_bundle(base_url: str, tenant: str, row, ntype: str, events=(),
                        resources: dict | None = None, content: str | None = None,
                        bundle_type: str = "history") -> dict:
    """A notification Bundle (``history``; SubscriptionStatus first) for ``events``.

    ``resources`` maps (type, id, version) to the resource JSON text the receiver may see
    (full-resource payloads); other focus resources are left out (id-only)."""
    content = content or row.content
    status = status_parameters(base_url, tenant, row, ntype, events, content)
    entries = [{"fullUrl": f"urn:uuid:{status['id']}", "resource": status,
                "request": {"method": "GET",
                            "url": sub_url(base_url, tenant, row.id) + "/$status"},
                "response": {"status": "200"}}]
    if content == "full-resource":
        for ev in events:
            url = f"{base_url}/fhir/{tenant}/{ev.type}/{ev.rid}"
            method = {"create": "POST", "update": "PUT", "delete": "DELETE"}.get(ev.action, "PUT")
            entry = {"fullUrl": url, "request": {
                "method": method, "url": ev.type if method == "POST" else f"{ev.type}/{ev.rid}"},
                "response": {"status": {"POST": "201", "PUT": "200", "DELETE": "204"}[method]}}
            text = (resources or {}).get((ev.type, ev.rid, ev.version))
            if text is not None:
                entry["resource"] = orjson.loads(text)
            elif method != "DELETE":
                continue  # not readable by the subscriber: id-only for this one
            entries.append(entry)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
            "meta": {"profile": [NOTIFICATION_PROFILE]}, "type": bundle_type,
            "timestamp": instant(now_us()), "entry": entries}
