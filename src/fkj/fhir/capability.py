"""The CapabilityStatement: lists exactly what this server implements."""

from __future__ import annotations

import functools

from fkj import FHIR_VERSION, __version__

INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance",
                "history-type", "create", "search-type"]


@functools.cache
def _resources() -> list[dict]:
    from fkj.model.validation import RESOURCE_TYPES
    from fkj.search.registry import default_registry

    reg = default_registry()
    out = []
    for rtype in sorted(RESOURCE_TYPES):
        params = [{"name": p.code, "definition": p.url, "type": p.type}
                  for p in sorted(reg.for_type(rtype).values(), key=lambda p: p.code)
                  if p.type != "special" and (p.expression or p.code in ("_id", "_lastUpdated"))]
        out.append({
            "type": rtype,
            "interaction": [{"code": c} for c in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical", "enforced", "local"],
            "searchInclude": ["*"],
            "searchRevInclude": ["*"],
            "searchParam": params,
            "operation": _type_operations(rtype),
        })
    return out


#: operations that exist only on some types (the rest apply to every type)
OPERATION_TYPES = {"everything": ("Patient",), "export": ("Patient", "Group"),
                   "tilgangslogg": ("Patient",), "akuttilgang": ("Patient",),
                   "oversikt": ("Patient",)}


def _type_operations(rtype: str) -> list[dict]:
    from fkj.fhir.operations import OPERATIONS, definition

    out = []
    for name in sorted(OPERATIONS):
        d = definition(name)
        if not ({"type", "instance"} & set(d["levels"])):
            continue
        if rtype not in OPERATION_TYPES.get(name, (rtype,)):
            continue
        out.append({"name": name, "definition": d["url"]})
    return out


def _system_operations() -> list[dict]:
    from fkj.fhir.operations import OPERATIONS, definition

    return [{"name": n, "definition": definition(n)["url"]} for n in sorted(OPERATIONS)
            if "system" in definition(n)["levels"]]


def capability_statement(app, tenant: str) -> dict:
    from fkj.fhir.jsonio import instant
    from fkj.store.backend import now_us

    base = f"{app.settings.base_url}/fhir/{tenant}"
    rest = {
        "mode": "server",
        "documentation": "FKJ-plattformen: one logical information source per municipality",
        "resource": _resources(),
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "search-system"},
                        {"code": "history-system"}],
        "operation": _system_operations(),
    }
    for hook in app.capability_hooks:
        hook(rest, tenant)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(now_us())[:10],
        "publisher": "FKJ-plattformen",
        "kind": "instance",
        "software": {"name": "fkj", "version": __version__},
        "implementation": {"description": f"FKJ-plattformen, kommune {tenant}", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
