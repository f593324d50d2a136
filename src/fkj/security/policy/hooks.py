"""The policy's repository hooks (``authorize``, ``check_result``, ``search_filters``).

They apply to principals of kind ``practitioner`` and ``citizen``; system clients (kind
``client``/``system``) are governed by their SMART scopes only — except the retention rule
for deceased patients, which binds every caller but the internal ``system`` principal (CLI).
"""

from __future__ import annotations

from datetime import datetime, timezone

from fkj.errors import Conflict, Forbidden, NotFound
from fkj.security.policy import decision as D
from fkj.security.policy import roles as R

RETENTION_YEARS = 10
GATE_KEY = "policy.tenants"

_READS = {"read", "vread", "search-type", "search-system", "history-instance",
          "history-type", "history-system", "operation", "history"}
_BODY_WRITES = {"create", "update"}

MSG_RELATION = ("ingen tjenstlig behov: du har ingen behandlingsrelasjon til pasienten "
                "(bruk $akuttilgang i en nødssituasjon)")
#: added to every "not known" answer personnel get for patient data: a resource of a
#: patient they have no care relation to is answered exactly as one that does not exist
#: (no existence oracle), and the answer still points to emergency access
HINT_UNKNOWN = ("ukjent, eller du har ingen tjenstlig behov for pasienten "
                "(bruk $akuttilgang i en nødssituasjon)")
MSG_BLOCKED = "informasjonen er sperret av pasienten"
MSG_ROLE = "rollen din gir ikke tilgang til denne typen opplysninger"
MSG_SENSITIVE = "opplysningene er skjermet (sensitiv kategori) for din rolle og enhet"


def _gate(repo) -> bool:
    gate = repo.services.extras.get(GATE_KEY)
    return gate is None or repo.tenant in gate


def applies(repo) -> bool:
    return repo.principal.kind in ("practitioner", "citizen") and _gate(repo)


def not_found_hint(repo, rtype: str | None) -> str | None:
    """What the repository adds to a "not known" answer for this caller (see
    :data:`HINT_UNKNOWN`): personnel, patient data."""
    if repo.principal.kind != "practitioner" or not _gate(repo):
        return None
    if rtype is not None and rtype not in R.patient_types():
        return None
    return HINT_UNKNOWN


def _deny(reason: str, res: dict, *, stored: bool = True) -> Exception:
    """The refusal for ``reason``. A stored resource the caller may not know of (a patient
    outside the care relation; a citizen's not-own data) is "not known" — the repository
    answers it exactly as a resource that does not exist. Refusals that concern a patient
    the caller is related to (role, sperring, sensitivity) are 403s: the clinician is meant
    to learn that something is there. ``stored=False``: the resource is the body of a
    write, which the caller wrote themselves — refused with the reason."""
    if reason == "not-own" or (reason == "relation" and stored):
        return NotFound(f"{res.get('resourceType')}/{res.get('id')} is not known")
    return Forbidden({"relation": MSG_RELATION, "blocked": MSG_BLOCKED, "role": MSG_ROLE,
                      "sensitive": MSG_SENSITIVE}.get(reason, "ingen tilgang"),
                     code="suppressed" if reason == "blocked" else None)


def _note_purpose(repo, ctx, res_or_patients) -> None:
    """Mark the request as emergency access (purpose BTG) when it reaches a patient only
    through an emergency grant."""
    pats = res_or_patients if isinstance(res_or_patients, (set, frozenset)) \
        else D.patients_of(res_or_patients)
    btg = {p for p in pats if p in ctx.grants and p not in ctx.related}
    if btg:
        repo.purpose = "BTG"
        repo.btg_patients = set(getattr(repo, "btg_patients", set())) | btg


# ------------------------------------------------------------------------------ check_result
def check_result(repo, interaction: str, res: dict) -> None:
    if not applies(repo):
        return
    ctx = D.context(repo)
    pats = D.patients_of(res)
    reason = D.decide(ctx, res, pats)
    if reason is None and interaction in ("history", "vread"):
        # a resource that later became blocked/hidden hides its whole history
        cur = repo.current_or_none(res.get("resourceType"), res.get("id"))
        if cur is not None:
            import orjson
            reason = D.decide(ctx, orjson.loads(cur.content))
    if reason is not None:
        raise _deny(reason, res)
    if ctx.kind == "practitioner":
        _note_purpose(repo, ctx, pats)


# ------------------------------------------------------------------------------ search_filters
def search_filter(repo, r, rtype: str | None):
    if not applies(repo):
        return None
    ctx = D.context(repo)
    if ctx.kind == "practitioner":
        btg = set(ctx.grants) - ctx.related
        if btg:
            repo.purpose = "BTG"
            repo.btg_patients = set(getattr(repo, "btg_patients", set())) | btg
    return D.sql_condition(ctx, r, rtype)


# ------------------------------------------------------------------------------ authorize
def authorize(repo, interaction: str, rtype: str | None, res: dict | None) -> None:
    p = repo.principal
    if interaction == "delete-check" and res is not None and p.kind != "system" and _gate(repo):
        check_retention(repo, res)
    if not applies(repo) or interaction in _READS:
        return
    ctx = D.context(repo)
    if ctx.kind == "citizen":
        return _citizen_write(repo, ctx, interaction, res)
    if interaction in _BODY_WRITES and isinstance(res, dict):
        _check_write(ctx, res, new=interaction == "create")
    elif interaction in ("update-check", "delete-check") and res is not None:
        reason = D.decide(ctx, res)
        if reason is not None:
            raise _deny(reason, res)
        _check_write(ctx, res, new=False)


def _check_write(ctx, res: dict, new: bool) -> None:
    if R.resource_category(res) not in ctx.write_cats:
        raise Forbidden(MSG_ROLE + " (skriving)")
    if D._is_sperring(res):
        raise Forbidden("bare pasienten selv kan opprette eller endre en sperring")
    rtype = res.get("resourceType")
    if rtype == "Patient" and new:
        return  # registering a new patient (no care relation can exist yet)
    reason = D.decide(ctx, res)
    if reason is not None:
        raise _deny(reason, res, stored=False)


def _own_sperring(ctx, res: dict | None) -> bool:
    return isinstance(res, dict) and D._is_sperring(res) and bool(D.patients_of(res)) \
        and D.patients_of(res) <= ctx.own


def _citizen_write(repo, ctx, interaction: str, res: dict | None) -> None:
    if interaction == "patch":
        return  # the stored resource (update-check) and the result (update) are checked
    if interaction == "delete":
        return  # checked on the stored resource (delete-check)
    ok = _own_sperring(ctx, res)
    if interaction == "create" and ok and (res or {}).get("status") == "active":
        return
    if interaction == "update" and ok and (res or {}).get("status") in ("inactive", "rejected"):
        return
    if interaction in ("update-check", "delete-check") and ok:
        return
    raise Forbidden("innbyggere kan bare opprette og trekke tilbake egne sperringer")


# ------------------------------------------------------------------------------ retention
def _death(res: dict) -> datetime | None | bool:
    if res.get("deceasedDateTime"):
        from fkj.search.params.date import date_range
        try:
            low, _ = date_range(res["deceasedDateTime"])
        except Exception:  # noqa: BLE001
            return True
        return datetime.fromtimestamp(low, timezone.utc)
    return True if res.get("deceasedBoolean") is True else None


def check_retention(repo, res: dict) -> None:
    """Data of a deceased patient may not be deleted until ten years after death."""
    pats = D.patients_of(res)
    for pid in sorted(pats):
        if res.get("resourceType") == "Patient" and pid == res.get("id"):
            patient = res
        else:
            cur = repo.current_or_none("Patient", pid)
            if cur is None:
                continue
            import orjson
            patient = orjson.loads(cur.content)
        died = _death(patient)
        if died is None:
            continue
        if died is True:
            raise Conflict(f"Patient/{pid} er død (dødsdato ukjent): opplysningene kan ikke "
                           f"slettes før {RETENTION_YEARS} år etter dødsfallet",
                           code="business-rule")
        try:
            limit = died.replace(year=died.year + RETENTION_YEARS)
        except ValueError:  # 29 February
            limit = died.replace(year=died.year + RETENTION_YEARS, day=28)
        if datetime.now(timezone.utc) < limit:
            raise Conflict(f"Patient/{pid} døde {died.date().isoformat()}: opplysningene kan "
                           f"ikke slettes før {limit.date().isoformat()} "
                           f"({RETENTION_YEARS} år etter dødsfallet)", code="business-rule")
