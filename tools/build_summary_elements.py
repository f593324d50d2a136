"""Derive src/fkj/data/fhir/summary-elements.json from the R4 resource StructureDefinitions.

Source: shared/reference/fhir/profiles-resources.no-narrative.json (hl7.fhir.r4.examples
4.0.1, CC0). For every resource StructureDefinition (kind = resource, derivation =
specialization or the abstract bases) the top-level snapshot elements (``Type.x``) give:

* ``summary``  – JSON keys of elements with ``isSummary = true``
* ``required`` – JSON keys of elements with ``min >= 1``

Choice elements (``value[x]``) expand to one key per allowed type (``valueQuantity`` …).
Output: ``{resourceType: {"summary": [...], "required": [...]}}``.
Run from the repository root: python tools/build_summary_elements.py ../shared
"""

import hashlib
import json
import sys
from pathlib import Path

shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
src = shared / "reference/fhir/profiles-resources.no-narrative.json"
raw = src.read_bytes()
bundle = json.loads(raw)


def keys(el) -> list[str]:
    name = el["path"].split(".", 1)[1]
    if name.endswith("[x]"):
        stem = name[:-3]
        return [stem + t["code"][0].upper() + t["code"][1:] for t in el.get("type", [])]
    return [name]


out = {}
for e in bundle["entry"]:
    r = e["resource"]
    if r.get("resourceType") != "StructureDefinition" or r.get("kind") != "resource":
        continue
    if r.get("derivation") == "constraint":
        continue
    summary, required = [], []
    for el in r["snapshot"]["element"]:
        if el["path"].count(".") != 1:
            continue
        if el.get("isSummary"):
            summary += keys(el)
        if el.get("min", 0) >= 1:
            required += keys(el)
    out[r["type"]] = {"summary": sorted(set(summary)), "required": sorted(set(required))}
Path("src/fkj/data/fhir/summary-elements.json").write_text(
    json.dumps(out, separators=(",", ":"), sort_keys=True))
print(len(out), "types; source sha256", hashlib.sha256(raw).hexdigest())
