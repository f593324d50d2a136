"""Building searchset and history Bundles as JSON text without re-parsing stored resources.

Stored resources are already JSON text; a Bundle is assembled around them so a page of 1,000
resources costs string joins, not 1,000 parses and serialisations.
"""

from __future__ import annotations

from urllib.parse import urlencode

import orjson

from fkj.fhir.jsonio import instant


def _dump(v) -> str:
    return orjson.dumps(v).decode()


def link(base_url: str, params: list[tuple[str, str]]) -> str:
    return base_url + ("?" + urlencode(params) if params else "")


def bundle_text(btype: str, entries: list[str], *, total: int | None, links: list[tuple[str, str]],
                extra: dict | None = None) -> str:
    head = {"resourceType": "Bundle", "type": btype, "timestamp": instant(_now())}
    if extra:
        head.update(extra)
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": r, "url": u} for r, u in links]
    text = _dump(head)
    return text[:-1] + ',"entry":[' + ",".join(entries) + "]}"


def entry_text(full_url: str, resource_json: str | None, *, search_mode: str | None = None,
               request: dict | None = None, response: dict | None = None) -> str:
    parts = ['"fullUrl":' + _dump(full_url)]
    if resource_json is not None:
        parts.append('"resource":' + resource_json)
    if search_mode:
        parts.append('"search":{"mode":"' + search_mode + '"}')
    if request:
        parts.append('"request":' + _dump(request))
    if response:
        parts.append('"response":' + _dump(response))
    return "{" + ",".join(parts) + "}"


def _now() -> int:
    from fkj.store.backend import now_us
    return now_us()
