"""Derive src/fkj/data/fhir/compartments.json from the R4 CompartmentDefinitions.

Source: shared/reference/fhir/profiles-resources.no-narrative.json (hl7.fhir.r4.examples
4.0.1, Bundle-resources.json, CC0). Output: {compartment: {resourceType: [param, ...]}}.
Run from the repository root: python tools/build_compartments.py ../shared
"""

import json
import sys
from pathlib import Path

shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
bundle = json.loads((shared / "reference/fhir/profiles-resources.no-narrative.json").read_text())
out = {}
for e in bundle["entry"]:
    r = e["resource"]
    if r["resourceType"] == "CompartmentDefinition":
        out[r["code"]] = {x["code"]: x["param"] for x in r["resource"] if x.get("param")}
Path("src/fkj/data/fhir/compartments.json").write_text(json.dumps(out, indent=1, sort_keys=True))
print({k: len(v) for k, v in out.items()})
