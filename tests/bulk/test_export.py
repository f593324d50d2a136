"""``$export`` (Bulk Data Access IG 2.0): kick-off, status, manifest, files, parameters, the
access policy, ownership of the files, cancellation, expiry; and ``fkj export``."""

from __future__ import annotations

import time

import orjson
import pytest

from fkj.bulk import jobs
from fkj.bulk.synthetic import write_ndjson
from tests.conftest import auth_headers

from .conftest import run_import

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@pytest.fixture
def loaded(db, bclient, tmp_path):
    counts = write_ndjson(tmp_path / "data", 4)
    result = run_import(db, bclient.tenant, [tmp_path / "data"])
    assert result.exit_code == 0, result.summary()
    return counts


def kick_off(client, path="/$export", headers=None, **params):
    r = client.get(client.base + path, params=params, headers={**ASYNC, **(headers or {})})
    return r


def finish(client, r, headers=None):
    assert r.status_code == 202, r.text
    url = r.headers["Content-Location"]
    job_id = url.rsplit("/", 1)[1]
    jobs.wait(job_id, 60)
    for _ in range(600):
        s = client.get(url, headers=headers or {})
        if s.status_code != 202:
            return url, s
        assert s.headers.get("X-Progress")
        time.sleep(0.05)
    raise AssertionError("export did not finish")


def download(client, manifest, headers=None) -> dict[str, list[dict]]:
    out = {}
    for o in manifest["output"]:
        r = client.get(o["url"], headers=headers or {})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(x) for x in r.content.splitlines()]
        assert len(lines) == o["count"]
        assert all(x["resourceType"] == o["type"] for x in lines)
        out[o["type"]] = lines
    return out


def test_system_export_round_trip(bclient, loaded):
    url, s = finish(bclient, kick_off(bclient, _outputFormat="application/fhir+ndjson"))
    assert s.status_code == 200
    m = s.json()
    assert m["requiresAccessToken"] is True and m["transactionTime"].endswith("Z")
    assert m["request"].startswith("http://testserver/fhir/") and "$export" in m["request"]
    assert m["error"] == []
    assert {o["type"]: o["count"] for o in m["output"]} == loaded
    data = download(bclient, m)
    assert {r["id"] for r in data["Patient"]} == {f"p{i}" for i in range(4)}


def test_kick_off_errors(bclient, loaded):
    r = bclient.get(bclient.base + "/$export")  # no Prefer: respond-async
    assert r.status_code == 400
    assert kick_off(bclient, _outputFormat="text/csv").status_code == 400
    assert kick_off(bclient, _type="NoSuchType").status_code == 400
    assert kick_off(bclient, _since="not-a-date").status_code == 400
    assert kick_off(bclient, _typeFilter="Observation?nonsense-param=1").status_code == 400
    assert kick_off(bclient, includeAssociatedData="LatestProvenanceResources").status_code == 400
    lenient = kick_off(bclient, headers={"Prefer": "respond-async, handling=lenient"},
                       includeAssociatedData="x")
    assert finish(bclient, lenient)[1].status_code == 200
    assert kick_off(bclient, "/Observation/$export").status_code == 404


@pytest.mark.parametrize("fmt", ["application/ndjson", "ndjson"])
def test_output_format_aliases(bclient, loaded, fmt):
    assert finish(bclient, kick_off(bclient, _outputFormat=fmt))[1].status_code == 200


def test_type_since_and_type_filter(bclient, loaded):
    m = finish(bclient, kick_off(bclient, _type="Patient,Encounter"))[1].json()
    assert {o["type"] for o in m["output"]} == {"Patient", "Encounter"}
    m = finish(bclient, kick_off(bclient, _since="2999-01-01T00:00:00Z"))[1].json()
    assert m["output"] == []
    m = finish(bclient, kick_off(bclient, _since="2000-01-01T00:00:00+01:00"))[1].json()
    assert sum(o["count"] for o in m["output"]) == sum(loaded.values())
    m = finish(bclient, kick_off(
        bclient, _type="Observation,Patient",
        _typeFilter="Observation?code=http://loinc.org|8867-4"))[1].json()
    counts = {o["type"]: o["count"] for o in m["output"]}
    assert counts == {"Observation": 4, "Patient": 4}
    data = download(bclient, m)
    assert {o["code"]["coding"][0]["code"] for o in data["Observation"]} == {"8867-4"}


def test_files_need_the_same_principal(bclient, fkj_app, loaded):
    url, s = finish(bclient, kick_off(bclient))
    file_url = s.json()["output"][0]["url"]
    anonymous = {"Authorization": ""}
    assert bclient.get(url, headers=anonymous).status_code == 401
    assert bclient.get(file_url, headers=anonymous).status_code == 401
    other = auth_headers(fkj_app, bclient.tenant, client_id="another-client")
    assert bclient.get(url, headers=other).status_code == 403
    assert bclient.get(file_url, headers=other).status_code == 403
    # a new token of the same client is fine
    same = auth_headers(fkj_app, bclient.tenant)
    assert bclient.get(file_url, headers=same).status_code == 200
    assert bclient.get(url + "/..%2F..%2Fetc.ndjson").status_code == 404


def test_scopes_limit_the_export(bclient, fkj_app, loaded):
    only_patients = auth_headers(fkj_app, bclient.tenant, scope="system/Patient.rs",
                                 client_id="patients-only")
    r = kick_off(bclient, "/Patient/$export", headers=only_patients)
    m = finish(bclient, r, headers=only_patients)[1].json()
    assert [o["type"] for o in m["output"]] == ["Patient"]
    assert m["output"][0]["count"] == 4
    # naming a type the token cannot read: reported in the error file, not exported
    r = kick_off(bclient, "/Patient/$export", headers=only_patients, _type="Patient,Observation")
    m = finish(bclient, r, headers=only_patients)[1].json()
    assert [o["type"] for o in m["output"]] == ["Patient"]
    assert m["error"] and m["error"][0]["count"] == 1
    err = bclient.get(m["error"][0]["url"], headers=only_patients)
    assert err.status_code == 200
    assert orjson.loads(err.content.splitlines()[0])["resourceType"] == "OperationOutcome"


def test_patient_scoped_token_gets_only_its_patient(bclient, fkj_app, loaded):
    h = auth_headers(fkj_app, bclient.tenant, scope="patient/*.rs", patient="p1",
                     client_id="patient-app")
    m = finish(bclient, kick_off(bclient, "/Patient/$export", headers=h), headers=h)[1].json()
    data = download(bclient, m, headers=h)
    assert [p["id"] for p in data["Patient"]] == ["p1"]
    assert len(data["Observation"]) == 7 and len(data["Encounter"]) == 2
    assert all(o["subject"]["reference"] == "Patient/p1" for o in data["Observation"])


def test_group_export(bclient, loaded):
    g = bclient.post(bclient.base + "/Group", json={
        "resourceType": "Group", "type": "person", "actual": True,
        "member": [{"entity": {"reference": "Patient/p0"}},
                   {"entity": {"reference": "Patient/p2"}}]}).json()
    m = finish(bclient, kick_off(bclient, f"/Group/{g['id']}/$export"))[1].json()
    counts = {o["type"]: o["count"] for o in m["output"]}
    # the Group itself is in its members' compartments (R4: Group.member)
    assert counts == {"Patient": 2, "Encounter": 4, "Observation": 14, "Group": 1}
    assert kick_off(bclient, "/Group/nope/$export").status_code == 404


def test_patient_level_export_is_the_patient_compartments(bclient, loaded):
    bclient.post(bclient.base + "/Organization", json={"resourceType": "Organization",
                                                        "name": "Bergen legevakt"})
    m = finish(bclient, kick_off(bclient, "/Patient/$export"))[1].json()
    assert {o["type"] for o in m["output"]} == {"Patient", "Encounter", "Observation"}  # no Org
    m = finish(bclient, kick_off(bclient))[1].json()
    assert "Organization" in {o["type"] for o in m["output"]}


def test_delete_cancels_and_removes_files(bclient, loaded, export_dir):
    url, s = finish(bclient, kick_off(bclient))
    file_url = s.json()["output"][0]["url"]
    assert any(export_dir.rglob("*.ndjson"))
    assert bclient.delete(url).status_code == 202
    assert not any(export_dir.rglob("*.ndjson"))
    assert bclient.get(url).status_code == 404
    assert bclient.get(file_url).status_code == 404


def test_expired_exports_are_gone(bclient, fkj_app, loaded, export_dir):
    fkj_app.services.extras["bulk_export_ttl"] = 0.2
    url, s = finish(bclient, kick_off(bclient))
    file_url = s.json()["output"][0]["url"]
    time.sleep(0.3)
    assert bclient.get(file_url).status_code == 410
    assert bclient.get(url).status_code == 410
    assert not any(export_dir.rglob("*.ndjson"))


def test_cli_export(db, bclient, loaded, tmp_path):
    from typer.testing import CliRunner
    import typer

    from fkj.cli.bulk import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["export", "--tenant", bclient.tenant, "--out", str(out),
                                 "--database-url", db.url, "--no-progress",
                                 "--type", "Patient,Observation"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["Observation.ndjson", "Patient.ndjson",
                                                     "manifest.json"]
    assert len((out / "Observation.ndjson").read_bytes().splitlines()) == loaded["Observation"]
    # the command-line export is audited too, page by page, by its own agent
    from fkj.security.audit import search_audit
    pages = [x for x in search_audit(db.engine, bclient.tenant, limit=1000)
             if x["subtype"] == "$export" and x["agent"] == "fkj-export"]
    exported = sum(int(e["description"].split()[0]) for x in pages
                   for e in x["event"]["entity"] if e.get("name") == "Observation")
    assert exported == loaded["Observation"]
    r = CliRunner().invoke(app, ["export", "--tenant", bclient.tenant, "--out", str(out),
                                 "--database-url", db.url, "--no-progress",
                                 "--since", "2999-01-01"])
    assert r.exit_code == 0
    assert orjson.loads((out / "manifest.json").read_bytes())["output"] == []
