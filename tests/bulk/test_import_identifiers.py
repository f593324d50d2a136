"""``fkj import`` resolves references that name a patient only by fødselsnummer, as every
other write does (issue 30, item 4): to a Patient of the same import or one already stored;
a line naming a person no Patient has is rejected, naming the element."""

from __future__ import annotations

import orjson
import pytest

from fkj.repository.repository import Repository
from fkj.security.audit import search_audit
from fkj.types import Principal
from tests.api.builders import fnr

from .conftest import run_import

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
STORED, NEW, UNKNOWN = "13031353453", fnr(), fnr(synthetic=False)


def by_fnr(value: str) -> dict:
    return {"identifier": {"system": FNR, "value": value}}


@pytest.mark.parametrize("workers,parallel_scan", [(0, False), (2, False), (2, True)],
                         ids=["in-process", "workers", "parallel-scan"])
def test_import_resolves_logical_references(db, tenant, tmp_path, monkeypatch, workers,
                                            parallel_scan):
    from fkj.bulk import importer
    if parallel_scan:
        monkeypatch.setattr(importer, "PARALLEL_SCAN_BYTES", 0)
    sysrepo = Repository(importer_services(db), Principal.system(tenant), tenant)
    sysrepo.update("Patient", "lagret", {"resourceType": "Patient", "id": "lagret",
                                         "identifier": [{"system": FNR, "value": STORED}]})
    f = tmp_path / "in.ndjson"
    lines = [
        {"resourceType": "Condition", "id": "c-ny", "subject": by_fnr(NEW)},  # before its Patient
        {"resourceType": "Patient", "id": "ny", "identifier": [{"system": FNR, "value": NEW}]},
        {"resourceType": "Condition", "id": "c-lagret", "subject": by_fnr(STORED)},
        {"resourceType": "Condition", "id": "c-ukjent", "subject": by_fnr(UNKNOWN)},
        {"resourceType": "Observation", "id": "o-lege", "status": "final",
         "code": {"text": "x"}, "subject": {"reference": "Patient/ny"},
         "performer": [{"type": "Practitioner", **by_fnr(UNKNOWN)}]},
    ]
    f.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    report = tmp_path / "report"
    result = run_import(db, tenant, [f], report_dir=report, workers=workers, batch_size=2)
    assert (result.loaded, result.failed) == (4, 1), result.summary()
    subject = {i: sysrepo.read("Condition", i).json()["subject"] for i in ("c-ny", "c-lagret")}
    assert subject["c-ny"]["reference"] == "Patient/ny"
    assert subject["c-lagret"]["reference"] == "Patient/lagret"
    assert "reference" not in sysrepo.read("Observation", "o-lege").json()["performer"][0]
    (error,) = [orjson.loads(x) for x in (report / "errors.ndjson").read_bytes().splitlines()]
    assert error["issue"][0]["expression"] == ["Condition.subject.identifier"]
    assert UNKNOWN not in orjson.dumps(error).decode()
    # the import is in each patient's access log
    for pid, cid in (("ny", "c-ny"), ("lagret", "c-lagret")):
        events = search_audit(db.engine, tenant, patient=f"Patient/{pid}", limit=100)
        assert any(e["subtype"] == "$import" and cid in orjson.dumps(e["event"]).decode()
                   for e in events), pid


def importer_services(db):
    from fkj.repository.services import Services
    from tests.bulk.conftest import settings_for
    return Services(engine=db.engine, settings=settings_for(db))
