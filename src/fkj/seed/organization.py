"""The municipality's organisation: units (Organization + Location + HealthcareService) and
staff (Practitioner + PractitionerRole).

The *structure* (which units, how many staff per unit, their ids and HPR numbers) depends only on
the tenant and the number of patients, never on the seed, so references to e.g. "the first nurse
of home-care zone 1" are stable. Staff names and personal numbers do not depend on the seed either
(a demo login directory stays the same when the seed changes).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date
from random import Random

from fkj.model.identifiers import HERID_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM

from . import catalog as C
from .people import Kommune, PersonNumbers, address, human_name, phone, rand_date


@dataclass
class Staff:
    index: int
    prac_id: str
    name: dict
    gender: str
    hpr: str
    unit: Unit
    roles: list[tuple[str, str]] = field(default_factory=list)  # (role code, PractitionerRole id)

    @property
    def ref(self) -> dict:
        return {"reference": f"Practitioner/{self.prac_id}", "display": self.name["text"]}

    def role_ref(self, code: str) -> dict:
        for c, rid in self.roles:
            if c == code:
                return {"reference": f"PractitionerRole/{rid}", "display": self.name["text"]}
        raise KeyError(code)


@dataclass
class Unit:
    key: str
    kind: str
    name: str
    org_id: str
    loc_id: str
    hs_id: str
    iplos: tuple[str, ...]
    staff: dict[str, list[Staff]] = field(default_factory=dict)

    @property
    def ref(self) -> dict:
        return {"reference": f"Organization/{self.org_id}", "display": self.name}

    @property
    def loc_ref(self) -> dict:
        return {"reference": f"Location/{self.loc_id}", "display": self.name}

    def members(self, role: str) -> list[Staff]:
        return self.staff.get(role, [])


# kind -> (Volven 8663 code or None, location role code (v3-RoleCode), location type display)
_KIND = {
    "hjemmetjeneste": ("KP02", "COMM", "community location"),
    "sykehjem": (None, "NCCF", "Nursing or custodial care facility"),
    "legevakt": ("KA02", "ER", "Emergency room"),
    "legekontor": (None, "PC", "primary care clinic"),
    "helsestasjon": ("KF01", "PEDC", "pediatrics clinic"),
    "psykisk": (None, "CMHC", "community mental health center"),
    "tildeling": ("KD0501", "COMM", "community location"),
}
_NURSING_HOMES = ("Solheim sykehjem", "Fjellsiden bo- og omsorgssenter", "Lindegården sykehjem",
                  "Havblikk sykehjem")
_GP_OFFICES = ("Sentrum legekontor", "Nordbyen legesenter", "Sjøsiden legekontor",
               "Bakkebyen legekontor", "Elvebakken legesenter", "Torget legekontor")


def sizes(patients: int) -> tuple[int, int, int]:
    """(home-care zones, nursing homes, GP offices) for a population of *patients*."""
    n = max(patients, 0)
    zones = 2 if n < 150 else min(6, 2 + n // 300)
    homes = 1 if n < 150 else min(4, 1 + n // 400)
    gps = 2 if n < 300 else min(6, 2 + n // 400)
    return zones, homes, gps


def orgnr(seed_text: str) -> str:
    """A synthetic 9-digit organisasjonsnummer with a valid mod-11 control digit."""
    x = zlib.crc32(seed_text.encode())
    while True:
        body = f"9{x % 10_000_000:07d}"
        s = sum(w * int(c) for w, c in zip((3, 2, 7, 6, 5, 4, 3, 2), body))
        k = (11 - s % 11) % 11
        if k != 10:
            return body + str(k)
        x += 1


class Municipality:
    """Units and staff of one tenant; ``resources`` lists them in dependency order."""

    def __init__(self, k: Kommune, patients: int, seed: int, numbers: PersonNumbers,
                 today: date) -> None:
        self.k = k
        self.today = today
        self.org_id = f"{k.slug}-org-kommune"
        self.units: list[Unit] = []
        self.by_kind: dict[str, list[Unit]] = {}
        self.staff: list[Staff] = []
        self.resources: list[dict] = []
        rng = Random(f"fkj-seed:{k.code}:staff")
        zones, homes, gps = sizes(patients)
        n = max(patients, 1)

        def add_unit(key: str, kind: str, name: str, iplos: tuple[str, ...]) -> Unit:
            u = Unit(key, kind, name, f"{k.slug}-org-{key}", f"{k.slug}-loc-{key}",
                     f"{k.slug}-hs-{key}", iplos)
            self.units.append(u)
            self.by_kind.setdefault(kind, []).append(u)
            return u

        plan: list[tuple[Unit, list[tuple[str, int]]]] = []
        tild = add_unit("tildeling", "tildeling",
                        f"{k.name} kommune, tildelingskontoret for helse- og omsorgstjenester", ())
        plan.append((tild, [("saksbehandler", max(2, n // 150)), ("leder", 1)]))
        for i in range(1, zones + 1):
            u = add_unit(f"sone-{i}", "hjemmetjeneste",
                         f"{k.name} kommune, hjemmetjenesten sone {i}", ("15", "1", "6", "27"))
            roles = [("sykepleier", max(2, n // (zones * 40))),
                     ("helsefagarbeider", max(2, n // (zones * 50))), ("leder", 1)]
            if i == 1:
                roles += [("ergoterapeut", 1), ("fysioterapeut", 1)]
            plan.append((u, roles))
        for i in range(1, homes + 1):
            codes = ("21", "18", "19", "20", "8") + (("25",) if i == 1 else ())
            u = add_unit(f"sykehjem-{i}", "sykehjem",
                         f"{k.name} kommune, {_NURSING_HOMES[(i - 1) % len(_NURSING_HOMES)]}",
                         codes)
            roles = [("lege", 1), ("sykepleier", max(2, n // 150)),
                     ("helsefagarbeider", max(2, n // 150)), ("leder", 1)]
            if i == 1:
                roles.append(("fysioterapeut", 1))
            plan.append((u, roles))
        lv = add_unit("legevakt", "legevakt", f"{k.name} legevakt", ())
        plan.append((lv, [("lege", max(2, n // 200)), ("sykepleier", 2), ("leder", 1)]))
        for i in range(1, gps + 1):
            u = add_unit(f"legekontor-{i}", "legekontor",
                         f"{_GP_OFFICES[(i - 1) % len(_GP_OFFICES)]} ({k.name})", ())
            plan.append((u, [("lege", max(2, n // (gps * 60))), ("sykepleier", 1)]))
        hs = add_unit("helsestasjon", "helsestasjon",
                      f"{k.name} kommune, helsestasjon og skolehelsetjeneste", ())
        plan.append((hs, [("sykepleier", 2), ("lege", 1), ("leder", 1)]))
        ps = add_unit("psykisk-helse-rus", "psykisk", f"{k.name} kommune, psykisk helse og rus",
                      ("15", "9"))
        plan.append((ps, [("psykolog", 2), ("sykepleier", 2), ("leder", 1)]))

        self._build_org()
        for u, _ in plan:
            self._build_unit(u)
        role_n = 0
        for u, roles in plan:
            for code, count in roles:
                for _ in range(count):
                    s = self._new_staff(rng, numbers, u)
                    u.staff.setdefault(code, []).append(s)
                    role_n += 1
                    s.roles.append((code, f"{k.slug}-role-{role_n}"))
            if u.kind == "legekontor":  # the first GP also leads the practice
                first = u.staff["lege"][0]
                role_n += 1
                first.roles.append(("leder", f"{k.slug}-role-{role_n}"))
                u.staff.setdefault("leder", []).append(first)
        for s in self.staff:
            self.resources.append(self._practitioner(rng, numbers, s))
            for code, rid in s.roles:
                self.resources.append(self._role(rng, s, code, rid))

    # ------------------------------------------------------------------ helpers
    def first(self, kind: str, role: str, unit_index: int = 0) -> Staff:
        return self.by_kind[kind][unit_index].members(role)[0]

    def _herid(self, idx: int) -> str:
        return f"8{self.k.digits}{idx:03d}"

    def _build_org(self) -> None:
        k = self.k
        self.resources.append({
            "resourceType": "Organization", "id": self.org_id,
            "meta": {"profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Organization"]},
            "identifier": [{"use": "official", "system": ORGNR_SYSTEM,
                            "value": orgnr(f"kommune:{k.code}")},
                           {"system": HERID_SYSTEM, "value": self._herid(0)}],
            "active": True,
            "type": [{"coding": [{"system": C.ORG_TYPE, "code": "govt",
                                  "display": "Government"}]}],
            "name": f"{k.name} kommune",
            "telecom": [{"system": "phone", "value": f"+47 55 {k.digits[:2]} {k.digits[2:]} 00",
                         "use": "work"}],
            "address": [address(Random(f"addr:{k.code}:0"), k, use="work", line="Rådhuset")],
        })

    def _build_unit(self, u: Unit) -> None:
        k = self.k
        idx = self.units.index(u) + 1
        code8663, loc_code, loc_display = _KIND[u.kind]
        if u.kind == "sykehjem" and "25" in u.iplos:
            code8663 = "KX05"
        addr = address(Random(f"addr:{k.code}:{u.key}"), k, use="work")
        tel = {"system": "phone", "value": f"+47 55 {k.digits[:2]} {k.digits[2:]} {idx:02d}",
               "use": "work"}
        self.resources.append({
            "resourceType": "Organization", "id": u.org_id,
            "meta": {"profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Organization"]},
            "identifier": [{"use": "official", "system": HERID_SYSTEM, "value": self._herid(idx)}],
            "active": True,
            "type": [{"coding": [{"system": C.ORG_TYPE, "code": "prov",
                                  "display": "Healthcare Provider"}]}],
            "name": u.name, "telecom": [tel], "address": [addr],
            "partOf": {"reference": f"Organization/{self.org_id}", "display": f"{k.name} kommune"},
        })
        self.resources.append({
            "resourceType": "Location", "id": u.loc_id,
            "identifier": [{"system": HERID_SYSTEM, "value": self._herid(idx)}],
            "status": "active", "name": u.name, "mode": "instance",
            "type": [{"coding": [{"system": C.ROLECODE, "code": loc_code,
                                  "display": loc_display}]}],
            "telecom": [tel], "address": addr,
            "managingOrganization": u.ref,
        })
        hs: dict = {
            "resourceType": "HealthcareService", "id": u.hs_id,
            "meta": {"profile": [
                "http://hl7.no/fhir/StructureDefinition/no-basis-HealthcareService"]},
            "identifier": [{"system": HERID_SYSTEM, "value": self._herid(idx)}],
            "active": True, "providedBy": u.ref,
            "category": [{"text": "Kommunal helse- og omsorgstjeneste"}],
        }
        if code8663:
            hs["type"] = [{"coding": [{"system": C.TJENESTETYPE_SYSTEM, "code": code8663,
                                       "display": C.tjenestetyper()[code8663]}]}]
        if u.iplos:
            hs["specialty"] = [{"coding": [C.iplos_coding(c)]} for c in u.iplos]
        hs.update({"location": [u.loc_ref], "name": u.name, "telecom": [tel]})
        self.resources.append(hs)

    def _new_staff(self, rng: Random, numbers: PersonNumbers, u: Unit) -> Staff:
        i = len(self.staff) + 1
        gender = "female" if rng.random() < 0.7 else "male"
        birth = rand_date(rng, date(1962, 1, 1), date(1998, 12, 31))
        s = Staff(i, f"{self.k.slug}-prac-{i}", human_name(rng, gender, birth.year), gender,
                  f"9{self.k.digits}{i:04d}", u)
        s._birth = birth  # type: ignore[attr-defined]
        s._fnr = numbers.allocate(rng, birth, gender)  # type: ignore[attr-defined]
        self.staff.append(s)
        return s

    def _practitioner(self, rng: Random, numbers: PersonNumbers, s: Staff) -> dict:
        return {
            "resourceType": "Practitioner", "id": s.prac_id,
            "meta": {"profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Practitioner"]},
            "identifier": [{"use": "official", "system": HPR_SYSTEM, "value": s.hpr},
                           PersonNumbers.identifier(s._fnr)],  # type: ignore[attr-defined]
            "active": True, "name": [s.name],
            "telecom": [{"system": "phone", "value": phone(rng), "use": "work"}],
            "gender": s.gender,
            "birthDate": s._birth.isoformat(),  # type: ignore[attr-defined]
        }

    def _role(self, rng: Random, s: Staff, code: str, rid: str) -> dict:
        start = rand_date(rng, date(2012, 1, 1), date(self.today.year - 1, 12, 31))
        return {
            "resourceType": "PractitionerRole", "id": rid,
            "active": True, "period": {"start": start.isoformat()},
            "practitioner": s.ref, "organization": s.unit.ref,
            "code": [{"coding": [{"system": C.ROLE_SYSTEM, "code": code,
                                  "display": C.ROLES[code]}]}],
            "location": [s.unit.loc_ref],
            "healthcareService": [{"reference": f"HealthcareService/{s.unit.hs_id}"}],
        }
