"""FHIR operations, one module each, registered by name and level.

Each operation module exposes ``run(req, repo, app, rtype, rid) -> FhirResponse`` and a
``DEFINITION`` (the name, levels and HTTP methods advertised in the CapabilityStatement).
"""

from __future__ import annotations

import importlib

from fkj.errors import NotFound
from fkj.fhir.request import FhirRequest, FhirResponse

#: operation name → module (under fkj.fhir.operations)
OPERATIONS: dict[str, str] = {
    "validate": "validate",
    "export": "export",
    "everything": "everything",
    "akuttilgang": "akuttilgang",
    "akuttilganger": "akuttilganger",
    "tilgangslogg": "tilgangslogg",
    "status": "status",
    "events": "events",
    "get-ws-binding-token": "get_ws_binding_token",
    "process-message": "process_message",
    "oversikt": "oversikt",
}


def register(name: str, module: str) -> None:
    OPERATIONS[name] = module


def definition(name: str) -> dict:
    return importlib.import_module(f"fkj.fhir.operations.{OPERATIONS[name]}").DEFINITION


def run(req: FhirRequest, repo, app, name: str, rtype: str | None, rid: str | None) -> FhirResponse:
    module = OPERATIONS.get(name)
    if module is None:
        raise NotFound(f"operation ${name} is not supported here")
    mod = importlib.import_module(f"fkj.fhir.operations.{module}")
    level = "instance" if rid else "type" if rtype else "system"
    if level not in mod.DEFINITION["levels"]:
        raise NotFound(f"operation ${name} is not available at {level} level")
    if req.method not in mod.DEFINITION["methods"]:
        from fkj.errors import MethodNotAllowed
        raise MethodNotAllowed(f"${name} does not accept {req.method}")
    if mod.DEFINITION.get("reads", True):
        repo.authorize("operation", rtype)
    return mod.run(req, repo, app, rtype, rid)
