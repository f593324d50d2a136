"""``fkj audit verify|search|recover``: check the hash chain, search the audit log by person,
patient and period, and chain the records of journals left by servers that died."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import typer
from rich.console import Console
from rich.table import Table

from fkj.cli.db import DatabaseUrl, engine_for

audit_app = typer.Typer(no_args_is_help=True, help="Verify and search the audit log.")
console = Console()

try:  # dates without a zone are Norwegian local time
    from zoneinfo import ZoneInfo
    LOCAL = ZoneInfo("Europe/Oslo")
except Exception:  # noqa: BLE001 - no tz database: fall back to UTC
    LOCAL = UTC


def parse_when(value: str, *, end: bool = False) -> int:
    """``2025-03-01`` (a whole day, local time) or an ISO date-time → µs since the epoch.
    With ``end`` a bare date means the end of that day (inclusive upper bound)."""
    value = value.strip()
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            dt = datetime.combine(d + timedelta(days=1) if end else d, time(), LOCAL)
            return _us(dt) - (1 if end else 0)
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not a date or date-time: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=LOCAL)
    return _us(dt)


def _us(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _local(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, LOCAL).strftime("%Y-%m-%d %H:%M:%S")


@audit_app.command("verify")
def verify(tenant: str | None = typer.Option(
               None, "--tenant", help="kommunenummer; default: every tenant"),
           checkpoint_dir: str | None = typer.Option(
               None, "--checkpoint-dir", help="where the servers write the chain's "
               "checkpoints (default: FKJ_AUDIT_CHECKPOINT_DIR, else beside the journals)"),
           witness_dir: str | None = typer.Option(
               None, "--witness-dir", help="the second checkpoint location, if any "
               "(default: FKJ_AUDIT_CHECKPOINT_WITNESS)"),
           no_checkpoints: bool = typer.Option(
               False, "--no-checkpoints", help="check the chain in the database only "
               "(a rewritten and rehashed chain, or a cut tail, then goes unnoticed)"),
           database_url: str | None = DatabaseUrl) -> None:
    """Verify the hash chain of the audit log against its signed checkpoints; exits 1 if it
    has been tampered with."""
    from fkj.security.audit.chain import verify_chain
    from fkj.security.audit.checkpoints import (
        Store,
        default_directory,
        iter_tenants,
        public_keys,
        verify_checkpoints,
        witness_directory,
    )
    from fkj.security.audit.journal import database_identity

    engine = engine_for(database_url)
    url = engine.url.render_as_string(hide_password=False)
    store = Store(default_directory(url, checkpoint_dir), witness_directory(url, witness_dir))
    if tenant:
        tenants = [tenant]
    else:
        from fkj.store.tenants import list_tenants
        tenants = [t.id for t in list_tenants(engine)]
        if not no_checkpoints:  # a tenant gone from the database still has its anchors
            tenants += sorted(set(iter_tenants(store)) - set(tenants))
    keys = None if no_checkpoints else public_keys(engine)
    if not no_checkpoints:
        console.print(f"checkpoints: {', '.join(str(loc) for loc in store.locations)}",
                      highlight=False, soft_wrap=True)
    bad = False
    for t in tenants:
        if no_checkpoints:
            r = verify_chain(engine, t)
        else:
            r = verify_checkpoints(engine, t, store, database_identity(url), keys=keys)
        if r.quarantined:
            console.print(f"[yellow]tenant {t}: {r.quarantined} record(s) in quarantine[/yellow]"
                          f" — the database refused them as written; each is kept with its "
                          f"sha256 in the chain: `fkj audit quarantine list --tenant {t}`",
                          highlight=False)
        anchors = r.anchors
        anchored = ""
        if anchors is not None and anchors.last is not None:
            seq, _, when = anchors.last
            anchored = f"; anchored up to seq {seq} ({_local(when)}, {anchors.lines} checkpoints)"
        if r.ok:
            console.print(f"[green]tenant {t}: OK[/green] — {r.checked} audit records verified; "
                          f"head seq {r.last_seq} hash {r.last_hash}{anchored}", highlight=False,
                          soft_wrap=True)
            for note in (anchors.notes if anchors is not None else ()):
                console.print(f"  note: {note}", highlight=False, soft_wrap=True)
            continue
        bad = True
        console.print(f"[red]tenant {t}: TAMPERED[/red] — {r.problem_count} problem(s) in "
                      f"{r.checked} records{anchored}:", highlight=False, soft_wrap=True)
        for p in r.problems:
            console.print(f"  - {p}", highlight=False, soft_wrap=True)
        if r.problem_count > len(r.problems):
            console.print(f"  … and {r.problem_count - len(r.problems)} more")
    if bad:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def checkpoint(tenant: str | None = typer.Option(
                   None, "--tenant", help="kommunenummer; default: every tenant"),
               database_url: str | None = DatabaseUrl) -> None:
    """Write a signed checkpoint of every tenant's audit chain now (servers do so every
    FKJ_AUDIT_CHECKPOINT_INTERVAL seconds)."""
    from fkj.security.audit.checkpoints import Checkpointer

    cp = Checkpointer.for_engine(engine_for(database_url))
    n = cp.run(wait=True, tenants=[tenant] if tenant else None)
    console.print(f"{n} checkpoint(s) written to "
                  f"{', '.join(str(loc) for loc in cp.store.locations)}", highlight=False)


@audit_app.command("search")
def search(tenant: str = typer.Option(..., "--tenant", help="kommunenummer"),
           patient: str | None = typer.Option(None, "--patient", help="Patient/x"),
           agent: str | None = typer.Option(
               None, "--agent", help="HPR-nummer, fødselsnummer or client id"),
           since: str | None = typer.Option(None, "--since", help="date or date-time"),
           until: str | None = typer.Option(None, "--until",
                                               help="date (inclusive) or date-time"),
           purpose: str | None = typer.Option(
               None, "--purpose", help="purpose of use, e.g. BTG for emergency access"),
           denied: bool = typer.Option(False, "--denied", help="only denied/failed accesses"),
           limit: int = typer.Option(100, "--limit"),
           as_json: bool = typer.Option(False, "--json", help="print the AuditEvents as JSON"),
           database_url: str | None = DatabaseUrl) -> None:
    """Search the audit log by patient, person and period (newest first)."""
    from fkj.security.audit.query import search_audit

    rows = search_audit(engine_for(database_url), tenant, patient=patient, agent=agent,
                        since_us=parse_when(since) if since else None,
                        until_us=parse_when(until, end=True) if until else None,
                        limit=limit, purpose=purpose, outcome="4" if denied else None)
    if as_json:
        print(json.dumps([r["event"] for r in rows], ensure_ascii=False, indent=2))
        return
    table = Table()
    for name in ("seq", "time", "agent", "action", "patient"):
        table.add_column(name, no_wrap=True)
    for name in ("resources", "purpose", "outcome"):
        table.add_column(name, overflow="fold")
    for r in rows:
        resources = [e["what"]["reference"] for e in r["event"].get("entity", ())
                     if e.get("role", {}).get("code") == "4" and "what" in e]
        shown = ", ".join(resources[:3]) + (f" (+{len(resources) - 3})" if len(resources) > 3
                                            else "")
        outcome = {"0": "ok", "4": "denied/failed", "8": "failed", "12": "failed"}.get(
            r["outcome"], r["outcome"])
        table.add_row(str(r["seq"]), _local(r["recorded"]), r["agent"],
                      f'{r["action"]} {r["subtype"]}', " ".join(r["patients"]), shown,
                      r["purpose"], outcome)
    console.print(table)
    console.print(f"{len(rows)} record(s)" + (" (limit reached)" if len(rows) == limit else ""))


def anchor(engine, tenant: str) -> None:
    """Checkpoint ``tenant``'s audit chain after a command-line tool wrote to it; a failure
    is reported, the work stays done (a running server, or ``fkj audit checkpoint``,
    anchors it later)."""
    from fkj.security.audit.checkpoints import checkpoint_now
    try:
        checkpoint_now(engine, [tenant])
    except Exception as e:  # noqa: BLE001 - the writes are audited; the anchor can follow
        Console(stderr=True).print(f"[yellow]warning:[/yellow] the audit chain of tenant "
                                   f"{tenant} was not checkpointed: {e} (a running server or "
                                   "`fkj audit checkpoint` will)", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("recover")
def recover(database_url: str | None = DatabaseUrl,
            journal_dir: str | None = typer.Option(
                None, "--journal-dir", help="where the servers' audit journals live "
                "(default: FKJ_AUDIT_JOURNAL_DIR, else next to the SQLite file or ./fkj-data)"
            )) -> None:
    """Chain the read records of audit journals whose server process ended before chaining
    them (a running server does this itself at start and every 30 s)."""
    from fkj.security.audit.journal import AuditJournal, database_identity, default_directory
    from fkj.security.audit.writer import AuditWriter

    engine = engine_for(database_url)
    url = engine.url.render_as_string(hide_password=False)
    directory = default_directory(url, journal_dir)
    writer = AuditWriter(engine, journal=AuditJournal(directory, database_identity(url)),
                         ship_interval=3600.0)
    try:
        n = writer.recover()
    finally:
        writer.close()
    console.print(f"{n} audit record(s) chained from orphaned journals in {directory}",
                  highlight=False)


quarantine_app = typer.Typer(no_args_is_help=True,
                             help="Audit records the database refused as written.")
audit_app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(tenant: str | None = typer.Option(
                        None, "--tenant", help="kommunenummer; default: every tenant"),
                    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
                    database_url: str | None = DatabaseUrl) -> None:
    """List the audit records kept in quarantine (the database refused them as written;
    each has a stand-in in the chain naming its sha256, checked by ``fkj audit verify``)."""
    from fkj.security.audit.quarantine import list_quarantine

    engine = engine_for(database_url)
    if tenant:
        tenants = [tenant]
    else:
        from fkj.store.tenants import list_tenants
        tenants = [t.id for t in list_tenants(engine)]
    rows = [r for t in tenants for r in list_quarantine(engine, t)]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        console.print(f"tenant {r['tenant']} seq {r['seq']} — quarantined "
                      f"{_local(r['quarantined'])}, from journal {r['journal'] or '-'} "
                      f"position {r['position']}\n  sha256 {r['sha256']}\n  error: "
                      f"{r['error']}\n  record: {r['record'][:2000]}", highlight=False,
                      markup=False, soft_wrap=True)
    console.print(f"{len(rows)} record(s) in quarantine", highlight=False)
