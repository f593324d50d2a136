"""Code systems and the small clinical catalogue used by the synthetic-population generator.

Copied Norwegian code lists (IPLOS 9151, kritisk informasjon 7650, tjenestetyper 8663) are
read from ``src/fkj/data/seed`` (origin in its README). The clinical catalogue below
(diagnoses, drugs, labs, devices ...) is compiled by the FKJ project for synthetic data:
well-known ICPC-2 / ICD-10 / ATC / LOINC codes with short Norwegian display texts. It is not
a terminology source; displays are ours and may differ from the official wording.
"""

from __future__ import annotations

import csv
import io
from functools import cache
from importlib import resources as _res

# --------------------------------------------------------------------------- systems
ROLE_SYSTEM = "http://fkj.no/fhir/CodeSystem/rolle"
CONSENT_KIND_SYSTEM = "http://fkj.no/fhir/CodeSystem/consent-kind"
PROCEDURE_SYSTEM = "http://fkj.no/fhir/CodeSystem/prosedyre"
DEVICE_SYSTEM = "http://fkj.no/fhir/CodeSystem/hjelpemiddel"
IPLOS_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9151"
KRITISK_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7650"
TJENESTETYPE_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.8663"
INNSYN_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9603"
ICPC2_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7170"
ICD10_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7110"
ATC_SYSTEM = "http://www.whocc.no/atc"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
MUNICIPALITY_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
MUNICIPALITY_CODE_SYSTEM = "https://register.geonorge.no/sosi-kodelister/kommunenummer"
ADDRESS_OFFICIAL_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-address-official"
OKT_PROFILE = "http://hl7.no/fhir/ig/okt/StructureDefinition/OktEpisodeOfCare"
OKT_WEEKLY_EXT = "http://hl7.no/fhir/ig/okt/StructureDefinition/WeeklyExtentRatio"
OKT_STAYTYPE_SYSTEM = "http://hl7.no/fhir/ig/okt/CodeSystem/OktStayTypeCs"
ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ROLECODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PARTICIPATIONTYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CONSENTSCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
CONTACT_ROLE = "http://terminology.hl7.org/CodeSystem/v2-0131"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"

ROLES: dict[str, str] = {
    "lege": "Lege",
    "sykepleier": "Sykepleier",
    "helsefagarbeider": "Helsefagarbeider",
    "fysioterapeut": "Fysioterapeut",
    "ergoterapeut": "Ergoterapeut",
    "psykolog": "Psykolog",
    "saksbehandler": "Saksbehandler",
    "leder": "Leder",
}

SEC_PSY = {"system": ACTCODE, "code": "PSY", "display": "psychiatry information sensitivity"}
SEC_SUD = {"system": ACTCODE, "code": "SUD",
           "display": "substance use disorder information sensitivity"}
SEC_RESTRICTED = {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}


# --------------------------------------------------------------------------- copied lists
def _rows(name: str) -> list[dict[str, str]]:
    text = _res.files("fkj").joinpath("data", "seed", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@cache
def iplos() -> dict[str, str]:
    """Volven 9151 code -> display."""
    return {r["code"]: r["display"] for r in _rows("iplos-9151.csv")}


@cache
def kritisk() -> dict[str, str]:
    """Volven 7650 code -> display."""
    return {r["code"]: r["display"] for r in _rows("kritisk-info-7650.csv")}


@cache
def tjenestetyper() -> dict[str, str]:
    """Volven 8663 (subset) code -> display."""
    return {r["code"]: r["display"] for r in _rows("tjenestetyper-8663.csv")}


def iplos_coding(code: str) -> dict:
    return {"system": IPLOS_SYSTEM, "code": code, "display": iplos()[code]}


def kritisk_coding(code: str) -> dict:
    return {"system": KRITISK_SYSTEM, "code": code, "display": kritisk()[code]}


# --------------------------------------------------------------------------- diagnoses
# key: (icpc2, icpc2 display, icd10, icd10 display,
#       prevalence by age band (0-17, 18-39, 40-66, 67-79, 80+), drug keys)
AGE_BANDS = ("child", "young", "adult", "old", "oldest")

DIAGNOSES: dict[str, tuple] = {
    "hypertensjon": ("K86", "Hypertensjon ukomplisert", "I10", "Essensiell (primær) hypertensjon",
                     (0.0, 0.03, 0.20, 0.45, 0.55), ("amlodipin", "ramipril", "losartan")),
    "diabetes2": ("T90", "Diabetes type 2", "E11.9", "Diabetes mellitus type 2 uten komplikasjoner",
                  (0.0, 0.01, 0.10, 0.18, 0.18), ("metformin",)),
    "kols": ("R95", "Kronisk obstruktiv lungesykdom", "J44.9",
             "Kronisk obstruktiv lungesykdom, uspesifisert",
             (0.0, 0.0, 0.05, 0.12, 0.12), ("tiotropium", "salbutamol")),
    "demens": ("P70", "Demens", "F03", "Uspesifisert demens",
               (0.0, 0.0, 0.005, 0.08, 0.30), ("donepezil",)),
    "hjertesvikt": ("K77", "Hjertesvikt", "I50.9", "Uspesifisert hjertesvikt",
                    (0.0, 0.0, 0.01, 0.08, 0.18), ("furosemid", "bisoprolol")),
    "atrieflimmer": ("K78", "Atrieflimmer/flutter", "I48.9",
                     "Uspesifisert atrieflimmer og atrieflutter",
                     (0.0, 0.0, 0.02, 0.12, 0.22), ("metoprolol",)),
    "nyresvikt": ("U99", "Urinveissykdom IKA (kronisk nyresykdom)", "N18.3",
                  "Kronisk nyresykdom, stadium 3", (0.0, 0.0, 0.02, 0.10, 0.25), ()),
    "hjerneslag": ("K90", "Hjerneslag", "I69.4", "Følgetilstander etter hjerneslag",
                   (0.0, 0.0, 0.01, 0.05, 0.10), ("acetylsalisylsyre", "atorvastatin")),
    "angina": ("K74", "Iskemisk hjertesykdom med angina", "I20.9", "Uspesifisert angina pectoris",
               (0.0, 0.0, 0.03, 0.10, 0.15), ("acetylsalisylsyre", "atorvastatin")),
    "artrose": ("L91", "Artrose IKA", "M19.9", "Uspesifisert artrose",
                (0.0, 0.01, 0.10, 0.30, 0.40), ("paracetamol",)),
    "osteoporose": ("L95", "Osteoporose", "M81.9", "Uspesifisert osteoporose",
                    (0.0, 0.0, 0.03, 0.10, 0.20), ("alendronsyre",)),
    "parkinson": ("N87", "Parkinsonisme", "G20", "Parkinsons sykdom",
                  (0.0, 0.0, 0.005, 0.02, 0.03), ("levodopa",)),
    "hypotyreose": ("T86", "Hypotyreose/myksødem", "E03.9", "Uspesifisert hypotyreose",
                    (0.0, 0.02, 0.05, 0.08, 0.10), ("levotyroksin",)),
    "astma": ("R96", "Astma", "J45.9", "Uspesifisert astma",
              (0.08, 0.08, 0.06, 0.05, 0.04), ("salbutamol",)),
    "epilepsi": ("N88", "Epilepsi", "G40.9", "Uspesifisert epilepsi",
                 (0.01, 0.01, 0.01, 0.01, 0.01), ("levetiracetam",)),
    "utviklingshemming": ("P85", "Psykisk utviklingshemming", "F79",
                          "Uspesifisert psykisk utviklingshemning",
                          (0.03, 0.02, 0.01, 0.0, 0.0), ()),
}

# restricted (PSY / SUD) diagnoses: key -> (icpc, display, icd, display, label, drug keys)
RESTRICTED_DIAGNOSES: dict[str, tuple] = {
    "depresjon": ("P76", "Depresjon", "F32.9", "Uspesifisert depressiv episode", "PSY",
                  ("sertralin",)),
    "angst": ("P74", "Angstlidelse", "F41.1", "Generalisert angstlidelse", "PSY",
              ("escitalopram",)),
    "schizofreni": ("P72", "Schizofreni", "F20.9", "Uspesifisert schizofreni", "PSY",
                    ("olanzapin",)),
    "bipolar": ("P73", "Affektiv psykose", "F31.9", "Uspesifisert bipolar affektiv lidelse", "PSY",
                ("litium",)),
    "alkohol": ("P15", "Kronisk alkoholmisbruk", "F10.2",
                ("Psykiske lidelser og atferdsforstyrrelser som skyldes bruk av alkohol, "
                "avhengighetssyndrom"), "SUD", ()),
    "opioider": ("P19", "Medikamentmisbruk", "F11.2",
                 ("Psykiske lidelser og atferdsforstyrrelser som skyldes bruk av opioider, "
                 "avhengighetssyndrom"), "SUD", ("buprenorfin",)),
}

# acute problems seen at the legevakt: key -> (icpc, display, icd, display)
ACUTE: dict[str, tuple] = {
    "uvi": ("U71", "Cystitt/urinveisinfeksjon IKA", "N39.0",
            "Urinveisinfeksjon med uspesifisert lokalisasjon"),
    "pneumoni": ("R81", "Lungebetennelse", "J18.9", "Uspesifisert pneumoni"),
    "gastroenteritt": ("D73", "Gastroenteritt antatt infeksiøs", "A09",
                       "Diaré og gastroenteritt av antatt infeksiøs årsak"),
    "bronkitt": ("R78", "Akutt bronkitt/bronkiolitt", "J20.9", "Uspesifisert akutt bronkitt"),
    "hoftebrudd": ("L75", "Brudd lårben", "S72.0", "Lårhalsbrudd"),
}

# critical information conditions: key -> (7650 category, icd10, display, text)
CRITICAL_CONDITIONS: dict[str, tuple] = {
    "binyrebarksvikt": ("5", "E27.1", "Primær binyrebarksvikt",
                        "Binyrebarksvikt - trenger stressdose kortison ved akutt sykdom"),
    "myasteni": ("5", "G70.0", "Myasthenia gravis", "Myasthenia gravis"),
    "hemofili": ("5", "D66", "Arvelig faktor VIII-mangel", "Hemofili A"),
    "malign_hypertermi": ("4", "T88.3", "Malign hypertermi forårsaket av anestesi",
                          "Malign hypertermi ved anestesi"),
    "vanskelig_intubasjon": ("3", "T88.4", "Mislykket eller vanskelig intubasjon",
                             "Kjent vanskelig intubasjon"),
    "mrsa": ("10", "Z22.3", "Bærer av andre spesifiserte bakterielle sykdommer", "MRSA-bærer"),
    "hepatitt_c": ("10", "B18.2", "Kronisk virushepatitt C", "Kronisk hepatitt C"),
}

# --------------------------------------------------------------------------- drugs
# key -> (ATC, display, dosage text)
DRUGS: dict[str, tuple[str, str, str]] = {
    "apixaban": ("B01AF02", "Apixaban", "2,5 mg x 2 (dosereduksjon: alder og nyrefunksjon)"),
    "apixaban5": ("B01AF02", "Apixaban", "5 mg x 2"),
    "warfarin": ("B01AA03", "Warfarin", "Etter INR-skjema"),
    "rivaroksaban": ("B01AF01", "Rivaroksaban", "20 mg x 1 til kveldsmat"),
    "acetylsalisylsyre": ("B01AC06", "Acetylsalisylsyre", "75 mg x 1"),
    "metformin": ("A10BA02", "Metformin", "500 mg x 2"),
    "insulin_glargin": ("A10AE04", "Insulin glargin", "20 E s.c. kl. 22"),
    "amlodipin": ("C08CA01", "Amlodipin", "5 mg x 1"),
    "ramipril": ("C09AA05", "Ramipril", "5 mg x 1"),
    "losartan": ("C09CA01", "Losartan", "50 mg x 1"),
    "furosemid": ("C03CA01", "Furosemid", "40 mg x 1 morgen"),
    "bisoprolol": ("C07AB07", "Bisoprolol", "2,5 mg x 1"),
    "metoprolol": ("C07AB02", "Metoprolol", "50 mg x 1"),
    "atorvastatin": ("C10AA05", "Atorvastatin", "20 mg x 1 kveld"),
    "donepezil": ("N06DA02", "Donepezil", "5 mg x 1 kveld"),
    "tiotropium": ("R03BB04", "Tiotropiumbromid", "2 inhalasjoner x 1"),
    "salbutamol": ("R03AC02", "Salbutamol", "1-2 inhalasjoner ved behov"),
    "levotyroksin": ("H03AA01", "Levotyroksinnatrium", "50 mikrogram x 1 morgen"),
    "paracetamol": ("N02BE01", "Paracetamol", "1 g inntil x 3 ved behov"),
    "alendronsyre": ("M05BA04", "Alendronsyre", "70 mg x 1 per uke"),
    "levodopa": ("N04BA02", "Levodopa og dekarboksylasehemmer", "125 mg x 4"),
    "levetiracetam": ("N03AX14", "Levetiracetam", "500 mg x 2"),
    "sertralin": ("N06AB06", "Sertralin", "50 mg x 1"),
    "escitalopram": ("N06AB10", "Escitalopram", "10 mg x 1"),
    "olanzapin": ("N05AH03", "Olanzapin", "10 mg x 1 kveld"),
    "litium": ("N05AN01", "Litium", "Etter serumkonsentrasjon"),
    "buprenorfin": ("N07BC01", "Buprenorfin (LAR)", "8 mg x 1 sublingualt, utleveres av LAR"),
    "zopiklon": ("N05CF01", "Zopiklon", "3,75 mg ved behov"),
}

# drugs that are restricted-labelled because they reveal a PSY/SUD condition
RESTRICTED_DRUGS = {"sertralin": "PSY", "escitalopram": "PSY", "olanzapin": "PSY",
                    "litium": "PSY", "buprenorfin": "SUD"}

# --------------------------------------------------------------------------- allergies
# key -> (category, ATC or None, display, reaction, criticality)
ALLERGIES: dict[str, tuple] = {
    "penicillin": ("medication", "J01CE02", "Fenoksymetylpenicillin", "Urtikaria", "low"),
    "penicillin_anafylaksi": ("medication", "J01CE02", "Fenoksymetylpenicillin",
                              "Anafylaktisk reaksjon", "high"),
    "sulfa": ("medication", "J01EE01", "Sulfametoksazol og trimetoprim", "Utslett", "low"),
    "nsaid": ("medication", "M01AE01", "Ibuprofen", "Angioødem", "high"),
    "kodein": ("medication", "R05DA04", "Kodein", "Kvalme og oppkast", "low"),
    "jodkontrast": ("medication", "V08AB", "Jodholdige kontrastmidler", "Urtikaria", "high"),
    "latex": ("environment", None, "Lateks", "Kontakteksem", "low"),
    "notter": ("food", None, "Peanøtter", "Anafylaktisk reaksjon", "high"),
    "veps": ("environment", None, "Vepsestikk", "Anafylaktisk reaksjon", "high"),
}

# --------------------------------------------------------------------------- labs (LOINC, UCUM)
# key -> (loinc, display, unit, ucum code, reference low, reference high)
LABS: dict[str, tuple] = {
    "hba1c": ("59261-8", "HbA1c (IFCC)", "mmol/mol", "mmol/mol", None, 42.0),
    "kreatinin": ("14682-9", "Kreatinin i serum", "µmol/L", "umol/L", 60.0, 105.0),
    "egfr": ("62238-1", "eGFR (CKD-EPI)", "mL/min/1,73m²", "mL/min/{1.73_m2}", 60.0, None),
    "inr": ("6301-6", "INR", "INR", "{INR}", 0.8, 1.2),
    "hb": ("718-7", "Hemoglobin", "g/dL", "g/dL", 11.7, 17.0),
    "crp": ("1988-5", "CRP", "mg/L", "mg/L", None, 5.0),
}
VITALS: dict[str, tuple] = {
    "systolisk": ("8480-6", "Systolisk blodtrykk", "mmHg", "mm[Hg]"),
    "diastolisk": ("8462-4", "Diastolisk blodtrykk", "mmHg", "mm[Hg]"),
    "puls": ("8867-4", "Puls", "/min", "/min"),
    "vekt": ("29463-7", "Kroppsvekt", "kg", "kg"),
    "temp": ("8310-5", "Kroppstemperatur", "°C", "Cel"),
    "spo2": ("59408-5", "Oksygenmetning (pulsoksymetri)", "%", "%"),
}
BP_PANEL = ("85354-9", "Blodtrykk")
FALL_RISK = ("59460-6", "Fallrisiko (Morse Fall Scale), totalskår")
MMSE = ("72106-8", "MMSE totalskår")

# --------------------------------------------------------------------------- procedures, devices
PROCEDURES: dict[str, str] = {
    "saarstell": "Sårstell",
    "kateterskift": "Skifte av permanent urinkateter",
    "b12": "Injeksjon av vitamin B12",
    "blodprove": "Blodprøvetaking i hjemmet",
    "legemiddel": "Legemiddelhåndtering og -administrasjon",
    "kompresjon": "Kompresjonsbehandling av legg",
    "dialyse": "Hemodialyse",
    "pacemaker": "Innsetting av pacemaker",
}
DEVICES: dict[str, str] = {
    "rullator": "Rullator",
    "trygghetsalarm": "Trygghetsalarm",
    "sykeseng": "Elektrisk sykeseng",
    "rullestol": "Manuell rullestol",
    "dusjstol": "Dusjstol",
    "medisindispenser": "Elektronisk medisindispenser",
    "pacemaker": "Pacemaker (implantat)",
}

FLAGS: tuple[str, ...] = (
    "Ikke blodtrykksmåling eller venefloner på venstre arm (AV-fistel)",
    "Ikke blodtrykksmåling på høyre arm etter lymfeknutefjerning",
    "Pasienten har permanent trakeostomi",
    "Skal ikke ha MR - har ikke-MR-kompatibelt implantat",
    "Kontakt pårørende før innleggelse (tolkebehov)",
)

# next of kin: (v3-RoleCode code, display, applicable when)
KIN_ELDER = (("DAU", "natural daughter"), ("SON", "natural son"), ("WIFE", "wife"),
             ("HUSB", "husband"), ("NIECE", "niece"), ("NEPHEW", "nephew"))
KIN_ADULT = (("WIFE", "wife"), ("HUSB", "husband"), ("MTH", "mother"), ("FTH", "father"),
             ("SIS", "sister"), ("BRO", "brother"), ("FRND", "unrelated friend"))
KIN_CHILD = (("MTH", "mother"), ("FTH", "father"))
