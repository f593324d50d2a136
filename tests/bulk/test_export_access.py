"""Who may poll and download a bulk export (issue 30, item 6), over HTTP: only the job's
owner — the same identity, client and context, whatever the token — and, for each file,
only with scopes that may read its type now; the files are readable by the server's user
only (0600, directories 0700)."""

from __future__ import annotations

import stat

import orjson
import pytest
from sqlalchemy import update

from fkj.bulk.tables import bulk_export_job
from fkj.security.audit import flush_audit, search_audit
from fkj.store.backend import scope
from tests.conftest import auth_headers

from .test_export import finish, kick_off


@pytest.fixture
def loaded(db, bclient, tmp_path):
    from fkj.bulk.synthetic import write_ndjson

    from .conftest import run_import
    write_ndjson(tmp_path / "data", 3)
    assert run_import(db, bclient.tenant, [tmp_path / "data"]).exit_code == 0


def _files(manifest) -> dict[str, str]:
    return {o["type"]: o["url"] for o in manifest["output"]}


def _refusals(fkj_app, tenant) -> list[dict]:
    flush_audit(fkj_app.services)
    return [x for x in search_audit(fkj_app.services.engine, tenant, outcome="4", limit=1000)
            if x["subtype"] == "$export"]


# every one of these shares the subject of the token that started the export ("fkj-cli",
# the subject of every `fkj token`) and differs in who or what context it speaks for
SAME_SUBJECT_OTHERS = {
    "another client": {"client_id": "another-client", "subject": "fkj-cli"},
    "a practitioner": {"kind": "practitioner", "hpr_number": "9144900", "roles": ["lege"]},
    "another fhirUser": {"fhir_user": "Practitioner/other"},
    "a patient context": {"patient": "p1"},
}


@pytest.mark.parametrize("who", sorted(SAME_SUBJECT_OTHERS))
def test_a_token_with_the_same_subject_but_another_owner_is_refused(bclient, fkj_app, loaded,
                                                                    who):
    url, s = finish(bclient, kick_off(bclient))
    files = _files(s.json())
    other = auth_headers(fkj_app, bclient.tenant, **SAME_SUBJECT_OTHERS[who])
    assert bclient.get(url, headers=other).status_code == 403
    for name in ("Patient", "Observation"):
        r = bclient.get(files[name], headers=other)
        assert r.status_code == 403, (who, name, r.text[:200])
        assert r.json()["resourceType"] == "OperationOutcome"
    assert bclient.delete(url, headers=other).status_code == 403
    # the owner, with a new token, still has everything
    owner = auth_headers(fkj_app, bclient.tenant)
    assert bclient.get(files["Observation"], headers=owner).status_code == 200
    # the refusals are in the audit log
    refused = _refusals(fkj_app, bclient.tenant)
    assert len(refused) >= 4 and all("not the owner" in x["event"]["outcomeDesc"]
                                     for x in refused)


def test_a_narrower_token_of_the_owner_gets_only_the_files_it_may_read(bclient, fkj_app,
                                                                       loaded):
    url, s = finish(bclient, kick_off(bclient))
    files = _files(s.json())
    assert {"Patient", "Observation", "Encounter"} <= set(files)
    # the attack of the finding: a system/Patient.rs token of the same client and subject
    narrow = auth_headers(fkj_app, bclient.tenant, scope="system/Patient.rs")
    r = bclient.get(files["Observation"], headers=narrow)
    assert r.status_code == 403, r.text[:200]
    assert "Observation" in r.json()["issue"][0]["diagnostics"]
    assert bclient.get(files["Encounter"], headers=narrow).status_code == 403
    r = bclient.get(files["Patient"], headers=narrow)
    assert r.status_code == 200
    assert {orjson.loads(x)["resourceType"] for x in r.content.splitlines()} == {"Patient"}
    # the manifest it polls names only what it may download
    m = bclient.get(url, headers=narrow)
    assert m.status_code == 200
    assert [o["type"] for o in m.json()["output"]] == ["Patient"]
    refused = _refusals(fkj_app, bclient.tenant)
    assert any("Observation.ndjson refused" in x["event"]["outcomeDesc"] for x in refused)


def test_a_patient_app_gets_only_its_own_patients_export(bclient, fkj_app, loaded):
    """Two tokens of one app (client) and one user, launched for different patients."""
    p1 = auth_headers(fkj_app, bclient.tenant, scope="patient/*.rs", patient="p1",
                      client_id="patient-app")
    p2 = auth_headers(fkj_app, bclient.tenant, scope="patient/*.rs", patient="p2",
                      client_id="patient-app")
    url, s = finish(bclient, kick_off(bclient, "/Patient/$export", headers=p1), headers=p1)
    files = _files(s.json())
    assert bclient.get(url, headers=p2).status_code == 403
    assert bclient.get(files["Observation"], headers=p2).status_code == 403
    assert bclient.get(files["Observation"], headers=p1).status_code == 200


def test_a_job_without_an_owner_is_nobodys(bclient, fkj_app, db, loaded):
    """A job started before migration 0015 recorded no owner: nobody may see it."""
    url, s = finish(bclient, kick_off(bclient))
    job_id = url.rsplit("/", 1)[1]
    with scope(db.engine, bclient.tenant, write=True) as conn:
        conn.execute(update(bulk_export_job).where(bulk_export_job.c.id == job_id)
                     .values(owner=None))
    assert bclient.get(url).status_code == 403
    assert bclient.get(s.json()["output"][0]["url"]).status_code == 403


def test_export_files_are_readable_by_the_server_user_only(bclient, loaded, export_dir):
    url, _ = finish(bclient, kick_off(bclient, _type="Patient,Observation"))
    job_dir = export_dir / bclient.tenant / url.rsplit("/", 1)[1]
    files = sorted(job_dir.iterdir())
    assert [f.name for f in files] == ["Observation.ndjson", "Patient.ndjson"]
    for d in (export_dir, export_dir / bclient.tenant, job_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_the_error_file_is_private_too(bclient, fkj_app, loaded, export_dir):
    only_patients = auth_headers(fkj_app, bclient.tenant, scope="system/Patient.rs",
                                 client_id="patients-only")
    url, s = finish(bclient, kick_off(bclient, "/Patient/$export", headers=only_patients,
                                      _type="Patient,Observation"), headers=only_patients)
    job_dir = export_dir / bclient.tenant / url.rsplit("/", 1)[1]
    assert stat.S_IMODE((job_dir / "error.ndjson").stat().st_mode) == 0o600
    err = s.json()["error"][0]["url"]
    assert bclient.get(err, headers=only_patients).status_code == 200  # the owner's
    assert bclient.get(err).status_code == 403  # not another client's


def test_cli_export_files_are_private(db, bclient, loaded, tmp_path):
    import typer
    from typer.testing import CliRunner

    from fkj.cli.bulk import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "new" / "out"
    r = CliRunner().invoke(app, ["export", "--tenant", bclient.tenant, "--out", str(out),
                                 "--database-url", db.url, "--no-progress", "--type",
                                 "Patient"])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "Patient.ndjson").stat().st_mode) == 0o600
