"""``$process-message``: ``POST [base]/$process-message`` with a FHIR message Bundle
(``type = message``, a MessageHeader first).

The message's resources — the MessageHeader included — are stored in the tenant in one
transaction, on behalf of the caller (server-assigned ids; references between the message's
entries, by fullUrl, ``Type/id`` or an absolute URL ending in ``Type/id``, are rewritten), so
every system with a need-to-know can find them or be notified through a Subscription. Each
stored resource keeps its ``meta.security``/``meta.tag``/``meta.profile`` and gets a tag naming
the message (``http://fkj.no/fhir/CodeSystem/message|{hash of source endpoint and
MessageHeader.id}``).

The answer is a response message (a ``message`` Bundle whose MessageHeader has
``response.identifier`` = the request's MessageHeader.id, ``response.code = ok``, and focuses
the stored resources). A message received again (same source endpoint and MessageHeader.id,
e.g. a sender retrying after a lost answer) is not stored twice: the answer names what was
stored the first time.

A malformed message is rejected with an OperationOutcome: 400 with the expression of the
offending element (``Bundle.entry[0].resource.source.endpoint`` …); content that is not valid
FHIR is rejected by the transaction (400/422, ``Bundle.entry[i]…``), and nothing is stored.
"""

from __future__ import annotations

import copy
import hashlib
import uuid

from fkj.errors import InvalidBundle
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "process-message", "levels": ("system",), "methods": ("POST",),
              "url": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"}
MESSAGE_TAG = "http://fkj.no/fhir/CodeSystem/message"
MAX_ENTRIES = 1000


def _check(bundle) -> list[dict]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidBundle("$process-message takes a message Bundle", expression="Bundle")
    if bundle.get("type") != "message":
        raise InvalidBundle(f"the Bundle must be of type message, got {bundle.get('type')!r}",
                            expression="Bundle.type")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise InvalidBundle("a message Bundle needs entries, a MessageHeader first",
                            expression="Bundle.entry")
    if len(entries) > MAX_ENTRIES:
        raise InvalidBundle(f"a message may carry at most {MAX_ENTRIES} entries",
                            expression="Bundle.entry")
    seen_urls: set[str] = set()
    for i, e in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(e, dict):
            raise InvalidBundle(f"{where} must be an object", expression=where)
        res = e.get("resource")
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise InvalidBundle(f"{where} has no resource", expression=f"{where}.resource")
        if "request" in e or "response" in e:
            raise InvalidBundle("entries of a message carry no request or response",
                                expression=f"{where}.request" if "request" in e
                                else f"{where}.response")
        url = e.get("fullUrl")
        if url is not None:
            if not isinstance(url, str) or not url:
                raise InvalidBundle(f"{where}.fullUrl must be a URI",
                                    expression=f"{where}.fullUrl")
            if url in seen_urls:
                raise InvalidBundle(f"{where}.fullUrl {url!r} occurs twice in the message",
                                    expression=f"{where}.fullUrl")
            seen_urls.add(url)
        rid = res.get("id")
        if rid is not None and not isinstance(rid, str):
            raise InvalidBundle(f"{where}.resource.id must be a string",
                                expression=f"{where}.resource.id")
        if res["resourceType"] == "Bundle":
            raise InvalidBundle("a message cannot carry a Bundle entry",
                                expression=f"{where}.resource")
        if i > 0 and res["resourceType"] == "MessageHeader":
            raise InvalidBundle("a message has one MessageHeader, the first entry",
                                expression=f"{where}.resource")
    header = entries[0]["resource"]
    h = "Bundle.entry[0].resource"
    if header["resourceType"] != "MessageHeader":
        raise InvalidBundle("the first entry of a message must be a MessageHeader",
                            expression=f"{h}.resourceType")
    coding = header.get("eventCoding")
    if not (isinstance(coding, dict) and coding.get("code")) and \
            not (isinstance(header.get("eventUri"), str) and header["eventUri"]):
        raise InvalidBundle("the MessageHeader needs an event (eventCoding with a code, or "
                            "eventUri)", expression=f"{h}.event[x]")
    source = header.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("endpoint"), str) \
            or not source["endpoint"]:
        raise InvalidBundle("the MessageHeader needs source.endpoint",
                            expression=f"{h}.source.endpoint")
    if header.get("response") is not None:
        raise InvalidBundle("this server processes requests, not response messages",
                            expression=f"{h}.response")
    focus = header.get("focus", [])
    if not isinstance(focus, list) or not all(isinstance(f, dict) for f in focus):
        raise InvalidBundle("MessageHeader.focus must be a list of references",
                            expression=f"{h}.focus")
    return entries


def _message_key(header: dict) -> str | None:
    """Identifies a message for duplicate detection: its source and MessageHeader.id."""
    if not header.get("id"):
        return None
    raw = f"{header['source']['endpoint']}|{header['id']}".encode()
    return hashlib.sha256(raw).hexdigest()[:40]


def _already_stored(repo, key: str, types: list[str]) -> list[str] | None:
    """The resources stored for a message received before (MessageHeader first), or None."""
    from fkj.search.engine import match_ids
    from fkj.store.backend import scope

    crit = [("_tag", f"{MESSAGE_TAG}|{key}")]
    with scope(repo.services.engine, repo.tenant) as conn:
        headers = match_ids(repo, conn, "MessageHeader", crit, limit=1)
        if not headers:
            return None
        out = [f"MessageHeader/{headers[0]}"]
        for t in dict.fromkeys(types):
            if t != "MessageHeader":
                out += [f"{t}/{i}" for i in match_ids(repo, conn, t, crit, limit=MAX_ENTRIES)]
    return out


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    import orjson

    from fkj.fhir.bundles import process_bundle
    from fkj.fhir.jsonio import instant
    from fkj.model.references import iter_references
    from fkj.store.backend import now_us

    entries = _check(req.body)
    header = entries[0]["resource"]
    key = _message_key(header)
    types = [e["resource"]["resourceType"] for e in entries]
    stored = _already_stored(repo, key, types) if key else None
    if stored is None:
        # every entry gets a urn:uuid fullUrl; references to an entry by its fullUrl, its
        # Type/id or an absolute URL ending in Type/id point to that urn
        alias: dict[str, str] = {}
        tx = []
        for e in entries:
            res = copy.deepcopy(e["resource"])
            urn = f"urn:uuid:{uuid.uuid4()}"
            if e.get("fullUrl"):
                alias[e["fullUrl"]] = urn
            if res.get("id"):
                alias.setdefault(f"{res['resourceType']}/{res['id']}", urn)
            res.pop("id", None)
            meta = res.get("meta") if isinstance(res.get("meta"), dict) else {}
            meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
            if key:
                tags = meta.get("tag") if isinstance(meta.get("tag"), list) else []
                meta["tag"] = [*tags, {"system": MESSAGE_TAG, "code": key}]
            if meta:
                res["meta"] = meta
            else:
                res.pop("meta", None)
            tx.append({"fullUrl": urn, "resource": res,
                       "request": {"method": "POST", "url": res["resourceType"]}})
        for e in tx:
            res = e["resource"]
            for _path, obj in iter_references(res, res["resourceType"]):
                ref = obj["reference"]
                if ref in alias:
                    obj["reference"] = alias[ref]
                elif ref.startswith(("http://", "https://")):
                    tail = "/".join(ref.rstrip("/").split("/")[-2:])
                    if tail in alias:
                        obj["reference"] = alias[tail]
        sub = FhirRequest("POST", req.tenant, [], [], req.headers,
                          {"resourceType": "Bundle", "type": "transaction", "entry": tx})
        resp = process_bundle(sub, repo, app)
        body = resp.body if isinstance(resp.body, dict) else orjson.loads(resp.body)
        stored = ["/".join((x.get("response") or {}).get("location", "")
                           .split("/_history")[0].split("/")[-2:])
                  for x in body.get("entry") or ()]
    rid_ = str(uuid.uuid4())
    base = app.settings.base_url.rstrip("/")
    answer = {"resourceType": "MessageHeader", "id": rid_,
              "destination": [{"endpoint": header["source"]["endpoint"]}],
              "source": {"name": "FKJ-plattformen", "endpoint": f"{base}/fhir/{req.tenant}"},
              "response": {"identifier": header.get("id") or (
                  stored[0].rsplit("/", 1)[-1] if stored else rid_), "code": "ok"},
              "focus": [{"reference": loc} for loc in stored[1:] if loc]}
    if isinstance(header.get("eventCoding"), dict):
        answer["eventCoding"] = header["eventCoding"]
    else:
        answer["eventUri"] = header["eventUri"]
    return FhirResponse(200, {
        "resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "message",
        "timestamp": instant(now_us()),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "entry": [{"fullUrl": f"urn:uuid:{rid_}", "resource": answer}]})
