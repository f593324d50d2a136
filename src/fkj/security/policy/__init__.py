"""The access policy (tjenstlig behov): care relations, emergency access, sperringer,
sensitive categories, roles, citizens' own data and the retention rule for the deceased.

Public API:

* :func:`register_policy` — append the hooks to ``fkj.services.hooks`` (idempotent);
* :func:`emergency_grant` — the caller's active emergency grant for a patient;
* :func:`access_purpose` — "BTG" when the caller reaches one of the patients only through an
  emergency grant, else the token's purpose of use;
* :func:`blocked_notice` / :func:`search_notice` — whether a search result must say that
  "noe informasjon er sperret av pasienten".

See docs/policy.md.
"""

from __future__ import annotations

BLOCKED_TEXT = "noe informasjon er sperret av pasienten"

#: search parameter the care relation needs: EpisodeOfCare.team (no R4 parameter indexes it)
TEAM_PARAM = {
    "resourceType": "SearchParameter", "url": "http://fkj.no/fhir/SearchParameter/EpisodeOfCare-team",
    "name": "team", "status": "active", "code": "team", "base": ["EpisodeOfCare"],
    "type": "reference", "target": ["CareTeam"], "expression": "EpisodeOfCare.team",
    "description": "The CareTeam of the episode (used by the access policy)",
}


def register_policy(fkj, *, tenants: set[str] | None = None) -> None:
    """Register the policy hooks once. ``tenants``: apply only in these tenants (tests share
    one app between suites; production passes nothing — the policy applies everywhere)."""
    from fkj.search.registry import default_registry
    from fkj.security.policy import hooks as H

    services = fkj.services
    if tenants is None:  # everywhere (a gate set by an earlier call is lifted)
        services.extras["policy.everywhere"] = True
        services.extras.pop(H.GATE_KEY, None)
    elif not services.extras.get("policy.everywhere"):
        services.extras.setdefault(H.GATE_KEY, set()).update(tenants)
    if services.extras.get("policy.registered"):
        return
    services.extras["policy.registered"] = True
    base = services.extras.get("registry") or default_registry()
    if base.get("EpisodeOfCare", "team") is None:
        services.extras["registry"] = base.with_custom([TEAM_PARAM])
        services.extras.pop("tenant_registries", None)
    from fkj.security.policy.cache import bump_on_write, epoch_companion
    # a read by id, and a search's transaction, learn the policy epoch in a statement
    # they run anyway (no extra round trip)
    services.extras["read_companion"] = epoch_companion()
    # "not known" answers to personnel read the same whether the resource does not exist
    # or belongs to a patient outside their care relation
    services.extras["not_found_hint"] = H.not_found_hint
    hooks = services.hooks
    hooks.before_commit.append(bump_on_write)
    hooks.authorize.append(H.authorize)
    hooks.check_result.append(H.check_result)
    hooks.search_filters.append(H.search_filter)


def emergency_grant(repo, patient_id: str) -> dict | None:
    from fkj.security.policy.emergency import emergency_grant as g
    return g(repo, patient_id)


def access_purpose(repo, patient_ids) -> str:
    """"BTG" if any of ``patient_ids`` is reachable for the caller only by emergency access."""
    from fkj.security.policy import decision as D
    from fkj.security.policy.hooks import applies
    if not applies(repo) or repo.principal.kind != "practitioner":
        return repo.principal.purpose_of_use
    ctx = D.context(repo)
    if any(p in ctx.grants and p not in ctx.related for p in patient_ids or ()):
        return "BTG"
    return repo.principal.purpose_of_use


def blocked_notice(repo, rtype: str | None, patient_ids) -> bool:
    """True when a sperring hides something from the caller in the record of one of
    ``patient_ids`` (None: of any patient the caller is related to or has opened)."""
    from fkj.security.policy import decision as D
    from fkj.security.policy.hooks import applies
    if not applies(repo) or repo.principal.kind != "practitioner":
        return False
    ctx = D.context(repo)
    rules = [r for r in ctx.rules if r.patient in ctx.noticed and (
        r.classes is None or rtype is None or rtype in r.classes or rtype == "Patient")]
    wanted = None if patient_ids is None else set(patient_ids)
    return any(wanted is None or r.patient in wanted for r in rules)


def query_patients(rtype: str | None, params, compartment: tuple[str, str] | None = None
                   ) -> set[str] | None:
    """The patients a search names (compartment, ``patient``/``subject``, ``_id`` of Patient,
    ``_compartment``); None when it names none (then any related patient counts)."""
    out: set[str] = set()
    if compartment and compartment[0] == "Patient":
        out.add(compartment[1])
    for k, v in params or ():
        base = k.split(":", 1)[0]
        vals = [x.strip() for x in v.split(",") if x.strip()]
        if base in ("patient", "subject", "beneficiary") or (base == "_id" and rtype == "Patient"):
            out |= {x.rsplit("/", 1)[-1] for x in vals}
        elif base == "_compartment":
            out |= {x.split("/", 1)[1] for x in vals if x.startswith("Patient/")}
    return out or None


def search_notice(repo, rtype: str | None, params, compartment=None) -> str | None:
    """The warning text a search Bundle must carry, or None."""
    if blocked_notice(repo, rtype, query_patients(rtype, params, compartment)):
        return BLOCKED_TEXT
    return None


__all__ = ["register_policy", "emergency_grant", "access_purpose", "blocked_notice",
           "search_notice", "query_patients", "BLOCKED_TEXT", "TEAM_PARAM"]
