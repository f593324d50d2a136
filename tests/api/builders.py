"""Builders and small HTTP helpers shared by the API contract tests (conditional
interactions, history, Bundles, bad input, resource types, metadata)."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlsplit

from fkj.model.identifiers import make_dnr, make_fnr
from tests.api.helpers import FHIR

#: an identifier system the server does not check (kommunalt pasientnummer)
LOCAL_SYS = "https://fkj.example.no/kommune/pasientnummer"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def fnr(born: date = date(1984, 5, 17), synthetic: bool = True) -> str:
    """A valid fødselsnummer (month + 80 when synthetic)."""
    for individual in range(1, 1000):
        value = make_fnr(born, individual, synthetic=synthetic)
        if value is not None:
            return value
    raise AssertionError("no fødselsnummer")


def dnr(born: date = date(1990, 3, 9), synthetic: bool = True) -> str:
    for individual in range(1, 1000):
        value = make_dnr(born, individual, synthetic=synthetic)
        if value is not None:
            return value
    raise AssertionError("no D-nummer")


def with_wrong_control_digit(number: str) -> str:
    """``number`` with its last control digit changed (always invalid: K2 must be exact)."""
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def pasient(family: str = "Nordmann", given: str = "Kari", value: str | None = None,
            system: str = LOCAL_SYS, **extra) -> dict:
    res = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], **extra}
    if value is not None:
        res["identifier"] = [{"system": system, "value": value}]
    return res


def ref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def url(client, path: str) -> str:
    return f"{client.base}/{path.lstrip('/')}" if path else client.base


def read(client, path: str):
    return client.get(url(client, path))


def search(client, rtype: str, params: dict | list | None = None) -> dict:
    r = client.get(url(client, rtype), params=params or {})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset", body
    return body


def match_ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"]


def count(client, rtype: str, params: dict | None = None) -> int:
    """Number of current resources of ``rtype`` matching ``params`` (checked two ways)."""
    body = search(client, rtype, {**(params or {}), "_count": "1000"})
    ids = match_ids(body)
    if body.get("total") is not None:
        assert body["total"] == len(ids), body
    return len(ids)


def history(client, path: str = "", params: dict | None = None) -> dict:
    p = f"{path}/_history" if path else "_history"
    r = client.get(url(client, p), params=params or {})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "history", body
    return body


def next_link(bundle: dict) -> str | None:
    for link in bundle.get("link", []):
        if link["relation"] == "next":
            return link["url"]
    return None


def follow(client, first: dict) -> list[dict]:
    """Every page from ``first`` on, following ``next`` links."""
    pages = [first]
    seen = set()
    while (nxt := next_link(pages[-1])) is not None:
        assert nxt not in seen, f"next link loops: {nxt}"
        seen.add(nxt)
        parts = urlsplit(nxt)
        r = client.get(parts.path + ("?" + parts.query if parts.query else ""))
        assert r.status_code == 200, r.text
        pages.append(r.json())
        assert len(pages) < 200, "paging does not terminate"
    return pages


def post_bundle(client, btype: str, entries: list[dict], **headers):
    return client.post(client.base, json={"resourceType": "Bundle", "type": btype,
                                          "entry": entries}, headers={**FHIR, **headers})


def post_entry(resource: dict, full_url: str | None = None, if_none_exist: str | None = None):
    e = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        e["fullUrl"] = full_url
    if if_none_exist:
        e["request"]["ifNoneExist"] = if_none_exist
    return e


def put_entry(resource: dict, url_: str | None = None, if_match: str | None = None):
    e = {"resource": resource,
         "request": {"method": "PUT", "url": url_ or f"{resource['resourceType']}/{resource['id']}"}}
    if if_match:
        e["request"]["ifMatch"] = if_match
    return e


def get_entry(url_: str) -> dict:
    return {"request": {"method": "GET", "url": url_}}


def delete_entry(url_: str) -> dict:
    return {"request": {"method": "DELETE", "url": url_}}


def outcome(response) -> dict:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    return body


def expressions_of(oo: dict) -> list[str]:
    assert oo["resourceType"] == "OperationOutcome", oo
    return [e for i in oo["issue"] for e in i.get("expression", [])]


def location_id(location: str) -> tuple[str, str]:
    """``(type, id)`` from a Location like ``…/fhir/T/Patient/123/_history/1``."""
    parts = urlsplit(location).path.split("/")
    i = parts.index("_history") if "_history" in parts else len(parts)
    return parts[i - 2], parts[i - 1]


