"""Every FHIR route shape of the server, as (id, method, path, body, content-type) built for a
:class:`World` — used to prove that authentication and tenant checks come before anything."""

from __future__ import annotations

import json

JSON_PATCH = "application/json-patch+json"
FHIR_JSON = "application/fhir+json"


def _bundle(btype: str, w) -> dict:
    return {"resourceType": "Bundle", "type": btype, "entry": [
        {"request": {"method": "GET", "url": f"Patient/{w.pa}"}},
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{w.pb}"}},
        {"fullUrl": "urn:uuid:4b1e7d3c-1111-4f00-9000-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": "Inntrenger"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": f"Observation/{w.ob}"}},
    ]}


def _patient_body(w, rid=None):
    body = {"resourceType": "Patient", "name": [{"family": "Overskrevet"}]}
    if rid:
        body["id"] = rid
    return body


#: id → builder(world) → (method, relative path, body or None, content type)
SHAPES = {
    "read": lambda w: ("GET", f"Patient/{w.pa}", None, None),
    "read-head": lambda w: ("HEAD", f"Patient/{w.pa}", None, None),
    "vread": lambda w: ("GET", f"Patient/{w.pa}/_history/1", None, None),
    "search-type": lambda w: ("GET", f"Observation?subject=Patient/{w.pa}", None, None),
    "search-type-include": lambda w: ("GET", "Observation?_include=Observation:subject", None,
                                      None),
    "search-system": lambda w: ("GET", "?_type=Patient,Observation", None, None),
    "search-post-type": lambda w: ("POST", "Patient/_search", f"_id={w.pa}",
                                   "application/x-www-form-urlencoded"),
    "search-post-system": lambda w: ("POST", "_search", "_type=Patient",
                                     "application/x-www-form-urlencoded"),
    "search-summary-count": lambda w: ("GET", "Observation?_summary=count", None, None),
    "create": lambda w: ("POST", "Patient", _patient_body(w), FHIR_JSON),
    "update": lambda w: ("PUT", f"Patient/{w.pa}", _patient_body(w, w.pa), FHIR_JSON),
    "update-create": lambda w: ("PUT", "Patient/ny-pasient-1", _patient_body(w, "ny-pasient-1"),
                                FHIR_JSON),
    "patch": lambda w: ("PATCH", f"Patient/{w.pa}",
                        [{"op": "replace", "path": "/name/0/family", "value": "Lappet"}],
                        JSON_PATCH),
    "delete": lambda w: ("DELETE", f"Observation/{w.ob}", None, None),
    "conditional-create": lambda w: ("POST", "Patient", _patient_body(w), FHIR_JSON),
    "conditional-update": lambda w: ("PUT", f"Patient?_id={w.pa}", _patient_body(w, w.pa),
                                     FHIR_JSON),
    "conditional-patch": lambda w: ("PATCH", f"Patient?_id={w.pa}",
                                    [{"op": "replace", "path": "/name/0/family",
                                      "value": "Lappet"}], JSON_PATCH),
    "conditional-delete": lambda w: ("DELETE", f"Observation?_id={w.ob}", None, None),
    "history-instance": lambda w: ("GET", f"Patient/{w.pa}/_history", None, None),
    "history-type": lambda w: ("GET", "Observation/_history", None, None),
    "history-tenant": lambda w: ("GET", "_history", None, None),
    "transaction": lambda w: ("POST", "", _bundle("transaction", w), FHIR_JSON),
    "batch": lambda w: ("POST", "", _bundle("batch", w), FHIR_JSON),
    "validate-type": lambda w: ("POST", "Patient/$validate", _patient_body(w), FHIR_JSON),
    "validate-instance-delete": lambda w: (
        "POST", f"Observation/{w.ob}/$validate",
        {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]},
        FHIR_JSON),
    "compartment": lambda w: ("GET", f"Patient/{w.pb}/Observation", None, None),
    "everything": lambda w: ("GET", f"Patient/{w.pb}/$everything", None, None),
    "unknown-type": lambda w: ("GET", "NoSuchType", None, None),
    "unknown-operation": lambda w: ("POST", "$no-such-op", {"resourceType": "Parameters"},
                                    FHIR_JSON),
}
#: shapes that change data (checked afterwards to be unchanged)
WRITES = {"create", "update", "update-create", "patch", "delete", "conditional-create",
          "conditional-update", "conditional-patch", "conditional-delete", "transaction",
          "batch"}


def send(c, w, shape: str, tenant: str | None = None, headers: dict | None = None):
    method, path, body, ctype = SHAPES[shape](w)
    url = f"/fhir/{tenant or w.tenant}" + (f"/{path}" if path and not path.startswith("?")
                                            else path)
    h = dict(headers or {})
    if shape == "conditional-create":
        h["If-None-Exist"] = f"_id={w.pa}"
    content = None
    if body is not None:
        h["Content-Type"] = ctype
        content = body if isinstance(body, str) else json.dumps(body)
    return c.request(method, url, content=content, headers=h)
