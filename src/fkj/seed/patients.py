"""One synthetic patient's FHIR resources, built from her identity and care plan
(:mod:`fkj.seed.profile`).

Every probability used here is listed (with its rationale) in ``src/fkj/data/seed/README.md``;
keep the two in step.
"""

from __future__ import annotations

from datetime import date, timedelta
from random import Random

from . import catalog as C
from .organization import Municipality, Staff, Unit
from .people import (
    PersonNumbers,
    address,
    age_on,
    dt,
    human_name,
    phone,
    rand_date,
    years_before,
)
from .profile import (
    HLR_MINUS_OVER_80,
    LANGTID_90,
    SERVICE_P,
    Plan,
    Profile,
    Service,
    band,
)


# --------------------------------------------------------------------------- builder
class PatientBuilder:
    def __init__(self, p: Profile, m: Municipality, seed: int, today: date) -> None:
        self.p, self.m, self.k, self.today = p, m, m.k, today
        self.rng = Random(f"fkj-seed:{self.k.code}:story:{p.n}:clin" if p.story
                          else f"fkj-seed:{self.k.code}:{seed}:pat:{p.n}:clin")
        self.end = p.deceased or today
        self.window = years_before(self.end, 3)
        self.age = age_on(p.birth, today)
        self.b = band(self.age)
        self.out: list[dict] = []
        self.counter: dict[str, int] = {}
        self.cond_ids: dict[str, str] = {}
        self.eoc_by_unit: dict[str, list[str]] = {}
        self.home_visits: list[tuple[str, date, Staff, str | None]] = []
        self.plan = self._story_plan() if p.story else self._random_plan()

    # ------------------------------------------------------------------ ids & helpers
    def _id(self, kind: str) -> str:
        i = self.counter.get(kind, 0) + 1
        self.counter[kind] = i
        return f"{self.k.slug}-p{self.p.n}-{kind}-{i}"

    def _meta(self, label: str | None = None, **extra) -> dict:
        meta = dict(extra)
        if label:
            meta["security"] = [C.SEC_PSY if label == "PSY" else C.SEC_SUD, C.SEC_RESTRICTED]
        return meta

    def _add(self, res: dict, label: str | None = None) -> dict:
        meta = res.get("meta", {})
        if label:
            meta.update(self._meta(label))
        if meta:
            res["meta"] = meta
            # keep key order stable: resourceType, id, meta first
            ordered = {"resourceType": res.pop("resourceType"), "id": res.pop("id"),
                       "meta": res.pop("meta"), **res}
            res.clear()
            res.update(ordered)
        self.out.append(res)
        return res

    def _date_between(self, start: date, end: date | None = None) -> date:
        lo = max(start, self.p.birth)
        hi = min(end or self.end, self.end)
        if lo > hi:
            return max(hi, self.p.birth)
        return rand_date(self.rng, lo, hi)

    def _staff(self, unit: Unit, *roles: str) -> Staff:
        pool = [s for r in roles for s in unit.members(r)]
        return self.rng.choice(pool)

    def _adult_since(self, years_min: int = 18) -> date:
        return years_before(self.p.birth, -years_min) if self.age >= years_min else self.p.birth

    # ------------------------------------------------------------------ plans
    def _random_plan(self) -> Plan:
        rng, b, age, m = self.rng, self.b, self.age, self.m
        zones = m.by_kind["hjemmetjeneste"]
        gps = [s for u in m.by_kind["legekontor"] for s in u.members("lege")]
        plan = Plan(zone=rng.choice(zones), gp=rng.choice(gps))
        for key, row in C.DIAGNOSES.items():
            if rng.random() < row[4][b]:
                plan.dx.append(key)
        if self.p.restricted:
            if self.p.n == 1:
                plan.restricted = ["depresjon", "alkohol"]
            else:
                first = rng.choice(list(C.RESTRICTED_DIAGNOSES))
                plan.restricted = [first]
                if rng.random() < 0.25:
                    other = rng.choice(list(C.RESTRICTED_DIAGNOSES))
                    if other != first:
                        plan.restricted.append(other)
        if rng.random() < 0.015:
            plan.critical.append(rng.choice(
                ["binyrebarksvikt", "myasteni", "hemofili", "malign_hypertermi",
                 "vanskelig_intubasjon", "mrsa"]))
        if any(C.RESTRICTED_DIAGNOSES[d][4] == "SUD" for d in plan.restricted) \
                and rng.random() < 0.2:
            plan.critical.append("hepatitt_c")
        if age >= 18 and rng.random() < 0.10:
            plan.allergies.append(rng.choice(
                ["penicillin", "penicillin", "penicillin_anafylaksi", "sulfa", "nsaid", "kodein",
                 "jodkontrast"]))
        if rng.random() < 0.03:
            plan.allergies.append(rng.choice(["latex", "notter", "veps"]))
        # drugs
        for key in plan.dx:
            if key == "atrieflimmer":
                r = rng.random()
                if r < 0.6:
                    plan.drugs.append(("apixaban" if age >= 80 else "apixaban5", key))
                elif r < 0.8:
                    plan.drugs.append(("warfarin", key))
                elif r < 0.95:
                    plan.drugs.append(("rivaroksaban", key))
            if key == "diabetes2" and rng.random() < 0.2:
                plan.drugs.append(("insulin_glargin", key))
            for drug in C.DIAGNOSES[key][5]:
                if rng.random() < 0.7 and all(d != drug for d, _ in plan.drugs):
                    plan.drugs.append((drug, key))
        for key in plan.restricted:
            for drug in C.RESTRICTED_DIAGNOSES[key][5]:
                if rng.random() < 0.7:
                    plan.drugs.append((drug, key))
        if age >= 67 and rng.random() < 0.05:
            plan.drugs.append(("zopiklon", None))
        plan.services = self._random_services(plan)
        codes = {s.code for s in plan.services if s.status == "active"}
        # critical information, flags, devices
        if age >= 80 and rng.random() < HLR_MINUS_OVER_80:
            plan.hlr = self._date_between(years_before(self.end, 2))
        if age >= 40 and rng.random() < 0.03:
            plan.flags.append(rng.choice(C.FLAGS))
        if "nyresvikt" in plan.dx and rng.random() < 0.05:
            plan.dialysis = True
            plan.flags.append(C.FLAGS[0])
        if age >= 67 and rng.random() < (0.40 if b == 4 else 0.25):
            plan.devices.append("rullator")
        if "6" in codes:
            plan.devices.append("trygghetsalarm")
        if "21" in codes or ("15" in codes and age >= 85 and rng.random() < 0.3):
            plan.devices.append("sykeseng")
        if b == 4 and rng.random() < 0.08:
            plan.devices.append("rullestol")
        if "15" in codes and age >= 67 and rng.random() < 0.3:
            plan.devices.append("dusjstol")
        if "27" in codes:
            plan.devices.append("medisindispenser")
        if age >= 67 and rng.random() < 0.03:
            plan.devices.append("pacemaker")
        # sperring
        if self.p.sperring:
            if plan.restricted and rng.random() < 0.5 or self.p.n == 2 and plan.restricted:
                plan.sperring = ("label", C.RESTRICTED_DIAGNOSES[plan.restricted[0]][4])
            else:
                choices = m.by_kind["legevakt"] + m.by_kind["sykehjem"] + \
                    m.by_kind["psykisk"] + [u for u in m.by_kind["legekontor"] if u is not plan.gp.unit]
                plan.sperring = ("unit", rng.choice(choices))
        # next of kin
        if age < 18:
            plan.kin = list(C.KIN_CHILD) if rng.random() < 0.7 else [rng.choice(C.KIN_CHILD)]
        elif rng.random() < (0.85 if age >= 67 else 0.6):
            pool = C.KIN_ELDER if age >= 67 else C.KIN_ADULT
            plan.kin.append(rng.choice(pool))
            if rng.random() < 0.35:
                other = rng.choice(pool)
                if other != plan.kin[0]:
                    plan.kin.append(other)
        plan.legevakt = [rng.choice(list(C.ACUTE) if age >= 67 else list(C.ACUTE)[:4])
                         for _ in range(rng.randint(0, (1, 1, 2, 2, 3)[b]))]
        plan.gp_visits = rng.randint(0, (2, 2, 3, 4, 4)[b]) if plan.dx or plan.restricted else \
            rng.randint(0, 1)
        return plan

    def _random_services(self, plan: Plan) -> list[Service]:
        rng, b, age, m = self.rng, self.b, self.age, self.m
        out: list[Service] = []

        def start_between(years_back: float, months_min: int = 1) -> date:
            lo = self.end - timedelta(days=int(365 * years_back))
            return self._date_between(lo, self.end - timedelta(days=30 * months_min))

        p_lt = LANGTID_90 if age >= 90 else SERVICE_P["21"][b]
        if "demens" in plan.dx:
            p_lt = min(0.6, p_lt * 2.5)
        if rng.random() < p_lt:
            home = rng.choice(m.by_kind["sykehjem"])
            start = start_between(4, 2)
            if rng.random() < 0.5:  # had home nursing before moving in
                pre = self._date_between(years_before(start, 3), start - timedelta(days=60))
                out.append(Service("15", plan.zone, "completed", pre, start - timedelta(days=1),
                                   hours_per_week=round(rng.uniform(3, 12), 1)))
            out.append(Service("21", home, "active", start))
        else:
            if rng.random() < SERVICE_P["15"][b] or ("demens" in plan.dx and rng.random() < 0.4):
                per_day = rng.choice((1, 1, 1, 2, 2, 3)) if age >= 67 else 1
                out.append(Service("15", plan.zone, "active", start_between(5), per_day=per_day,
                                   hours_per_week=round(per_day * rng.uniform(2.5, 4.5), 1)))
                if age >= 67 and rng.random() < 0.15:
                    out.append(Service("27", plan.zone, "active", start_between(3)))
            if rng.random() < SERVICE_P["1"][b]:
                out.append(Service("1", plan.zone, "active", start_between(5),
                                   hours_per_week=round(rng.uniform(1, 4), 1)))
            if rng.random() < SERVICE_P["6"][b]:
                out.append(Service("6", plan.zone, "active", start_between(6)))
            if rng.random() < SERVICE_P["5"][b]:
                out.append(Service("5", plan.zone, "active", start_between(2)))
            if "demens" in plan.dx and rng.random() < 0.4:
                out.append(Service("4", rng.choice(m.by_kind["sykehjem"]), "active",
                                   start_between(3)))
        if rng.random() < SERVICE_P["19"][b]:
            home = m.by_kind["sykehjem"][0]
            s = self._date_between(self.window, self.end - timedelta(days=40))
            out.append(Service("19", home, "completed", s, s + timedelta(days=rng.randint(14, 28))))
        if age < 18 and "utviklingshemming" in plan.dx and rng.random() < 0.6:
            out.append(Service("8", m.by_kind["sykehjem"][0], "active", start_between(4)))
        if 18 <= age < 67 and "utviklingshemming" in plan.dx and rng.random() < 0.4:
            out.append(Service("9", m.by_kind["psykisk"][0], "active", start_between(4)))
        if plan.restricted:
            label = C.RESTRICTED_DIAGNOSES[plan.restricted[0]][4]
            psyk = m.by_kind["psykisk"][0]
            if rng.random() < 0.5 or self.p.n == 1:
                out.append(Service("15", psyk, "active", start_between(3), label=label,
                                   hours_per_week=round(rng.uniform(1, 3), 1),
                                   note="Oppfølging fra psykisk helse og rus i hjemmet"))
            if rng.random() < 0.2:
                out.append(Service("9", psyk, "active", start_between(3), label=label,
                                   hours_per_week=3.0))
        if self.p.deceased:  # services end at death
            for s in out:
                if s.status == "active":
                    s.status, s.end = "completed", self.p.deceased
        return out

    def _story_plan(self) -> Plan:
        """Patient 0: 86-year-old man, HLR-minus, home nursing twice a day, atrial
        fibrillation on apixaban, chronic kidney disease diagnosed last year."""
        m, t = self.m, self.today
        zone = m.by_kind["hjemmetjeneste"][0]
        gp = m.by_kind["legekontor"][0].members("lege")[0]
        plan = Plan(zone=zone, gp=gp)
        plan.dx = ["atrieflimmer", "nyresvikt", "hypertensjon", "artrose"]
        plan.onset = {"atrieflimmer": years_before(t, 7) + timedelta(days=40),
                      "nyresvikt": date(t.year - 1, 9, 12),
                      "hypertensjon": years_before(t, 19),
                      "artrose": years_before(t, 12)}
        plan.allergies = ["penicillin"]
        plan.drugs = [("apixaban", "atrieflimmer"), ("metoprolol", "atrieflimmer"),
                      ("amlodipin", "hypertensjon"), ("paracetamol", "artrose")]
        start15 = t - timedelta(days=420)
        plan.services = [
            Service("15", zone, "active", start15, per_day=2, hours_per_week=7.0,
                    note="Hjemmesykepleie to ganger daglig (morgen og kveld): "
                         "legemiddelhåndtering, tilsyn og hjelp til personlig hygiene"),
            Service("6", zone, "active", start15 + timedelta(days=14)),
            Service("19", m.by_kind["sykehjem"][0], "completed", t - timedelta(days=480),
                    t - timedelta(days=459)),
        ]
        plan.hlr = t - timedelta(days=120)
        plan.flags = []
        plan.devices = ["rullator", "trygghetsalarm"]
        plan.kin = [("DAU", "natural daughter"), ("SON", "natural son")]
        plan.legevakt = ["pneumoni"]
        plan.gp_visits = 4
        return plan

    # ------------------------------------------------------------------ materialise
    def build(self) -> list[dict]:
        self._patient()
        self._kin()
        self._conditions()
        self._allergies()
        self._medications()
        self._services()
        self._consents()
        self._flags()
        self._devices()
        self._encounters()
        self._observations()
        return self.out

    def _patient(self) -> None:
        p, rng = self.p, self.rng
        res: dict = {
            "resourceType": "Patient", "id": p.pid,
            "meta": {"profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Patient"]},
            "identifier": [PersonNumbers.identifier(p.number, dnr=p.dnr)],
            "active": True, "name": [p.name],
        }
        if self.age >= 16:
            res["telecom"] = [{"system": "phone", "value": phone(rng), "use": "mobile"}]
        res["gender"] = p.sex
        res["birthDate"] = p.birth.isoformat()
        if p.deceased:
            res["deceasedDateTime"] = dt(p.deceased, rng.randint(0, 23), rng.randint(0, 59))
        self.address = address(rng, self.k)
        res["address"] = [self.address]
        res["generalPractitioner"] = [self.plan.gp.ref, self.plan.gp.unit.ref]
        res["managingOrganization"] = {"reference": f"Organization/{self.m.org_id}"}
        self._add(res)

    def _kin(self) -> None:
        rng, p = self.rng, self.p
        female = {"DAU", "WIFE", "NIECE", "MTH", "SIS"}
        for code, display in self.plan.kin:
            sex = "female" if code in female else "male" if code != "FRND" else \
                rng.choice(("female", "male"))
            year = p.birth.year + (28 if code in ("DAU", "SON", "NIECE", "NEPHEW")
                                   else -30 if code in ("MTH", "FTH") else 0)
            name = human_name(rng, sex, year)
            if code in ("SON", "HUSB", "WIFE", "MTH", "FTH", "BRO") and rng.random() < 0.6:
                name = dict(name, family=p.name["family"],
                            text=" ".join(name["given"] + [p.name["family"]]))
            res: dict = {
                "resourceType": "RelatedPerson", "id": self._id("rp"),
                "active": True, "patient": p.ref,
                "relationship": [
                    {"coding": [{"system": C.ROLECODE, "code": code, "display": display}]},
                    {"coding": [{"system": C.CONTACT_ROLE, "code": "N",
                                 "display": "Next-of-Kin"}]}],
                "name": [name],
                "telecom": [{"system": "phone", "value": phone(rng), "use": "mobile"}],
                "gender": sex,
            }
            if code in ("WIFE", "HUSB") or (p.birth.year > self.today.year - 18):
                res["address"] = [self.address]
            self._add(res)

    def _condition(self, key: str, icpc: str | None, icpc_d: str | None, icd: str, icd_d: str,
                   onset: date, *, category: list[dict], label: str | None = None,
                   text: str | None = None, abatement: date | None = None,
                   recorder: Staff | None = None) -> str:
        coding = []
        if icpc:
            coding.append({"system": C.ICPC2_SYSTEM, "code": icpc, "display": icpc_d})
        coding.append({"system": C.ICD10_SYSTEM, "code": icd, "display": icd_d})
        res: dict = {
            "resourceType": "Condition", "id": self._id("cond"),
            "clinicalStatus": {"coding": [{"system": C.COND_CLINICAL,
                                           "code": "resolved" if abatement else "active"}]},
            "verificationStatus": {"coding": [{"system": C.COND_VERIFICATION,
                                               "code": "confirmed"}]},
            "category": category,
            "code": {"coding": coding, "text": text or icd_d},
            "subject": self.p.ref,
            "onsetDateTime": onset.isoformat(),
        }
        if abatement:
            res["abatementDateTime"] = abatement.isoformat()
        res["recordedDate"] = onset.isoformat()
        res["recorder"] = (recorder or self.plan.gp).ref
        self._add(res, label)
        self.cond_ids[key] = res["id"]
        return res["id"]

    def _conditions(self) -> None:
        plan = self.plan
        problem = [{"coding": [{"system": C.COND_CATEGORY, "code": "problem-list-item",
                                "display": "Problem List Item"}]}]
        for key in plan.dx:
            icpc, icpc_d, icd, icd_d, _, _ = C.DIAGNOSES[key]
            onset = plan.onset.get(key) or self._date_between(
                years_before(self.end, 15), self.end - timedelta(days=30))
            self._condition(key, icpc, icpc_d, icd, icd_d, onset, category=problem)
        psyk = self.m.by_kind["psykisk"][0]
        for key in plan.restricted:
            icpc, icpc_d, icd, icd_d, label, _ = C.RESTRICTED_DIAGNOSES[key]
            onset = self._date_between(max(self._adult_since(16), years_before(self.end, 10)),
                                       self.end - timedelta(days=60))
            self._condition(key, icpc, icpc_d, icd, icd_d, onset, category=problem, label=label,
                            recorder=self._staff(psyk, "psykolog"))
        for key in plan.critical:
            cat, icd, icd_d, text = C.CRITICAL_CONDITIONS[key]
            onset = self._date_between(years_before(self.end, 10), self.end - timedelta(days=30))
            self._condition(key, None, None, icd, icd_d, onset, text=text, category=[
                {"coding": [C.kritisk_coding(cat)]}] + problem)

    def _allergies(self) -> None:
        rng = self.rng
        for key in self.plan.allergies:
            cat, atc, display, reaction, crit = C.ALLERGIES[key]
            code: dict = {"text": display}
            if atc:
                code = {"coding": [{"system": C.ATC_SYSTEM, "code": atc, "display": display}],
                        "text": display}
            when = self._date_between(years_before(self.end, 20), self.end - timedelta(days=30))
            self._add({
                "resourceType": "AllergyIntolerance", "id": self._id("alg"),
                "clinicalStatus": {"coding": [{"system": C.ALLERGY_CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": C.ALLERGY_VERIFICATION,
                                                   "code": "confirmed"}]},
                "type": "allergy", "category": [cat], "criticality": crit,
                "code": code, "patient": self.p.ref,
                "recordedDate": dt(when, rng.randint(8, 15), rng.choice((0, 15, 30, 45))),
                "recorder": self.plan.gp.ref,
                "reaction": [{"manifestation": [{"text": reaction}],
                              "severity": "severe" if crit == "high" else "mild"}],
            })

    def _medications(self) -> None:
        rng = self.rng
        for drug, reason in self.plan.drugs:
            atc, display, dose = C.DRUGS[drug]
            label = C.RESTRICTED_DRUGS.get(drug)
            if reason and reason in self.cond_ids:
                onset_floor = self.plan.onset.get(reason)
            else:
                onset_floor = None
            start = self._date_between(onset_floor or years_before(self.end, 6),
                                       self.end - timedelta(days=14))
            if self.p.story and drug == "apixaban":
                start = self.plan.onset["atrieflimmer"] + timedelta(days=21)
            res: dict = {
                "resourceType": "MedicationStatement", "id": self._id("med"),
                "status": "completed" if self.p.deceased else "active",
                "category": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/medication-statement-category",
                    "code": "community", "display": "Community"}]},
                "medicationCodeableConcept": {
                    "coding": [{"system": C.ATC_SYSTEM, "code": atc, "display": display}],
                    "text": display},
                "subject": self.p.ref,
                "effectivePeriod": {"start": start.isoformat()},
                "dateAsserted": dt(self._date_between(start), rng.randint(8, 15), 0),
                "informationSource": self.plan.gp.ref,
            }
            if self.p.deceased:
                res["effectivePeriod"]["end"] = self.p.deceased.isoformat()
            if reason and reason in self.cond_ids:
                res["reasonReference"] = [{"reference": f"Condition/{self.cond_ids[reason]}"}]
            res["dosage"] = [{"text": dose}]
            self._add(res, label)

    def _services(self) -> None:
        rng, p = self.rng, self.p
        saksbehandlere = self.m.by_kind["tildeling"][0].members("saksbehandler")
        teams: dict[str, tuple[str, Staff]] = {}
        for svc in self.plan.services:
            u = svc.unit
            display = C.iplos()[svc.code]
            sb = saksbehandlere[0] if p.story else rng.choice(saksbehandlere)
            authored = max(svc.start - timedelta(days=rng.randint(3, 21)), p.birth)
            sr_id = self._id("sr")
            sr: dict = {
                "resourceType": "ServiceRequest", "id": sr_id,
                "identifier": [{"system": f"urn:fkj:{self.k.slug}:vedtak",
                                "value": f"V-{p.n}-{self.counter['sr']}"}],
                "status": svc.status, "intent": "order",
                "category": [{"text": "Vedtak om helse- og omsorgstjeneste"}],
                "code": {"coding": [C.iplos_coding(svc.code)], "text": display},
            }
            if svc.per_day:
                sr["quantityRatio"] = {
                    "numerator": {"value": svc.per_day, "unit": "besøk"},
                    "denominator": {"value": 1, "unit": "d", "system": C.UCUM_SYSTEM,
                                    "code": "d"}}
            sr["subject"] = p.ref
            period = {"start": svc.start.isoformat()}
            if svc.end:
                period["end"] = svc.end.isoformat()
            elif svc.code in ("19", "18", "20"):
                pass
            elif rng.random() < 0.3 and not p.story:  # time-limited decision, to be reviewed
                period["end"] = (self.today + timedelta(days=rng.randint(30, 365))).isoformat()
            sr["occurrencePeriod"] = period
            sr["authoredOn"] = dt(authored, rng.randint(8, 15), rng.choice((0, 15, 30, 45)))
            sr["requester"] = sb.role_ref("saksbehandler")
            sr["performer"] = [u.ref]
            if svc.note:
                sr["note"] = [{"text": svc.note}]
            self._add(sr, svc.label)

            # care team of the unit (one per patient and unit)
            if u.key not in teams:
                teams[u.key] = self._care_team(u, svc)
            ct_id, manager = teams[u.key]
            eoc: dict = {
                "resourceType": "EpisodeOfCare", "id": self._id("eoc"),
                "meta": {"profile": [C.OKT_PROFILE]},
            }
            if svc.hours_per_week:
                eoc["extension"] = [{"url": C.OKT_WEEKLY_EXT, "valueRatio": {
                    "numerator": {"value": svc.hours_per_week, "unit": "h",
                                  "system": C.UCUM_SYSTEM, "code": "h"},
                    "denominator": {"value": 1, "unit": "wk", "system": C.UCUM_SYSTEM,
                                    "code": "wk"}}}]
            eoc["status"] = "active" if svc.status == "active" else "finished"
            types = [{"coding": [C.iplos_coding(svc.code)]}]
            if svc.code in ("18", "19", "20"):
                types.append({"coding": [{"system": C.OKT_STAYTYPE_SYSTEM,
                                          "code": "korttidsopphold", "display": "Korttidsopphold"}]})
            elif svc.code in ("4", "17"):
                types.append({"coding": [{"system": C.OKT_STAYTYPE_SYSTEM, "code": "dagopphold",
                                          "display": "Dagopphold"}]})
            eoc["type"] = types
            eoc["patient"] = p.ref
            eoc["managingOrganization"] = u.ref
            ep = {"start": svc.start.isoformat()}
            if svc.end:
                ep["end"] = svc.end.isoformat()
            eoc["period"] = ep
            eoc["referralRequest"] = [{"reference": f"ServiceRequest/{sr['id']}"}]
            eoc["careManager"] = manager.ref
            eoc["team"] = [{"reference": f"CareTeam/{ct_id}"}]
            self._add(eoc, svc.label)
            self.eoc_by_unit.setdefault(u.key, []).append(eoc["id"])
            if svc.status == "active" and svc.code == "15":
                self._plan_home_visits(svc, eoc["id"], manager)

    def _care_team(self, u: Unit, svc: Service) -> tuple[str, Staff]:
        rng, p = self.rng, self.p
        if u.kind == "psykisk":
            roles = ("psykolog", "sykepleier")
        elif u.kind == "tildeling":
            roles = ("saksbehandler",)
        else:
            roles = ("sykepleier",)
        manager = u.members(roles[0])[0] if p.story else self._staff(u, *roles)
        members = [manager]
        others = [s for r in ("sykepleier", "helsefagarbeider", "ergoterapeut", "fysioterapeut",
                              "psykolog", "lege") for s in u.members(r) if s is not manager]
        if others:
            k = min(len(others), 2)
            members += others[:k] if p.story else rng.sample(others, k)
        participants = []
        for s in members:
            role = next(c for c, _ in s.roles if c != "leder")
            participants.append({"role": [{"coding": [{"system": C.ROLE_SYSTEM, "code": role,
                                                       "display": C.ROLES[role]}]}],
                                 "member": s.ref, "onBehalfOf": u.ref})
        gp = self.plan.gp
        participants.append({"role": [{"coding": [{"system": C.ROLE_SYSTEM, "code": "lege",
                                                   "display": "Lege"}]}],
                             "member": gp.ref, "onBehalfOf": gp.unit.ref})
        active = any(s.status == "active" for s in self.plan.services if s.unit is u)
        starts = [s.start for s in self.plan.services if s.unit is u]
        period = {"start": min(starts).isoformat()}
        if not active:
            period["end"] = max(s.end or self.end for s in self.plan.services
                                if s.unit is u).isoformat()
        ct = {
            "resourceType": "CareTeam", "id": f"{self.k.slug}-p{p.n}-ct-{u.key}",
            "status": "active" if active else "inactive",
            "category": [{"text": "Tjenesteteam (tjenstlig behov)"}],
            "name": f"{u.name} - team for {p.name['text']}",
            "subject": p.ref, "period": period,
            "participant": participants,
            "managingOrganization": [u.ref],
        }
        self._add(ct, svc.label)
        return ct["id"], manager

    def _plan_home_visits(self, svc: Service, eoc_id: str, manager: Staff) -> None:
        rng = self.rng
        count = 8 if self.p.story else rng.randint(2, 5)
        for _ in range(count):
            when = self._date_between(max(svc.start, self.end - timedelta(days=60)))
            staff = manager if rng.random() < 0.5 else self._staff(
                svc.unit, "sykepleier", "helsefagarbeider", *(("psykolog",)
                                                               if svc.unit.kind == "psykisk" else ()))
            self.home_visits.append((eoc_id, when, staff, svc.label))

    def _consents(self) -> None:
        p, plan, rng = self.p, self.plan, self.rng
        if plan.hlr:
            langtid = [s for s in plan.services if s.code == "21" and s.status == "active"]
            decider = langtid[0].unit.members("lege")[0] if langtid else plan.gp
            self._add({
                "resourceType": "Consent", "id": self._id("hlr"),
                "meta": {"tag": [{"system": C.CONSENT_KIND_SYSTEM, "code": "hlr-minus",
                                  "display": "HLR-minus"}]},
                "text": {"status": "generated",
                         "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>HLR-minus</p></div>'},
                "status": "inactive" if p.deceased else "active",
                "scope": {"coding": [{"system": C.CONSENTSCOPE, "code": "treatment",
                                      "display": "Treatment"}]},
                "category": [{"coding": [C.kritisk_coding("11")]}],
                "patient": p.ref,
                "dateTime": dt(plan.hlr, rng.randint(9, 15), 0),
                "performer": [decider.ref],
                "organization": [decider.unit.ref],
                "policyRule": {"text": "Beslutningsprosesser ved begrensning av livsforlengende "
                                       "behandling (Helsedirektoratet IS-2091)"},
                "provision": {"type": "deny", "period": {"start": plan.hlr.isoformat()},
                              "code": [{"text": "HLR-minus"}]},
            })
        if plan.sperring:
            kind, target = plan.sperring
            when = self._date_between(years_before(self.end, 2), self.end - timedelta(days=10))
            provision: dict = {"type": "deny", "period": {"start": when.isoformat()}}
            if kind == "unit":
                provision["actor"] = [{"role": {"coding": [{
                    "system": C.PARTICIPATIONTYPE, "code": "IRCP",
                    "display": "information recipient"}]}, "reference": target.ref}]
                text = f"Sperring: {target.name} skal ikke ha tilgang til mine opplysninger"
            else:
                provision["securityLabel"] = [C.SEC_PSY if target == "PSY" else C.SEC_SUD]
                text = ("Sperring: opplysninger om psykisk helse" if target == "PSY"
                        else "Sperring: opplysninger om rusbehandling") + \
                    " skal ikke deles med andre enheter"
            self._add({
                "resourceType": "Consent", "id": self._id("sperring"),
                "meta": {"tag": [{"system": C.CONSENT_KIND_SYSTEM, "code": "sperring",
                                  "display": "Sperring"}]},
                "text": {"status": "generated",
                         "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>'},
                "status": "active",
                "scope": {"coding": [{"system": C.CONSENTSCOPE, "code": "patient-privacy",
                                      "display": "Privacy Consent"}]},
                "category": [{"coding": [
                    {"system": C.INNSYN_SYSTEM, "code": "NORS", "display": "Sperret"},
                    {"system": C.LOINC_SYSTEM, "code": "59284-0", "display": "Patient Consent"}]}],
                "patient": p.ref,
                "dateTime": dt(when, rng.randint(9, 15), 0),
                "performer": [p.ref],
                "organization": [{"reference": f"Organization/{self.m.org_id}"}],
                "policyRule": {"coding": [{"system": C.ACTCODE, "code": "OPTOUT",
                                           "display": "opt-out"}]},
                "provision": provision,
            })

    def _flags(self) -> None:
        for text in self.plan.flags:
            start = self._date_between(years_before(self.end, 3), self.end - timedelta(days=7))
            self._add({
                "resourceType": "Flag", "id": self._id("flag"),
                "status": "active",
                "category": [{"coding": [C.kritisk_coding("9")]},
                             {"coding": [{"system": C.FLAG_CATEGORY, "code": "clinical",
                                          "display": "Clinical"}]}],
                "code": {"text": text}, "subject": self.p.ref,
                "period": {"start": start.isoformat()}, "author": self.plan.gp.ref,
            })

    def _devices(self) -> None:
        rng = self.rng
        for key in self.plan.devices:
            start = self._date_between(years_before(self.end, 4), self.end - timedelta(days=14))
            if key == "pacemaker":
                self._procedure("pacemaker", start, self.plan.gp, status="completed")
            dev_id = self._id("dev")
            self._add({
                "resourceType": "Device", "id": dev_id,
                "status": "active",
                "deviceName": [{"name": C.DEVICES[key], "type": "user-friendly-name"}],
                "type": {"coding": [{"system": C.DEVICE_SYSTEM, "code": key,
                                     "display": C.DEVICES[key]}], "text": C.DEVICES[key]},
                "patient": self.p.ref,
            })
            self._add({
                "resourceType": "DeviceUseStatement", "id": self._id("dus"),
                "status": "completed" if self.p.deceased else "active",
                "subject": self.p.ref,
                "timingPeriod": {"start": start.isoformat()},
                "recordedOn": dt(start, rng.randint(9, 15), 0),
                "device": {"reference": f"Device/{dev_id}", "display": C.DEVICES[key]},
            })

    def _procedure(self, key: str, when: date, performer: Staff, *, status: str,
                   encounter: str | None = None, label: str | None = None,
                   critical: bool = False) -> None:
        res: dict = {"resourceType": "Procedure", "id": self._id("proc"), "status": status}
        if critical:
            res["category"] = {"coding": [C.kritisk_coding("6")]}
        res["code"] = {"coding": [{"system": C.PROCEDURE_SYSTEM, "code": key,
                                   "display": C.PROCEDURES[key]}], "text": C.PROCEDURES[key]}
        res["subject"] = self.p.ref
        if encounter:
            res["encounter"] = {"reference": f"Encounter/{encounter}"}
        if status == "in-progress":
            res["performedPeriod"] = {"start": when.isoformat()}
        else:
            res["performedDateTime"] = dt(when, self.rng.randint(8, 20), self.rng.choice((0, 30)))
        res["performer"] = [{"actor": performer.ref, "onBehalfOf": performer.unit.ref}]
        self._add(res, label)

    def _encounter(self, cls: str, cls_display: str, type_text: str, unit: Unit, staff: Staff,
                   when: date, *, minutes: int, hour: int | None = None,
                   reason: str | None = None, eoc: str | None = None,
                   label: str | None = None, location: bool = True,
                   status: str = "finished") -> str:
        rng = self.rng
        h = hour if hour is not None else rng.randint(8, 20)
        mi = rng.choice((0, 10, 20, 30, 40, 50))
        start = dt(when, h, mi)
        end_min = h * 60 + mi + minutes
        end_day = when + timedelta(days=end_min // 1440)
        end = dt(end_day, (end_min % 1440) // 60, end_min % 60)
        res: dict = {
            "resourceType": "Encounter", "id": self._id("enc"), "status": status,
            "class": {"system": C.ACTCODE, "code": cls, "display": cls_display},
            "type": [{"text": type_text}], "subject": self.p.ref,
        }
        if eoc:
            res["episodeOfCare"] = [{"reference": f"EpisodeOfCare/{eoc}"}]
        res["participant"] = [{"type": [{"coding": [{
            "system": C.PARTICIPATIONTYPE, "code": "ATND", "display": "attender"}]}],
            "individual": staff.ref}]
        res["period"] = {"start": start} if status == "in-progress" else {"start": start,
                                                                          "end": end}
        if reason:
            ref = {"reference": f"Condition/{reason}"}
            res["reasonReference"] = [ref]
            res["diagnosis"] = [{"condition": ref, "rank": 1}]
        if location:
            res["location"] = [{"location": unit.loc_ref}]
        res["serviceProvider"] = unit.ref
        self._add(res, label)
        return res["id"]

    def _encounters(self) -> None:
        rng, plan, p = self.rng, self.plan, self.p
        self.legevakt_visits: list[tuple[str, date, str]] = []
        lv = self.m.by_kind["legevakt"][0]
        encounter_dx = [{"coding": [{"system": C.COND_CATEGORY, "code": "encounter-diagnosis",
                                     "display": "Encounter Diagnosis"}]}]
        for i, key in enumerate(plan.legevakt):
            icpc, icpc_d, icd, icd_d = C.ACUTE[key]
            if p.story:
                when = self.today - timedelta(days=75)
            else:
                when = self._date_between(self.window, self.end - timedelta(days=3))
            doctor = lv.members("lege")[0] if p.story else self._staff(lv, "lege")
            cond = self._condition(f"acute-{i}", icpc, icpc_d, icd, icd_d, when,
                                   category=encounter_dx,
                                   abatement=min(when + timedelta(days=14), self.end),
                                   recorder=doctor)
            enc = self._encounter("EMER", "emergency", "Legevaktkonsultasjon", lv, doctor, when,
                                  minutes=rng.choice((20, 30, 45, 60)), reason=cond,
                                  hour=rng.choice((2, 9, 16, 19, 21, 23)))
            self.legevakt_visits.append((enc, when, key))
        # home visits (home nursing / psychiatric home follow-up)
        proc_keys = ("saarstell", "kateterskift", "b12", "blodprove", "legemiddel", "kompresjon")
        for j, (eoc, when, staff, label) in enumerate(sorted(self.home_visits,
                                                              key=lambda v: (v[1], v[0]))):
            u = staff.unit
            text = "Hjemmebesøk - psykisk helse og rus" if u.kind == "psykisk" else \
                "Hjemmebesøk - helsetjenester i hjemmet"
            enc = self._encounter("HH", "home health", text, u, staff, when,
                                  minutes=rng.choice((15, 20, 30, 45)), eoc=eoc, label=label,
                                  location=False, hour=rng.choice((8, 9, 13, 19, 21)))
            if u.kind != "psykisk" and (rng.random() < 0.35 or (p.story and j < 2)):
                key = "legemiddel" if p.story else rng.choice(proc_keys)
                self._procedure(key, when, staff, status="completed", encounter=enc)
        # institution stays
        for svc in plan.services:
            if svc.code in ("21", "19"):
                staff = self._staff(svc.unit, "sykepleier")
                days = ((svc.end or self.end) - svc.start).days
                self._encounter("IMP", "inpatient encounter",
                                "Langtidsopphold" if svc.code == "21" else "Korttidsopphold",
                                svc.unit, staff, svc.start, minutes=max(days, 1) * 1440,
                                hour=11, eoc=self.eoc_by_unit[svc.unit.key][-1],
                                status="in-progress" if svc.status == "active" else "finished")
        # GP consultations
        reasons = [self.cond_ids[k] for k in plan.dx if k in self.cond_ids]
        for _ in range(plan.gp_visits):
            when = self._date_between(self.window, self.end - timedelta(days=1))
            self._encounter("AMB", "ambulatory", "Konsultasjon hos fastlege", plan.gp.unit,
                            plan.gp, when, minutes=20, hour=rng.randint(8, 15),
                            reason=rng.choice(reasons) if reasons else None)
        # psychiatric / substance abuse follow-up
        if plan.restricted:
            psyk = self.m.by_kind["psykisk"][0]
            for key in plan.restricted:
                label = C.RESTRICTED_DIAGNOSES[key][4]
                for _ in range(rng.randint(2, 4)):
                    when = self._date_between(self.window, self.end - timedelta(days=1))
                    self._encounter("AMB", "ambulatory",
                                    "Samtale - psykisk helse og rus", psyk,
                                    self._staff(psyk, "psykolog", "sykepleier"), when,
                                    minutes=45, hour=rng.randint(8, 15),
                                    reason=self.cond_ids[key], label=label)
        if plan.dialysis:
            start = self._date_between(years_before(self.end, 2), self.end - timedelta(days=30))
            self._procedure("dialyse", start, plan.gp, status="in-progress", critical=True)

    # ------------------------------------------------------------------ observations
    def _obs(self, category: str, code: str, display: str, when: date, *,
             value: float | None = None, unit: str | None = None, ucum: str | None = None,
             low: float | None = None, high: float | None = None,
             components: list[dict] | None = None, encounter: str | None = None,
             performer: dict | None = None, hour: int | None = None) -> None:
        rng = self.rng
        cat_display = {"laboratory": "Laboratory", "vital-signs": "Vital Signs",
                       "survey": "Survey"}[category]
        res: dict = {
            "resourceType": "Observation", "id": self._id("obs"), "status": "final",
            "category": [{"coding": [{"system": C.OBS_CATEGORY, "code": category,
                                      "display": cat_display}]}],
            "code": {"coding": [{"system": C.LOINC_SYSTEM, "code": code, "display": display}],
                     "text": display},
            "subject": self.p.ref,
        }
        if encounter:
            res["encounter"] = {"reference": f"Encounter/{encounter}"}
        res["effectiveDateTime"] = dt(when, hour if hour is not None else rng.randint(7, 15),
                                      rng.choice((0, 10, 20, 30, 40, 50)))
        res["performer"] = [performer or self.plan.gp.unit.ref]
        if value is not None:
            res["valueQuantity"] = {"value": value, "unit": unit, "system": C.UCUM_SYSTEM,
                                    "code": ucum}
        if low is not None or high is not None:
            rr: dict = {}
            if low is not None:
                rr["low"] = {"value": low, "unit": unit, "system": C.UCUM_SYSTEM, "code": ucum}
            if high is not None:
                rr["high"] = {"value": high, "unit": unit, "system": C.UCUM_SYSTEM, "code": ucum}
            res["referenceRange"] = [rr]
        if components:
            res["component"] = components
        self._add(res)

    def _lab(self, key: str, when: date, value: float, **kw) -> None:
        code, display, unit, ucum, low, high = C.LABS[key]
        self._obs("laboratory", code, display, when, value=value, unit=unit, ucum=ucum, low=low,
                  high=high, **kw)

    def _vital(self, key: str, when: date, value: float, **kw) -> None:
        code, display, unit, ucum = C.VITALS[key]
        self._obs("vital-signs", code, display, when, value=value, unit=unit, ucum=ucum, **kw)

    def _dates(self, every_days: int, jitter: int = 20, start: date | None = None) -> list[date]:
        """Roughly periodic dates from *start* (default: 3 years back) to the end."""
        out = []
        d = max(start or self.window, self.window, self.p.birth) + \
            timedelta(days=self.rng.randint(0, every_days))
        while d < self.end:
            out.append(d)
            d += timedelta(days=every_days + self.rng.randint(-jitter, jitter))
        return out

    def _observations(self) -> None:
        rng, plan, p = self.rng, self.plan, self.p
        dx = set(plan.dx)
        old = self.age >= 67
        drugs = {d for d, _ in plan.drugs}
        ckd = "nyresvikt" in dx
        ckd_onset = plan.onset.get("nyresvikt")
        # kidney function
        if ckd or (self.age >= 40 and (dx or plan.restricted)):
            for when in self._dates(120 if ckd else 330, 25):
                sick = ckd and (ckd_onset is None or when >= ckd_onset - timedelta(days=60))
                krea = rng.uniform(125, 175) if sick else rng.uniform(60, 100) + \
                    (12 if old else 0)
                krea = round(krea)
                base = 140 if p.sex == "male" else 125
                egfr = max(8, min(110, round(base * (70 / krea) ** 1.1 - 0.6 * self.age)))
                if sick:
                    egfr = max(22, min(egfr, 58))
                self._lab("kreatinin", when, krea)
                self._lab("egfr", when, egfr)
        if "diabetes2" in dx:
            for when in self._dates(182, 30):
                self._lab("hba1c", when, round(rng.uniform(46, 72)))
        if "warfarin" in drugs:
            for when in self._dates(49, 10):
                self._lab("inr", when, round(rng.uniform(1.7, 3.4), 1))
        if self.age >= 18 and (dx or old):
            for when in self._dates(400, 60):
                lo = 10.8 if old else 11.8
                self._lab("hb", when, round(rng.uniform(lo, 15.8 if p.sex == "male" else 14.6), 1))
        # legevakt: CRP, temperature, SpO2
        for enc, when, key in self.legevakt_visits:
            lv = self.m.by_kind["legevakt"][0].ref
            infection = key in ("uvi", "pneumoni", "bronkitt", "gastroenteritt")
            crp = round(rng.uniform(40, 180)) if key == "pneumoni" else \
                round(rng.uniform(8, 60)) if infection else round(rng.uniform(1, 9))
            self._lab("crp", when, crp, encounter=enc, performer=lv, hour=22)
            self._vital("temp", when, round(rng.uniform(37.8, 39.6) if infection
                                            else rng.uniform(36.4, 37.3), 1),
                        encounter=enc, performer=lv, hour=22)
            self._vital("spo2", when, rng.randint(88, 94) if key == "pneumoni"
                        else rng.randint(94, 99), encounter=enc, performer=lv, hour=22)
        # vital signs in home care / institution
        in_care = any(s.code in ("15", "21") and s.unit.kind != "psykisk"
                      for s in plan.services if s.status == "active")
        if in_care or "hypertensjon" in dx or "hjertesvikt" in dx:
            unit = plan.zone.ref
            for when in self._dates(150, 40):
                sys_ = rng.randint(118, 168)
                comps = [
                    {"code": {"coding": [{"system": C.LOINC_SYSTEM, "code": c,
                                          "display": C.VITALS[k][1]}]},
                     "valueQuantity": {"value": v, "unit": "mmHg", "system": C.UCUM_SYSTEM,
                                       "code": "mm[Hg]"}}
                    for k, c, v in (("systolisk", "8480-6", sys_),
                                    ("diastolisk", "8462-4", rng.randint(62, min(98, sys_ - 30))))]
                self._obs("vital-signs", C.BP_PANEL[0], C.BP_PANEL[1], when, components=comps,
                          performer=unit)
                irregular = "atrieflimmer" in dx
                self._vital("puls", when, rng.randint(58, 110 if irregular else 88),
                            performer=unit)
                if in_care:
                    base_w = 78 if p.sex == "male" else 64
                    self._vital("vekt", when, round(base_w + rng.uniform(-12, 14), 1),
                                performer=unit)
        if "kols" in dx:
            for when in self._dates(240, 40):
                self._vital("spo2", when, rng.randint(89, 96))
        # assessments
        if old and (in_care or plan.devices):
            for when in self._dates(365, 60, start=years_before(self.end, 2)):
                score = rng.choice((25, 35, 45, 55, 65, 75)) if self.age >= 80 else \
                    rng.choice((15, 25, 35, 45))
                self._obs("survey", C.FALL_RISK[0], C.FALL_RISK[1], when, value=score,
                          unit="{score}", ucum="{score}", performer=plan.zone.ref)
        if "demens" in dx:
            for when in self._dates(365, 60):
                self._obs("survey", C.MMSE[0], C.MMSE[1], when, value=rng.randint(12, 24),
                          unit="{score}", ucum="{score}")
