"""Searching the audit log by patient, person (agent), period, purpose and outcome; the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fkj.cli.audit import audit_app, parse_when
from fkj.security.audit import append_in_transaction, build_audit_event, search_audit
from fkj.store.backend import scope
from tests.audit.helpers import practitioner

runner = CliRunner()
DAY = 86_400_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def ev(tenant, hpr, patient, at, *, outcome="0", purpose=None):
    return build_audit_event(practitioner(tenant, hpr), action="R", subtype="read",
                             resources=[f"Observation/{patient}-1"],
                             patients=[f"Patient/{patient}"], outcome=outcome,
                             description=None, purpose=purpose, recorded_us=at)


def seed(db, tenant):
    events = [
        ev(tenant, "1000001", "anna", T0),
        ev(tenant, "1000001", "bjorn", T0 + DAY),
        ev(tenant, "2000002", "anna", T0 + 2 * DAY, purpose="ETREAT BTG"),
        ev(tenant, "2000002", "anna", T0 + 3 * DAY, outcome="4"),
        ev(tenant, "3000003", "carl", T0 + 4 * DAY),
    ]
    with scope(db.engine, tenant, write=True) as conn:
        append_in_transaction(conn, tenant, events)


def test_search_by_patient_agent_period(db, tenant):
    seed(db, tenant)
    anna = search_audit(db.engine, tenant, patient="Patient/anna")
    assert [r["seq"] for r in anna] == [4, 3, 1]  # newest first
    assert search_audit(db.engine, tenant, patient="anna") == anna
    assert {r["agent"] for r in anna} == {"1000001", "2000002"}
    assert anna[0]["event"]["resourceType"] == "AuditEvent"
    assert anna[0]["patients"] == ["Patient/anna"]

    assert [r["seq"] for r in search_audit(db.engine, tenant, agent="1000001")] == [2, 1]
    assert [r["seq"] for r in search_audit(db.engine, tenant, patient="Patient/anna",
                                           agent="2000002")] == [4, 3]
    period = search_audit(db.engine, tenant, since_us=T0 + DAY, until_us=T0 + 3 * DAY)
    assert [r["seq"] for r in period] == [4, 3, 2]
    assert [r["seq"] for r in search_audit(db.engine, tenant, purpose="BTG")] == [3]
    assert [r["seq"] for r in search_audit(db.engine, tenant, outcome="4")] == [4]
    assert len(search_audit(db.engine, tenant, limit=2)) == 2
    assert search_audit(db.engine, tenant, patient="Patient/nobody") == []


def test_search_is_per_tenant(db):
    a, b = db.new_tenant(), db.new_tenant()
    seed(db, a)
    assert search_audit(db.engine, b, patient="Patient/anna") == []
    assert search_audit(db.engine, b) == []


def test_cli_search(db, tenant):
    seed(db, tenant)
    out = runner.invoke(audit_app, ["search", "--tenant", tenant, "--patient", "Patient/anna",
                                    "--database-url", db.url])
    assert out.exit_code == 0, out.output
    assert "2000002" in out.output and "1000001" in out.output and "carl" not in out.output
    assert "3 record(s)" in out.output
    out = runner.invoke(audit_app, ["search", "--tenant", tenant, "--agent", "1000001",
                                    "--since", "2026-01-02", "--until", "2026-01-02",
                                    "--json", "--database-url", db.url])
    assert out.exit_code == 0, out.output
    events = json.loads(out.output)
    assert [e["entity"][0]["what"]["reference"] for e in events] == ["Patient/bjorn"]
    out = runner.invoke(audit_app, ["search", "--tenant", tenant, "--purpose", "BTG",
                                    "--database-url", db.url])
    assert "1 record(s)" in out.output


def test_cli_verify_all_tenants(db, tenant):
    seed(db, tenant)
    out = runner.invoke(audit_app, ["verify", "--database-url", db.url])
    assert f"tenant {tenant}: OK" in out.output
    # the database is shared with the tampering tests: exit status 1 iff any tenant is bad
    assert out.exit_code == (1 if "TAMPERED" in out.output else 0), out.output


def test_parse_when():
    assert parse_when("2026-01-01T00:00:00Z") == T0
    # a bare date is a whole day of Norwegian local time (UTC+1 in winter)
    assert parse_when("2026-01-01") == T0 - 3_600_000_000
    assert parse_when("2026-01-01", end=True) == T0 + DAY - 3_600_000_000 - 1


def test_register_adds_the_group():
    import typer

    from fkj.cli.audit import register

    app = typer.Typer()

    @app.command()
    def other() -> None:  # a second command so "audit" is a subcommand
        pass

    register(app)
    out = CliRunner().invoke(app, ["audit", "--help"])
    assert out.exit_code == 0 and "verify" in out.output and "search" in out.output
