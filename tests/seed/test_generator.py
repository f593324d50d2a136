"""Synthetic-population generator: validity, determinism, references, identifiers,
distributions and the HLR-minus story patient."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import subprocess
import sys
from datetime import date

import pytest

from fkj.model.identifiers import (
    DNR_SYSTEM,
    FNR_SYSTEM,
    HERID_SYSTEM,
    HPR_SYSTEM,
    ORGNR_SYSTEM,
    check_person_number,
    identifier_issues,
)
from fkj.model.references import iter_references, split_relative
from fkj.model.validation import validate_resource
from fkj.seed import catalog as C
from fkj.seed.generator import (
    HLR_STORY_PATIENT_INDEX,
    PSY_DEMO_PATIENT_INDEX,
    ROLE_SYSTEM,
    SPERRING_DEMO_PATIENT_INDEX,
    demo_people,
    generate,
)

TODAY = date(2025, 6, 1)
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@pytest.fixture(scope="module")
def r60() -> list[dict]:
    return list(generate("4601", 60, seed=42, today=TODAY))


@pytest.fixture(scope="module")
def r200() -> list[dict]:
    return list(generate("4601", 200, seed=42, today=TODAY))


def _age(birth: str, on: date = TODAY) -> int:
    b = date.fromisoformat(birth)
    return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


def _by_patient(resources: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for r in resources:
        ref = r.get("subject") or r.get("patient")
        if isinstance(ref, dict) and ref.get("reference", "").startswith("Patient/"):
            out[ref["reference"]].append(r)
    return out


# --------------------------------------------------------------------------- validity
def test_every_resource_validates(r60, r200):
    for resources in (r60, r200):
        bad = [(r["resourceType"], r["id"], issues) for r in resources
               if (issues := validate_resource(r))]
        assert bad == []


def test_every_resource_validates_with_default_today_and_other_tenants():
    for tenant in ("1804", "5603", "4036", "demo-tenant"):
        for r in generate(tenant, 25, seed=3):
            assert validate_resource(r) == [], (tenant, r["resourceType"], r["id"])


def test_identifiers_valid(r60):
    for r in r60:
        assert identifier_issues(r) == [], r["id"]


def test_ids_unique_and_well_formed(r200):
    keys = [(r["resourceType"], r["id"]) for r in r200]
    assert len(keys) == len(set(keys))
    assert all(ID_RE.match(i) for _, i in keys)


# --------------------------------------------------------------------------- determinism
def test_deterministic(r60):
    again = list(generate("4601", 60, seed=42, today=TODAY))
    assert json.dumps(again, ensure_ascii=False) == json.dumps(r60, ensure_ascii=False)


def test_different_seed_differs(r60):
    other = list(generate("4601", 60, seed=43, today=TODAY))
    assert json.dumps(other) != json.dumps(r60)


def test_byte_identical_across_processes():
    code = ("import json,hashlib,datetime;from fkj.seed.generator import generate;"
            "print(hashlib.sha256(json.dumps(list(generate('1103',30,7,"
            "today=datetime.date(2025,6,1))),ensure_ascii=False).encode()).hexdigest())")
    here = hashlib.sha256(json.dumps(list(generate("1103", 30, 7, today=TODAY)),
                                     ensure_ascii=False).encode()).hexdigest()
    for hashseed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": hashseed}, check=True).stdout.strip()
        assert out == here


# --------------------------------------------------------------------------- references
def test_references_point_to_earlier_resources(r200):
    seen: set[tuple[str, str]] = set()
    for r in r200:
        for path, ref in iter_references(r, r["resourceType"]):
            parts = split_relative(ref["reference"])
            assert parts is not None, (r["id"], path, ref)
            assert (parts[0], parts[1]) in seen, (r["id"], path, ref["reference"])
        seen.add((r["resourceType"], r["id"]))


# --------------------------------------------------------------------------- identifiers
def test_person_numbers_valid_and_match_birthdate(r200):
    n = 0
    for r in r200:
        if r["resourceType"] not in ("Patient", "Practitioner"):
            continue
        person = [i for i in r["identifier"] if i["system"] in (FNR_SYSTEM, DNR_SYSTEM)]
        assert len(person) == 1
        ident = person[0]
        kind = "fnr" if ident["system"] == FNR_SYSTEM else "dnr"
        v = ident["value"]
        assert check_person_number(v, kind) is None, v
        assert int(v[2:4]) > 80  # synthetic (Skatteetaten Test-Norge, month + 80)
        b = date.fromisoformat(r["birthDate"])
        day = int(v[:2]) - (40 if kind == "dnr" else 0)
        assert (day, int(v[2:4]) - 80, int(v[4:6])) == (b.day, b.month, b.year % 100)
        ind = int(v[6:9])
        assert (ind < 500) if b.year < 2000 else (ind >= 500)
        assert (int(v[8]) % 2 == 1) == (r["gender"] == "male")
        n += 1
    assert n > 200


def test_organisation_identifiers(r60):
    orgs = [r for r in r60 if r["resourceType"] == "Organization"]
    kommune = [o for o in orgs if "partOf" not in o]
    assert len(kommune) == 1
    orgnr = next(i["value"] for i in kommune[0]["identifier"] if i["system"] == ORGNR_SYSTEM)
    s = sum(w * int(c) for w, c in zip((3, 2, 7, 6, 5, 4, 3, 2), orgnr[:8]))
    assert len(orgnr) == 9 and (11 - s % 11) % 11 == int(orgnr[8])
    units = [o for o in orgs if "partOf" in o]
    assert all(any(i["system"] == HERID_SYSTEM for i in o["identifier"]) for o in units)
    names = " ".join(o["name"] for o in units).lower()
    for word in ("hjemmetjenesten sone 1", "hjemmetjenesten sone 2", "sykehjem", "legevakt",
                 "legekontor", "helsestasjon", "psykisk helse og rus"):
        assert word in names, word
    hs = [r for r in r60 if r["resourceType"] == "HealthcareService"]
    assert len(hs) == len(units) == len([r for r in r60 if r["resourceType"] == "Location"])
    specialties = {c["code"] for h in hs for s in h.get("specialty", []) for c in s["coding"]
                   if c["system"] == C.IPLOS_SYSTEM}
    assert {"15", "21", "6"} <= specialties
    for p in (r for r in r60 if r["resourceType"] == "Practitioner"):
        hpr = next(i["value"] for i in p["identifier"] if i["system"] == HPR_SYSTEM)
        assert hpr.isdigit() and 7 <= len(hpr) <= 9
    roles = {c["code"] for r in r60 if r["resourceType"] == "PractitionerRole"
             for c in r["code"][0]["coding"] if c["system"] == ROLE_SYSTEM}
    assert roles == set(C.ROLES)


# --------------------------------------------------------------------------- distributions
def test_age_distribution_band(r200):
    """README: ~64 % of the generated users are >= 67 (accepted band 55-78 %)."""
    ages = [_age(r["birthDate"]) for r in r200 if r["resourceType"] == "Patient"]
    share = sum(a >= 67 for a in ages) / len(ages)
    assert 0.55 <= share <= 0.78, share
    assert min(ages) < 18 and max(ages) >= 90


def test_all_resource_types_appear(r200):
    types = collections.Counter(r["resourceType"] for r in r200)
    for t in ("Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole",
              "Patient", "ServiceRequest", "EpisodeOfCare", "CareTeam", "AllergyIntolerance",
              "Consent", "Condition", "Flag", "Encounter", "Procedure", "MedicationStatement",
              "Observation", "Device", "DeviceUseStatement", "RelatedPerson"):
        assert types[t] > 0, t


def test_special_content_appears(r200):
    consents = [r for r in r200 if r["resourceType"] == "Consent"]
    kinds = collections.Counter(c["meta"]["tag"][0]["code"] for c in consents)
    assert kinds["hlr-minus"] >= 2 and kinds["sperring"] >= 1
    for c in consents:
        if c["meta"]["tag"][0]["code"] == "sperring":
            assert c["status"] == "active"
            assert c["scope"]["coding"][0] == {"system": C.CONSENTSCOPE, "code": "patient-privacy",
                                               "display": "Privacy Consent"}
            prov = c["provision"]
            assert prov["type"] == "deny"
            assert "actor" in prov or "securityLabel" in prov
            for a in prov.get("actor", []):
                assert a["reference"]["reference"].startswith("Organization/")
    labels = {s["code"] for r in r200 for s in r.get("meta", {}).get("security", [])}
    assert {"PSY", "SUD", "R"} <= labels
    labelled = [r for r in r200 if r.get("meta", {}).get("security")]
    assert {r["resourceType"] for r in labelled} >= {"Condition", "Encounter"}
    assert all(r.get("serviceProvider", {}).get("reference", "").endswith("psykisk-helse-rus")
               for r in labelled if r["resourceType"] == "Encounter")
    crit = {c["code"] for r in r200 if r["resourceType"] == "Condition"
            for cat in r["category"] for c in cat.get("coding", [])
            if c["system"] == C.KRITISK_SYSTEM}
    assert crit, "no critical-information Condition"
    codes = {c["system"] for r in r200 if r["resourceType"] == "Condition"
             for c in r["code"]["coding"]}
    assert {C.ICPC2_SYSTEM, C.ICD10_SYSTEM} <= codes
    loinc = {c["code"] for r in r200 if r["resourceType"] == "Observation"
             for c in r["code"]["coding"]}
    assert {"59261-8", "14682-9", "62238-1", "6301-6", "718-7", "1988-5", "85354-9",
            C.FALL_RISK[0]} <= loinc
    atc = {c["code"] for r in r200 if r["resourceType"] == "MedicationStatement"
           for c in r["medicationCodeableConcept"]["coding"]}
    assert {"B01AF02", "B01AA03"} <= atc
    devices = {r["type"]["coding"][0]["code"] for r in r200 if r["resourceType"] == "Device"}
    assert {"rullator", "trygghetsalarm", "sykeseng"} <= devices
    assert any(r["resourceType"] == "Patient" and "deceasedDateTime" in r for r in r200)
    assert any(r["resourceType"] == "Patient" and r["identifier"][0]["system"] == DNR_SYSTEM
               for r in r200)


def test_services_shape(r200):
    srs = {r["id"]: r for r in r200 if r["resourceType"] == "ServiceRequest"}
    for sr in srs.values():
        assert sr["intent"] == "order" and sr["status"] in ("active", "completed")
        assert sr["code"]["coding"][0]["system"] == C.IPLOS_SYSTEM
        assert sr["requester"]["reference"].startswith("PractitionerRole/")
        assert sr["performer"][0]["reference"].startswith("Organization/")
        assert "start" in sr["occurrencePeriod"]
    for e in (r for r in r200 if r["resourceType"] == "EpisodeOfCare"):
        sr = srs[e["referralRequest"][0]["reference"].split("/")[1]]
        assert e["type"][0]["coding"][0] == sr["code"]["coding"][0]
        assert e["status"] == ("active" if sr["status"] == "active" else "finished")
        assert e["managingOrganization"] == sr["performer"][0]
        assert e["team"][0]["reference"].startswith("CareTeam/")


def test_hlr_minus_share_over_80():
    res = list(generate("4601", 600, seed=5, today=TODAY))
    by = _by_patient(res)
    over80 = [p for p in res if p["resourceType"] == "Patient" and _age(p["birthDate"]) >= 80]
    hlr = [p for p in over80 if any(r["resourceType"] == "Consent" and
                                    r["meta"]["tag"][0]["code"] == "hlr-minus"
                                    for r in by[f"Patient/{p['id']}"])]
    assert 0.02 <= len(hlr) / len(over80) <= 0.16


# --------------------------------------------------------------------------- story patient
@pytest.mark.parametrize("seed", [42, 1, 999])
def test_story_patient(seed):
    res = list(generate("4601", 5, seed=seed, today=TODAY))
    pid = f"4601-pat-{HLR_STORY_PATIENT_INDEX}"
    patient = next(r for r in res if r["resourceType"] == "Patient" and r["id"] == pid)
    assert patient["gender"] == "male" and _age(patient["birthDate"]) == 86
    assert "deceasedDateTime" not in patient
    mine = _by_patient(res)[f"Patient/{pid}"]
    hlr = [r for r in mine if r["resourceType"] == "Consent"]
    assert len(hlr) == 1
    c = hlr[0]
    assert c["status"] == "active" and c["provision"]["type"] == "deny"
    assert c["scope"]["coding"][0]["code"] == "treatment"
    assert c["category"][0]["coding"][0]["code"] == "11"
    assert "HLR-minus" in c["text"]["div"]
    sr15 = [r for r in mine if r["resourceType"] == "ServiceRequest"
            and r["code"]["coding"][0]["code"] == "15" and r["status"] == "active"]
    assert len(sr15) == 1 and sr15[0]["quantityRatio"]["numerator"]["value"] == 2
    eoc15 = [r for r in mine if r["resourceType"] == "EpisodeOfCare"
             and r["type"][0]["coding"][0]["code"] == "15" and r["status"] == "active"]
    assert len(eoc15) == 1
    conds = {c["code"]: r for r in mine if r["resourceType"] == "Condition"
             for c in r["code"]["coding"]}
    assert "I48.9" in conds and "K78" in conds
    ckd = conds["N18.3"]
    assert ckd["onsetDateTime"].startswith(str(TODAY.year - 1))
    meds = [r for r in mine if r["resourceType"] == "MedicationStatement"
            and r["medicationCodeableConcept"]["coding"][0]["code"] == "B01AF02"]
    assert len(meds) == 1 and meds[0]["status"] == "active"
    assert meds[0]["reasonReference"][0]["reference"] == f"Condition/{conds['I48.9']['id']}"


def test_story_patient_independent_of_seed():
    def story(seed):
        return [r for r in generate("3201", 4, seed=seed, today=TODAY)
                if r["id"] == "3201-pat-0" or r["id"].startswith("3201-p0-")]
    assert json.dumps(story(1)) == json.dumps(story(2))


# --------------------------------------------------------------------------- demo people
def test_demo_people(r200):
    people = demo_people("4601", 200, 42, today=TODAY)
    index = {f"{r['resourceType']}/{r['id']}": r for r in r200}
    pracs = [p for p in people if p["kind"] == "practitioner"]
    cits = [p for p in people if p["kind"] == "citizen"]
    roles = collections.Counter(r for p in pracs for r in p["roles"])
    for role in ("lege", "sykepleier", "saksbehandler", "leder"):
        assert roles[role] >= 1
    units = {p["unit"] for p in pracs}
    assert "Organization/4601-org-legevakt" in units and "Organization/4601-org-sone-1" in units
    for p in pracs:
        res = index[p["id"]]
        assert res["name"][0]["text"] == p["name"]
        assert {"system": HPR_SYSTEM, "value": p["hpr_number"], "use": "official"} \
            in res["identifier"]
        assert p["unit"] in index
    assert [c["id"] for c in cits] == [f"Patient/4601-pat-{i}" for i in
                                       (HLR_STORY_PATIENT_INDEX, PSY_DEMO_PATIENT_INDEX,
                                        SPERRING_DEMO_PATIENT_INDEX)]
    for c in cits:
        res = index[c["id"]]
        assert res["identifier"][0]["value"] == c["pid"]
        assert res["name"][0]["text"] == c["name"]


def test_small_and_empty_populations():
    assert [r["resourceType"] for r in generate("4601", 0, today=TODAY)].count("Patient") == 0
    one = list(generate("4601", 1, today=TODAY))
    assert [r["id"] for r in one if r["resourceType"] == "Patient"] == ["4601-pat-0"]
    assert all(validate_resource(r) == [] for r in one)
