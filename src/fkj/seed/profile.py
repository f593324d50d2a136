"""A synthetic patient's identity (:class:`Profile`, :func:`make_profile`) and the shares
behind it, and the shape of her care (:class:`Plan`, :class:`Service`) that
:class:`fkj.seed.patients.PatientBuilder` turns into FHIR resources.

Every probability used here is listed (with its rationale) in ``src/fkj/data/seed/README.md``;
keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from random import Random

from .organization import Staff, Unit
from .people import Kommune, PersonNumbers, age_on, human_name, rand_date, years_before

# (first age, last age, weight): the age mix of a municipality's health-service users
AGE_DISTRIBUTION: tuple[tuple[int, int, float], ...] = (
    (0, 17, 0.06), (18, 39, 0.10), (40, 66, 0.20), (67, 79, 0.28), (80, 89, 0.26), (90, 101, 0.10))
DNR_SHARE = 0.03
SPERRING_SHARE = 0.01
HLR_MINUS_OVER_80 = 0.08
DECEASED_BY_BAND = (0.003, 0.003, 0.003, 0.015, 0.04)   # 80+: 0.03 (80-89) / 0.06 (90+)
RESTRICTED_BY_BAND = (0.0, 0.12, 0.12, 0.02, 0.02)
# 9151 services by band (child, young, adult, old, oldest)
SERVICE_P = {
    "15": (0.02, 0.05, 0.10, 0.25, 0.45),   # helsetjenester i hjemmet
    "21": (0.0, 0.0, 0.0, 0.03, 0.12),      # langtidsopphold (90+: 0.30)
    "1": (0.0, 0.02, 0.04, 0.10, 0.20),     # praktisk bistand
    "6": (0.0, 0.0, 0.01, 0.10, 0.35),      # trygghetsalarm
    "5": (0.0, 0.0, 0.0, 0.03, 0.10),       # matombringing
    "19": (0.0, 0.0, 0.01, 0.06, 0.10),     # korttid rehabilitering (completed)
}
LANGTID_90 = 0.30


def band(age: int) -> int:
    return 0 if age < 18 else 1 if age < 40 else 2 if age < 67 else 3 if age < 80 else 4


@dataclass
class Profile:
    n: int
    pid: str
    sex: str
    birth: date
    dnr: bool
    number: str
    name: dict
    deceased: date | None
    restricted: bool
    sperring: bool
    story: bool

    @property
    def ref(self) -> dict:
        return {"reference": f"Patient/{self.pid}", "display": self.name["text"]}


@dataclass
class Service:
    code: str
    unit: Unit
    status: str                     # active | completed
    start: date
    end: date | None = None
    hours_per_week: float | None = None
    note: str | None = None
    per_day: int | None = None
    label: str | None = None        # PSY/SUD when delivered by psykisk helse og rus


@dataclass
class Plan:
    zone: Unit
    gp: Staff
    dx: list[str] = field(default_factory=list)
    onset: dict[str, date] = field(default_factory=dict)
    restricted: list[str] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)
    allergies: list[str] = field(default_factory=list)
    drugs: list[tuple[str, str | None]] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    hlr: date | None = None
    sperring: tuple[str, object] | None = None
    flags: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    kin: list[tuple[str, str]] = field(default_factory=list)
    legevakt: list[str] = field(default_factory=list)
    gp_visits: int = 0
    dialysis: bool = False


# --------------------------------------------------------------------------- identity
def make_profile(n: int, k: Kommune, seed: int, numbers: PersonNumbers, today: date,
                 *, story: bool = False) -> Profile:
    rng = Random(f"fkj-seed:{k.code}:story:{n}" if story else f"fkj-seed:{k.code}:{seed}:pat:{n}")
    pid = f"{k.slug}-pat-{n}"
    if story:
        birth = years_before(today, 86) - timedelta(days=137)
        sex, dnr, deceased, restricted, sperring = "male", False, None, False, False
    else:
        r = rng.random() * sum(w for _, _, w in AGE_DISTRIBUTION)
        lo, hi = AGE_DISTRIBUTION[-1][:2]
        for lo_, hi_, w in AGE_DISTRIBUTION:
            if r < w:
                lo, hi = lo_, hi_
                break
            r -= w
        if n == 1:  # the restricted-label demo patient is a working-age adult
            lo, hi = 25, 60
        age = int(rng.triangular(lo, hi + 1, lo)) if lo >= 90 else rng.randint(lo, hi)
        birth = years_before(today, age) - timedelta(days=rng.randint(1, 360))
        age = age_on(birth, today)
        b = band(age)
        female_share = 0.62 if age >= 80 else 0.55 if age >= 67 else 0.5
        sex = "female" if rng.random() < female_share else "male"
        dnr = rng.random() < DNR_SHARE
        p_dead = DECEASED_BY_BAND[b] if age < 90 or b < 4 else 0.06
        if b == 4 and age < 90:
            p_dead = 0.03
        deceased = rand_date(rng, today - timedelta(days=720), today - timedelta(days=7)) \
            if rng.random() < p_dead else None
        restricted = rng.random() < RESTRICTED_BY_BAND[b] or n == 1
        sperring = rng.random() < SPERRING_SHARE or n == 2
        if restricted and age < 18:
            restricted = n == 1
    number = numbers.allocate(rng, birth, sex, dnr=dnr)
    return Profile(n, pid, sex, birth, dnr, number, human_name(rng, sex, birth.year), deceased,
                   restricted, sperring, story)
