"""Every path of the attack tests is audited: denials as failures (outcome 4) naming what was
asked for, filtered results listing only what was shown — never the hidden resources."""

from __future__ import annotations

import pytest

from tests.auditflow.conftest import audit_rows, refs


@pytest.fixture(autouse=True)
def _audit_on(fkj_app):
    from fkj.security.audit.wiring import register_audit
    register_audit(fkj_app, enabled=True)  # idempotent: wire() registers it already


def _nurse_events(fkj_app, tenant: str, since: int) -> list[dict]:
    """The AuditEvents of the nurse (HPR 9111), oldest first."""
    return [r["event"] for r in audit_rows(fkj_app, tenant)[since:] if r["agent"] == "9111"]


def test_denials_are_audited(w, fkj_app, policy_tenant):
    _, n = w
    before = len(audit_rows(fkj_app, policy_tenant))
    # a patient outside the care relation: 404, as if it did not exist; related: 403
    assert n.get(f"{n.base}/Condition/c-other").status_code == 404
    assert n.get(f"{n.base}/Condition/c-psy").status_code == 403
    assert n.get(f"{n.base}/Patient/other/$everything").status_code == 404
    assert n.delete(f"{n.base}/Condition/c-other").status_code == 404
    events = _nurse_events(fkj_app, policy_tenant, before)
    assert [e["outcome"] for e in events] == ["4"] * 4
    assert refs(events[0]) == ["Condition/c-other"]
    assert refs(events[1]) == ["Condition/c-psy"]
    assert events[3]["action"] == "D"
    assert [e["outcomeDesc"][:3] for e in events] == ["404", "403", "404", "404"]


def test_filtered_results_audit_only_what_was_shown(w, fkj_app, policy_tenant):
    _, n = w
    before = len(audit_rows(fkj_app, policy_tenant))
    hidden = {"Condition/c-psy", "Condition/c-other", "Patient/other"}
    asks = [
        ("Encounter", {"_id": "enc", "_include": "Encounter:diagnosis"}),
        ("Patient", {"_id": "mine", "_revinclude": "Condition:subject"}),
        ("Patient", {"_has:Condition:subject:code": "code-other"}),
        ("Condition", {"_include": "*", "_revinclude": "*"}),
        ("Condition", {"_sort": "-code"}),
    ]
    for rtype, params in asks:
        assert n.get(f"{n.base}/{rtype}", params=params).status_code == 200
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Condition/c-other"}},
        {"request": {"method": "GET", "url": "Condition?patient=other"}},
        {"request": {"method": "GET", "url": "Condition/c-mine"}}]}
    assert n.post(n.base, json=bundle).status_code == 200
    events = _nurse_events(fkj_app, policy_tenant, before)
    searches = [e for e in events if e["subtype"][0]["code"] == "search-type"]
    assert len(searches) == len(asks) + 1  # + the search inside the batch
    shown = {r.split("/_history/")[0] for e in events for r in refs(e) if e["outcome"] == "0"}
    assert "Condition/c-mine" in shown and "Encounter/enc" in shown
    assert not shown & hidden, shown & hidden
    # the Bundle's refused entry is audited as a failure naming what was asked for
    failed = [e for e in events if e["outcome"] == "4"]
    assert any("Condition/c-other" in refs(e) for e in failed)


def test_export_is_audited_page_by_page(w, fkj_app, policy_tenant, tmp_path):
    """A Patient-level $export by the nurse: one $export AuditEvent listing every exported
    resource and naming the patient — and nothing of what the policy hid."""
    from tests.bulk.test_export import download, finish
    _, n = w
    previous = fkj_app.services.extras.get("bulk_export_dir")
    fkj_app.services.extras["bulk_export_dir"] = str(tmp_path / "exports")
    try:
        before = len(audit_rows(fkj_app, policy_tenant))
        r = n.get(f"{n.base}/Patient/$export", params={"_type": "Condition"},
                  headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        _, status = finish(n, r)
        got = {x["id"] for x in download(n, status.json()).get("Condition", [])}
    finally:
        if previous is None:
            fkj_app.services.extras.pop("bulk_export_dir", None)
        else:
            fkj_app.services.extras["bulk_export_dir"] = previous
    assert got == {"c-mine"}
    ops = [e for e in _nurse_events(fkj_app, policy_tenant, before)
           if e["subtype"][-1]["code"] == "$export"]
    assert [e["action"] for e in ops] == ["E", "R"]  # the kick-off, then the exported page
    exports = ops[1:]
    assert refs(exports[0]) == ["Condition/c-mine"]
    assert refs(exports[0], role="1") == ["Patient/mine"]
