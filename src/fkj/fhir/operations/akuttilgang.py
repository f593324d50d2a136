"""``POST Patient/{id}/$akuttilgang``: emergency access (break-the-glass). A person without a
care relation opens the patient's record for a limited time (default 4 hours), giving a
reason (Parameters ``reason``, valueString, required). Answers with the grant as Parameters.
The access purpose of what the person then reads is BTG (see fkj.security.policy); blocks
(sperringer) and the sensitivity rules still apply."""

from __future__ import annotations

from fkj.errors import BadRequest, Forbidden, Gone, NotFound
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "akuttilgang", "levels": ("instance",), "methods": ("POST",),
              "url": "http://fkj.no/fhir/OperationDefinition/Patient-akuttilgang"}


def grant_parameters(row: dict) -> list[dict]:
    from fkj.fhir.jsonio import instant
    out = [{"name": "agent", "valueString": row["agent"]}]
    if row.get("fhir_user"):
        out.append({"name": "fhirUser", "valueReference": {"reference": row["fhir_user"]}})
    if row.get("unit"):
        out.append({"name": "unit", "valueReference": {"reference": row["unit"]}})
    if row.get("roles"):
        out.append({"name": "roles", "valueString": row["roles"]})
    out += [{"name": "patient", "valueReference": {"reference": f"Patient/{row['patient']}"}},
            {"name": "reason", "valueString": row["reason"]},
            {"name": "started", "valueInstant": instant(row["started"])},
            {"name": "expires", "valueInstant": instant(row["expires"])},
            {"name": "purposeOfUse", "valueCoding": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG",
                "display": "break the glass"}}]
    return out


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from fkj.security.policy.emergency import open_grant

    if rtype != "Patient" or not rid:
        raise NotFound("$akuttilgang is only available on Patient/[id]")
    from fkj.security.policy.roles import may_break_glass
    if not may_break_glass(repo.principal):
        raise Forbidden("akuttilgang kan bare brukes av helsepersonell: en person med "
                        "HPR-nummer og en helsefaglig rolle (lege, sykepleier, "
                        "helsefagarbeider, fysioterapeut, ergoterapeut, psykolog)")
    body = req.body
    reason = None
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or []:
            if isinstance(p, dict) and p.get("name") == "reason":
                reason = p.get("valueString")
    if not isinstance(reason, str) or not reason.strip():
        raise BadRequest("$akuttilgang needs a Parameters body with a non-empty 'reason' "
                         "(valueString)", expression="Parameters.parameter")
    cur = repo.current_or_none("Patient", rid)
    if cur is None:
        raise NotFound(f"Patient/{rid} is not known")
    if cur.deleted:
        raise Gone(f"Patient/{rid} was deleted")
    row = open_grant(repo, rid, reason.strip())
    # the audit record of this request is the break-the-glass act itself: purpose BTG, reason
    repo.purpose = "ETREAT BTG"
    repo.purpose_reason = reason.strip()
    repo.btg_patients = set(getattr(repo, "btg_patients", set())) | {rid}
    return FhirResponse(200, {"resourceType": "Parameters", "id": f"akuttilgang-{row['id']}",
                              "parameter": grant_parameters(row)})
