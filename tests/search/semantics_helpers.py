"""Helpers for the table-driven search semantics tests (tests/search/test_semantics_*.py)."""

from __future__ import annotations

from urllib.parse import urlencode

FHIR = {"Content-Type": "application/fhir+json"}


def put(client, resource: dict) -> dict:
    r = client.put(f"{client.base}/{resource['resourceType']}/{resource['id']}", json=resource,
                   headers=FHIR)
    assert r.status_code in (200, 201), r.text
    return r.json()


def put_all(client, resources: list[dict]) -> None:
    """Store the resources in one transaction (references between them resolve)."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": x, "request": {"method": "PUT", "url": f"{x['resourceType']}/{x['id']}"}}
        for x in resources]}
    r = client.post(client.base, json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text


def search(client, path: str, params, *, headers=None, post=False):
    """GET (or POST _search with a form body) ``path`` and return the response."""
    if isinstance(params, str):
        from urllib.parse import parse_qsl
        params = parse_qsl(params, keep_blank_values=True)
    if post:
        return client.post(f"{client.base}/{path}/_search", content=urlencode(params),
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    **(headers or {})})
    return client.get(f"{client.base}/{path}", params=params, headers=headers or {})


def ids(bundle: dict, mode: str = "match") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == mode}


def ordered_ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode") == "match"]


def check_table(client, rtype: str, table: list[tuple[str, set[str]]], *, post_too=True):
    """Every ``(query string, expected ids)`` row must return exactly those ids, by GET and
    by POST _search alike; collects every mismatch before failing."""
    bad = []
    for query, expected in table:
        for post in ((False, True) if post_too else (False,)):
            r = search(client, rtype, query + "&_count=1000", post=post)
            if r.status_code != 200:
                bad.append((query, post, r.status_code, r.text[:300]))
                continue
            got = ids(r.json())
            if got != set(expected):
                bad.append((query, "POST" if post else "GET", sorted(got), sorted(expected)))
    assert not bad, "\n".join(map(str, bad))


def expressions(response) -> list[str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [e for i in body["issue"] for e in i.get("expression", [])]
