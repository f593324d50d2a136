"""history at instance, type and tenant level: newest first, paged by event sequence."""

from __future__ import annotations

from fkj.errors import InvalidSearch
from fkj.fhir.bundle_builder import bundle_text, entry_text, link
from fkj.fhir.jsonio import http_date, instant, parse_instant
from fkj.fhir.request import FhirRequest, FhirResponse


def history(req: FhirRequest, repo, rtype: str | None, rid: str | None, base: str,
            settings) -> FhirResponse:
    count, since, before = settings.default_page_size, None, None
    kept = []
    for k, v in req.query:
        if k == "_count":
            if not v.isdigit():
                raise InvalidSearch("_count must be a non-negative integer", expression="_count")
            count = min(int(v), settings.max_page_size)
            kept.append((k, v))
        elif k == "_since":
            try:
                since = parse_instant(v)
            except Exception:
                raise InvalidSearch(f"_since must be an instant, got {v!r}",
                                    expression="_since") from None
            kept.append((k, v))
        elif k == "_before_seq":
            if not v.isdigit():
                raise InvalidSearch("_before_seq must be an integer", expression="_before_seq")
            before = int(v)
        elif k in ("_format", "_pretty"):
            continue
        elif k == "_at" or k == "_list":
            raise InvalidSearch(f"history parameter {k} is not supported", expression=k)
    rows, total = repo.history(rtype, rid, since=since, before_seq=before, limit=count + 1)
    if rid is not None and not rows and repo.current_or_none(rtype, rid) is None:
        from fkj.errors import NotFound
        raise NotFound(f"{rtype}/{rid} is not known")
    more = len(rows) > count
    rows = rows[:count]
    path = "/".join(x for x in (rtype, rid) if x)
    self_url = f"{base}/fhir/{req.tenant}/" + (path + "/" if path else "") + "_history"
    links = [("self", link(self_url, req.query))]
    if more and rows:
        links.append(("next", link(self_url, kept + [("_before_seq", str(rows[-1].seq))])))
    entries = []
    for r in rows:
        full = f"{base}/fhir/{req.tenant}/{r.type}/{r.id}"
        method = "POST" if r.method == "POST" else r.method
        url = r.type if method == "POST" else f"{r.type}/{r.id}"
        status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
        entries.append(entry_text(
            full, None if r.deleted else r.content,
            request={"method": "PUT" if method == "PATCH" else method, "url": url},
            response={"status": status, "etag": f'W/"{r.version}"',
                      "lastModified": instant(r.last_updated)}))
    text = bundle_text("history", entries, total=total, links=links)
    return FhirResponse(200, text, {"Last-Modified": http_date(rows[0].last_updated)} if rows else {})
