"""Hostile input in every part of a request reaches the audit log and is stored there, and it
never stops the log taking other records (issue 30, item 1), over HTTP through the app.

Before the fix, on PostgreSQL, ``GET /fhir/{t}/Patient/a%00b`` (no token) left a record the
database refused: the shipper kept it in front of every later record, and after 5 s every
access of every tenant was refused (503). The HTTP edge now refuses control characters and
malformed text in any request part (400) before anything reaches the log (fkj.edge; such a
refusal is logged, not audited, as it touches no data and names no caller); what passes the
edge and is then refused (401, 404) must be chained with what was attempted visible. Either
way the log must go on taking records (the writer itself is tested with unstorable records
injected, tests/audit/test_quarantine.py)."""

from __future__ import annotations

import json

import pytest

from fkj.security.audit import flush_audit, verify_chain
from tests.auditflow.conftest import audit_rows

LONG = "a" * 300  # longer than any column a patient reference is indexed in


@pytest.mark.parametrize("path", [
    "/Patient/a%00b",                      # the finding
    "/Patient/a%00b/_history/1",
    "/Patient/a%00b/Observation",          # a compartment
    "/Observation?subject=Patient/a%00b",  # a search parameter
    "/Patient/a%00b/$everything",          # an operation on an instance
    "/$a%00b",                             # an operation's name
    f"/Patient/{LONG}",                    # a reference no index column holds
    "/Patient/%ED%A0%80",                  # a lone surrogate, as UTF-8 bytes
])
@pytest.mark.parametrize("token", [False, True])
def test_a_hostile_request_is_audited_and_blocks_nothing(audited, aclient, path, token):
    c, t = aclient, aclient.tenant
    if not token:
        c.headers.pop("Authorization", None)
    r = c.get(c.base + path)
    assert r.status_code != 503 and r.status_code < 500, r.text
    writer = audited.services.extras["audit_writer"]
    flush_audit(audited.services)  # raised AuditUnavailable before the fix (PostgreSQL)
    assert writer.lag() == 0.0
    rows = audit_rows(audited, t)
    # the edge names the request part it refused (http.path, http.<param>, http.<Header>)
    refused_at_edge = r.status_code == 400 and any(
        x.startswith("http.") for i in r.json()["issue"] for x in i.get("expression", ()))
    if refused_at_edge:
        assert rows == [], "a request refused at the edge reached the log"
    else:
        assert rows, "the request left no audit record"
        text = json.dumps([row["event"] for row in rows])
        if "%00" in path and "?" not in path:
            assert "a\\\\u0000b" in text  # what was attempted, visible and storable
    res = verify_chain(audited.services.engine, t)
    assert res.ok and res.quarantined == 0, res.problems
    # the log goes on: an ordinary read is answered and chained after it
    c.headers.update(_auth(audited, t))
    assert c.get(f"{c.base}/Patient?_count=1").status_code == 200
    flush_audit(audited.services)
    assert len(audit_rows(audited, t)) == len(rows) + 1


def test_a_bundle_entry_with_a_nul_is_audited(audited, aclient):
    c, t = aclient, aclient.tenant
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/a\u0000b"}},
        {"request": {"method": "GET", "url": "Observation?code=\u0000"}}]}
    r = c.post(c.base, json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code < 500, r.text
    flush_audit(audited.services)
    rows = audit_rows(audited, t)
    assert rows
    assert verify_chain(audited.services.engine, t).ok


def _auth(fkj, tenant):
    from tests.conftest import auth_headers
    return auth_headers(fkj, tenant)
