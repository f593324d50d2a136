"""Tenant-defined SearchParameters (HL7 Norway extension: kommunenummer on addresses):
indexed on new writes at once, backfilled for old data by ``fkj reindex``."""

from __future__ import annotations

from fkj.repository.repository import Repository
from fkj.search.reindex import reindex
from fkj.types import Principal
from tests.api.helpers import FHIR, create

MUNICIPALITY = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
SEARCH_PARAMETER = {
    "resourceType": "SearchParameter",
    "url": "http://fkj.no/fhir/SearchParameter/patient-kommunenummer",
    "name": "kommunenummer", "status": "active",
    "description": "Kommunenummer (no-basis-municipalitycode) in the patient's address",
    "code": "kommunenummer", "base": ["Patient"], "type": "token",
    "expression": f"Patient.address.extension.where(url='{MUNICIPALITY}').value",
}


def patient_in(kommune: str, family: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}], "address": [{
        "city": "Bergen", "district": "Bergen",
        "extension": [{"url": MUNICIPALITY, "valueCoding": {
            "system": "https://register.geonorge.no/sosi-kodelister/kommunenummer",
            "code": kommune}}]}]}


def ids(client, query: str) -> set[str]:
    r = client.get(f"{client.base}/Patient?{query}")
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])
            if e["search"]["mode"] == "match"}


def test_custom_parameter_indexes_new_writes_and_reindex_backfills(client, fkj_app):
    old_bergen = create(client, patient_in("4601", "Gammel"))["id"]
    create(client, patient_in("1103", "Stavanger"))
    # before the parameter exists, it is unknown: ignored with a warning (strict → 400)
    strict = client.get(f"{client.base}/Patient?kommunenummer=4601",
                        headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400

    create(client, SEARCH_PARAMETER)
    new_bergen = create(client, patient_in("4601", "Ny"))["id"]
    assert ids(client, "kommunenummer=4601") == {new_bergen}  # old data not yet indexed

    repo = Repository(fkj_app.services, Principal.system(client.tenant), client.tenant)
    seen = []
    n = reindex(repo, ["Patient"], lambda done, total: seen.append((done, total)))
    assert n == 3 and seen[-1] == (3, 3)
    assert ids(client, "kommunenummer=4601") == {old_bergen, new_bergen}
    assert ids(client, "kommunenummer=https://register.geonorge.no/sosi-kodelister/"
                       "kommunenummer|4601") == {old_bergen, new_bergen}
    # built-in parameters still work after the reindex
    assert ids(client, "family=gammel") == {old_bergen}


def test_deleting_the_parameter_removes_it(client):
    sp = create(client, SEARCH_PARAMETER)
    assert client.get(f"{client.base}/Patient?kommunenummer=4601").status_code == 200
    assert client.delete(f"{client.base}/SearchParameter/{sp['id']}").status_code == 200
    r = client.get(f"{client.base}/Patient?kommunenummer=4601",
                   headers={"Prefer": "handling=strict", **FHIR})
    assert r.status_code == 400
