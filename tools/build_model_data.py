#!/usr/bin/env python3
"""Derive the model data files in ``src/fkj/data/`` from the reference files in ``/work/shared``.

Run from the repository root::

    python tools/build_model_data.py [--shared /work/shared]

Writes (and records the sha256 of every input in the READMEs next to them):

* ``src/fkj/data/fhir/fhir.schema.min.json`` - the official R4 JSON schema with every
  ``description`` removed, the root ``oneOf``/``discriminator`` dropped and compact separators.
  Nothing else is changed; the validator patches it in memory (see ``fkj.model.validation``).
* ``src/fkj/data/fhir/required-elements.json`` - the walk table for min-cardinality checks and
  for finding embedded resources (``contained``, ``Bundle.entry.resource``, ...), derived from the
  snapshots in ``profiles-resources.no-narrative.json`` and ``profiles-types.json``.
* ``src/fkj/data/no/kommuner.csv`` - verbatim copy of ``kommuner-fylker-2024.csv``.

The product never reads ``/work/shared`` at run time; only this script does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "fkj" / "data"

RESOURCE_MARK = "@Resource"  # child node marker: an embedded resource (validated by its own type)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def strip_descriptions(node, in_properties: bool = False):
    """Drop the ``description`` annotations (not properties that are called description)."""
    if isinstance(node, dict):
        return {k: strip_descriptions(v, k == "properties" and not in_properties)
                for k, v in node.items() if in_properties or k != "description"}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def build_schema(src: Path, dst: Path) -> None:
    schema = json.loads(src.read_text(encoding="utf-8"))
    out = {
        "$schema": schema["$schema"],
        "id": schema["id"],
        "definitions": strip_descriptions(schema["definitions"]),
    }
    dst.write_text(json.dumps(out, separators=(",", ":"), ensure_ascii=False, sort_keys=True),
                   encoding="utf-8")


def _is_primitive(code: str) -> bool:
    return code[:1].islower()


def _is_attribute(code: str) -> bool:
    # Element.id, Extension.url, Resource.id...: plain JSON properties, no "_x" sibling.
    return code.startswith("http://hl7.org/fhirpath/System.")


def build_required(resources: Path, types: Path, dst: Path) -> dict:
    sds = []
    for path in (types, resources):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for entry in bundle["entry"]:
            res = entry["resource"]
            if res.get("resourceType") != "StructureDefinition":
                continue
            if res.get("derivation") != "specialization" or res.get("abstract"):
                continue
            if res["kind"] not in ("resource", "complex-type"):
                continue
            sds.append(res)

    # node name -> {"r": [[element, [json keys...]], ...], "c": {json key: child node}}
    nodes: dict[str, dict] = {}
    for sd in sds:
        root = sd["type"]
        for el in sd["snapshot"]["element"]:
            path = el["path"]
            if "." not in path:
                nodes.setdefault(root, {"r": [], "c": {}})
                continue
            parent, name = path.rsplit(".", 1)
            node = root if parent == root else parent
            entry = nodes.setdefault(node, {"r": [], "c": {}})
            codes = [t["code"] for t in el.get("type", [])]
            choice = name.endswith("[x]")
            base = name[:-3] if choice else name
            keys: list[str] = []
            if "contentReference" in el:
                keys = [base]
                entry["c"][base] = el["contentReference"].lstrip("#")
            for code in codes:
                if choice:
                    key = base + code[0].upper() + code[1:]
                else:
                    key = base
                if key not in keys:
                    keys.append(key)
                if _is_attribute(code):
                    continue
                if _is_primitive(code):
                    if "_" + key not in keys:
                        keys.append("_" + key)
                elif code == "Resource":
                    entry["c"][key] = RESOURCE_MARK
                elif code in ("BackboneElement", "Element") and not choice:
                    entry["c"][key] = path  # backbone: children are listed under this path
                else:
                    entry["c"][key] = code
            if el.get("min", 0) >= 1 and path != "Extension.url":
                # Extension.url is enforced by the patched schema (it is on every element).
                entry["r"].append([base + ("[x]" if choice else ""), keys])

    # Keep only nodes that have requirements or lead to an embedded resource (transitively).
    interesting: set[str] = {RESOURCE_MARK}
    changed = True
    for n, spec in nodes.items():
        if spec["r"]:
            interesting.add(n)
    while changed:
        changed = False
        for n, spec in nodes.items():
            if n not in interesting and any(c in interesting for c in spec["c"].values()):
                interesting.add(n)
                changed = True
    table = {}
    for n, spec in sorted(nodes.items()):
        if n not in interesting:
            continue
        out: dict = {}
        if spec["r"]:
            out["r"] = spec["r"]
        kids = {k: v for k, v in spec["c"].items() if v in interesting}
        if kids:
            out["c"] = kids
        table[n] = out
    resource_types = sorted(sd["type"] for sd in sds if sd["kind"] == "resource")
    doc = {"resourceTypes": resource_types, "nodes": table}
    dst.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=True), encoding="utf-8")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="/work/shared", type=Path)
    args = ap.parse_args()
    fhir_src = args.shared / "reference" / "fhir"
    no_src = args.shared / "reference" / "no"
    (DATA / "fhir").mkdir(parents=True, exist_ok=True)
    (DATA / "no").mkdir(parents=True, exist_ok=True)

    schema_src = fhir_src / "fhir.schema.json"
    res_src = fhir_src / "profiles-resources.no-narrative.json"
    types_src = fhir_src / "profiles-types.json"
    build_schema(schema_src, DATA / "fhir" / "fhir.schema.min.json")
    doc = build_required(res_src, types_src, DATA / "fhir" / "required-elements.json")
    print(f"{len(doc['resourceTypes'])} resource types, {len(doc['nodes'])} walk nodes")

    kommuner_src = no_src / "kommuner-fylker-2024.csv"
    shutil.copyfile(kommuner_src, DATA / "no" / "kommuner.csv")

    print("sha256:")
    for p in (schema_src, res_src, types_src, kommuner_src):
        print(f"  {sha256(p)}  {p}")
    outputs = [DATA / "fhir" / "fhir.schema.min.json", DATA / "fhir" / "required-elements.json",
               DATA / "no" / "kommuner.csv"]
    for p in outputs:
        print(f"  {sha256(p)}  {p.relative_to(ROOT)}  ({p.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
