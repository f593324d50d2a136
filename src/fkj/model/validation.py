"""Structural validation of FHIR R4 (4.0.1) resources in their JSON form.

``validate_resource(resource)`` returns ``[]`` for a valid resource and otherwise a list of
error :class:`~fkj.errors.Issue` objects whose ``expression`` is a FHIRPath-like location
(``Patient.name[0].family``; ``Bundle.entry[2].resource.status`` for embedded resources).
It never raises, whatever JSON value it is given.

Two layers, both built from packaged data (``src/fkj/data/fhir``, see its README):

1. **JSON schema** - the official R4 ``fhir.schema.json`` (descriptions stripped), patched in
   memory (:func:`_patch_schema`) so that it is stricter than the official one:

   * ``ResourceList`` (every resource type; used by ``contained``, ``Bundle.entry.resource``,
     ``Parameters.parameter.resource``...) is stubbed to ``{}``; embedded resources are then
     validated by their own ``resourceType`` (one compiled validator per type, compiled lazily
     on first use and cached; see PERFORMANCE-NOTES "Validation").
   * complex types and backbone elements must be JSON objects (the official schema has no
     ``type`` on them, so ``"name": [null]`` or ``"maritalStatus": [{}]`` slipped through);
     no empty objects, no empty arrays, no empty strings, no ``null`` (``null`` is allowed only
     inside arrays of primitives and their ``_x`` arrays, as the FHIR JSON format requires).
   * ``integer``/``positiveInt``/``unsignedInt`` must be JSON integers in their 32-bit range;
     ``decimal`` must be finite; ``date``/``dateTime``/``instant`` must be real calendar dates
     (``2023-02-30`` fails; the schema regexes only check the shape).
   * ``Extension.url`` is required.

   fastjsonschema stops at the first error, so the schema layer reports at most one issue per
   resource.

2. **Cardinality walk** - a precompiled table (``required-elements.json``, derived from the
   StructureDefinition snapshots) of the elements with ``min >= 1`` per resource, backbone
   element and data type. A primitive element is present when ``x`` or ``_x`` is; a choice
   element ``value[x]`` is present when any ``valueXxx`` is. The same walk finds embedded
   resources and validates them recursively with a location prefix.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from pathlib import Path
from collections.abc import Callable
from importlib import resources as _res
from typing import Any

import fastjsonschema

from fkj.errors import Issue

__all__ = ["MAX_DEPTH", "RESOURCE_TYPES", "is_known_type", "validate_resource"]

MAX_DEPTH = 128  # nesting of JSON objects/arrays the cardinality walk follows before giving up

_RESOURCE_MARK = "@Resource"
_INT32 = (-2147483648, 2147483647)
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _load(name: str) -> Any:
    return json.loads(_res.files("fkj").joinpath("data", "fhir", name).read_text(encoding="utf-8"))


_REQUIRED = _load("required-elements.json")
RESOURCE_TYPES: frozenset[str] = frozenset(_REQUIRED["resourceTypes"])
# node -> (required [(element, keys)], children {json key: node})
_NODES: dict[str, tuple[tuple[tuple[str, tuple[str, ...]], ...], dict[str, str]]] = {
    name: (tuple((el, tuple(keys)) for el, keys in spec.get("r", ())), spec.get("c", {}))
    for name, spec in _REQUIRED["nodes"].items()
}
del _REQUIRED


def is_known_type(name: str) -> bool:
    """True if *name* is one of the 146 FHIR R4 resource types."""
    return isinstance(name, str) and name in RESOURCE_TYPES


# --------------------------------------------------------------------------------------------
# calendar checks (custom formats for fastjsonschema)

def _real_date(value: str) -> bool:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD...``: the day must exist in that month/year."""
    if len(value) < 10:
        return True  # the schema pattern has already checked year / year-month
    try:
        year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    except ValueError:
        return False
    if not 1 <= month <= 12 or day < 1:
        return False
    limit = _DAYS[month - 1]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        limit = 29
    return day <= limit


_FORMATS: dict[str, Callable[[str], bool]] = {"fhir-calendar-date": _real_date}


# --------------------------------------------------------------------------------------------
# schema patching and per-type compilation

def _patch_schema(defs: dict) -> dict:
    defs = copy.deepcopy(defs)
    defs["ResourceList"] = {}
    primitives = {name for name, d in defs.items() if "properties" not in d and name[:1].islower()}
    # Choice elements (value[x] ...) inline their primitive's {type, pattern} instead of using
    # a $ref: point them at the (patched) primitive definition so that they get the same checks.
    by_shape: dict[tuple, str] = {}
    for name in sorted(primitives):
        d = defs[name]
        if "pattern" in d:
            by_shape.setdefault((d.get("type"), d["pattern"]), name)
    for d in defs.values():
        for prop in d.get("properties", {}).values():
            target = prop.get("items") if prop.get("type") == "array" else prop
            if not isinstance(target, dict) or "pattern" not in target:
                continue
            name = by_shape.get((target.get("type"), target["pattern"]))
            if name is not None and set(target) == {"type", "pattern"}:
                target.clear()
                target["$ref"] = f"#/definitions/{name}"
    for name in ("integer", "positiveInt", "unsignedInt"):
        d = defs[name]
        d.pop("pattern", None)
        d["type"] = "integer"
        d["minimum"] = {"integer": _INT32[0], "positiveInt": 1, "unsignedInt": 0}[name]
        d["maximum"] = _INT32[1]
    defs["decimal"]["minimum"] = -1.7976931348623157e308
    defs["decimal"]["maximum"] = 1.7976931348623157e308
    for name in ("date", "dateTime", "instant"):
        defs[name]["format"] = "fhir-calendar-date"
    defs["xhtml"] = {"type": "string"}
    for name in primitives:
        if defs[name].get("type") == "string":
            defs[name]["minLength"] = 1
    # nullable twins for items of primitive arrays (FHIR JSON: [ "a", null ] + [ null, {...} ])
    for name in list(primitives) + ["Element"]:
        twin = copy.deepcopy(defs[name])
        t = twin.get("type")
        if t is None and name == "Element":
            t = "object"
        if t is not None:
            twin["type"] = [t, "null"]
        defs[name + "__nullable"] = twin
    for name, d in defs.items():
        props = d.get("properties")
        if props is None:
            continue
        d["type"] = "object"
        d["minProperties"] = 1
        for prop in props.values():
            if prop.get("type") == "array":
                prop["minItems"] = 1
                items = prop.get("items", {})
                ref = items.get("$ref", "")
                target = ref.rsplit("/", 1)[-1]
                if target in primitives or target == "Element":
                    items["$ref"] = ref + "__nullable"
                elif "enum" in items:
                    items["enum"] = list(items["enum"]) + [None]
                elif items.get("type") in ("boolean", "string", "number"):
                    items["type"] = [items["type"], "null"]
    defs["Element__nullable"]["type"] = ["object", "null"]
    defs["Element__nullable"].pop("minProperties", None)
    defs["Element__nullable"]["minProperties"] = 1
    ext = defs["Extension"]
    ext["required"] = sorted(set(ext.get("required", [])) | {"url"})
    return defs


_lock = threading.Lock()
_validators: dict[str, Callable[[Any], Any]] = {}
_defs: dict | None = None


def _validator(rtype: str) -> Callable[[Any], Any]:
    fn = _validators.get(rtype)
    if fn is not None:
        return fn
    global _defs
    with _lock:
        fn = _validators.get(rtype)
        if fn is None:
            fn = _cached_validator(rtype)
            if fn is None:
                if _defs is None:
                    _defs = _patch_schema(_load("fhir.schema.min.json")["definitions"])
                fn = _compile_and_cache(rtype, _defs)
            _validators[rtype] = fn
    return fn


# Compiling one type's validator costs ~1.3 s (0.3 s generating ~2 MB of Python, 1 s turning
# it into bytecode). The bytecode is cached on disk (marshal) per schema, fastjsonschema and
# Python version, so only the first process on a machine pays it.
_CACHE_KEY: str | None = None


def _cache_dir() -> Path | None:
    import hashlib
    import os
    import sys

    global _CACHE_KEY
    root = os.environ.get("FKJ_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fkj")
    if _CACHE_KEY is None:
        h = hashlib.sha256(_res.files("fkj").joinpath("data", "fhir", "fhir.schema.min.json").read_bytes())
        h.update(Path(__file__).read_bytes())
        h.update(f"{fastjsonschema.VERSION}|{sys.version}".encode())
        _CACHE_KEY = h.hexdigest()[:16]
    return Path(root) / "validators" / _CACHE_KEY


def _cached_validator(rtype: str) -> Callable[[Any], Any] | None:
    import marshal

    d = _cache_dir()
    path = d / f"{rtype}.marshal" if d else None
    if path is None or not path.exists():
        return None
    try:
        state_code, func_code, name = marshal.loads(path.read_bytes())
        g: dict[str, Any] = {}
        exec(state_code, g)  # noqa: S102 - our own generated code, cached by us
        exec(func_code, g)  # noqa: S102
        return functools.partial(g[name], custom_formats=_FORMATS)
    except Exception:  # noqa: BLE001 - a broken cache entry is recompiled
        return None


def _compile_and_cache(rtype: str, defs: dict) -> Callable[[Any], Any]:
    import marshal
    import os

    schema = {"$schema": "http://json-schema.org/draft-06/schema#",
              "definitions": defs, "$ref": f"#/definitions/{rtype}"}
    resolver, generator = fastjsonschema._factory(schema, {}, _FORMATS, True, True, True, True)
    state_code = compile(generator.global_state_code, f"<fkj-schema-state-{rtype}>", "exec")
    func_code = compile(generator.func_code, f"<fkj-schema-{rtype}>", "exec")
    name = resolver.get_scope_name()
    g = dict(generator.global_state)
    exec(func_code, g)  # noqa: S102
    fn = functools.partial(g[name], custom_formats=_FORMATS)
    d = _cache_dir()
    if d is not None:
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{rtype}.{os.getpid()}.tmp"
            tmp.write_bytes(marshal.dumps((state_code, func_code, name)))
            os.replace(tmp, d / f"{rtype}.marshal")
        except OSError:
            pass  # a read-only home: no cache, still correct
    return fn


# --------------------------------------------------------------------------------------------
# converting fastjsonschema errors into issues

_SCALAR_TYPES = {"string", "number", "integer", "boolean"}
_VALUE_RULES = {"pattern", "format", "enum", "minimum", "maximum", "exclusiveMinimum",
                "exclusiveMaximum", "const", "minLength", "maxLength"}


def _location(prefix: str, name: str | None) -> str:
    name = name or "data"
    return prefix + name[4:] if name.startswith("data") else f"{prefix}.{name}"


def _schema_issues(exc: fastjsonschema.JsonSchemaValueException, prefix: str) -> list[Issue]:
    loc = _location(prefix, exc.name)
    rule, value, definition = exc.rule, exc.value, exc.definition or {}
    if rule == "additionalProperties" and isinstance(value, dict):
        known = definition.get("properties", {})
        extra = sorted(k for k in value if k not in known) or ["?"]
        return [Issue("error", "structure", f"Unknown element '{k}'", [f"{loc}.{k}"])
                for k in extra]
    if rule == "required" and isinstance(value, dict):
        missing = [k for k in definition.get("required", []) if k not in value] or ["?"]
        return [Issue("error", "required", f"Missing required element '{k}'", [f"{loc}.{k}"])
                for k in missing]
    if value is None:
        return [Issue("error", "structure", "null is not allowed here", [loc])]
    if rule == "minItems" and value == []:
        return [Issue("error", "structure", "Empty arrays are not allowed in FHIR JSON", [loc])]
    if rule == "minProperties" and value == {}:
        return [Issue("error", "structure", "Empty objects are not allowed in FHIR JSON", [loc])]
    if rule == "minLength" and value == "":
        return [Issue("error", "value", "Empty strings are not allowed in FHIR JSON", [loc])]
    expected = definition.get("type")
    if rule == "type" or (isinstance(value, list) and rule != "minItems"):
        if isinstance(value, list) and expected != "array":
            return [Issue("error", "structure",
                          "Element has max cardinality 1 but an array was given", [loc])]
        if expected == "array":
            return [Issue("error", "structure",
                          "Element repeats (max cardinality *) and must be an array", [loc])]
        if isinstance(value, dict) or expected == "object":
            return [Issue("error", "structure", f"Expected {_article(expected)} here, got "
                          f"{_json_type(value)}", [loc])]
        return [Issue("error", "value",
                      f"Expected a JSON {_type_text(expected)}, got {_json_type(value)}", [loc])]
    if rule == "format":
        return [Issue("error", "value", f"Not a valid calendar date: {value!r}", [loc])]
    if rule == "enum":
        allowed = [v for v in definition.get("enum", []) if v is not None]
        return [Issue("error", "value",
                      f"Invalid code {value!r}; allowed: {', '.join(map(str, allowed))}", [loc])]
    if rule in _VALUE_RULES:
        msg = exc.message.replace(exc.name or "data", "value", 1)
        return [Issue("error", "value", f"Invalid value {_short(value)}: {msg}", [loc])]
    return [Issue("error", "structure", exc.message.replace(exc.name or "data", loc, 1), [loc])]


def _type_text(t: Any) -> str:
    if isinstance(t, list):
        t = [x for x in t if x != "null"]
        return " or ".join(t)
    return str(t)


def _article(t: Any) -> str:
    text = _type_text(t)
    return ("an " if text[:1] in "aeiou" else "a ") + text


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------------
# the walk

class _TooDeep(Exception):
    pass


def _path(loc: tuple) -> str:
    parts = []
    while loc:
        loc, seg = loc
        parts.append(seg)
    return "".join(reversed(parts))


def _walk(obj: dict, node: str, loc: tuple, issues: list[Issue], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _TooDeep
    spec = _NODES.get(node)
    if spec is None:
        return
    required, children = spec
    for element, keys in required:
        for k in keys:
            if k in obj:
                break
        else:
            issues.append(Issue("error", "required", f"Missing required element '{element}'",
                                [_path((loc, "." + element))]))
    for key, value in obj.items():
        child = children.get(key)
        if child is None:
            continue
        if type(value) is list:
            for i, item in enumerate(value):
                if type(item) is dict:
                    sub = (loc, f".{key}[{i}]")
                    if child == _RESOURCE_MARK:
                        _validate(item, None, _path(sub), issues, depth + 1)
                    else:
                        _walk(item, child, sub, issues, depth + 1)
                elif child == _RESOURCE_MARK:
                    _validate(item, None, _path((loc, f".{key}[{i}]")), issues, depth + 1)
        elif type(value) is dict:
            sub = (loc, "." + key)
            if child == _RESOURCE_MARK:
                _validate(value, None, _path(sub), issues, depth + 1)
            else:
                _walk(value, child, sub, issues, depth + 1)
        elif child == _RESOURCE_MARK and value is not None:
            _validate(value, None, _path((loc, "." + key)), issues, depth + 1)


def _under(expression: list[str], broken: tuple[str, ...]) -> bool:
    for expr in expression:
        for b in broken:
            if expr == b or expr.startswith((b + ".", b + "[")):
                return True
    return False


def _validate(resource: Any, expected_type: str | None, prefix: str, issues: list[Issue],
              depth: int) -> None:
    """Validate one (possibly embedded) resource; *prefix* is '' at the top level."""
    def at(element: str) -> str:
        return f"{prefix}.{element}" if prefix else element

    if not isinstance(resource, dict):
        issues.append(Issue("error", "structure",
                            f"A resource must be a JSON object, got {_json_type(resource)}",
                            [prefix] if prefix else []))
        return
    rtype = resource.get("resourceType")
    if rtype is None:
        issues.append(Issue("error", "required", "Missing resourceType", [at("resourceType")]))
        return
    if not isinstance(rtype, str):
        issues.append(Issue("error", "structure", "resourceType must be a string",
                            [at("resourceType")]))
        return
    if rtype not in RESOURCE_TYPES:
        issues.append(Issue("error", "value", f"Unknown resource type {_short(rtype)}",
                            [at("resourceType")]))
        return
    if expected_type is not None and rtype != expected_type:
        issues.append(Issue("error", "invalid",
                            f"Expected resourceType {expected_type}, got {rtype}",
                            [at("resourceType")]))
        return
    root = prefix or rtype
    walk_issues: list[Issue] = []
    _walk(resource, rtype, (None, root), walk_issues, depth)
    try:
        _validator(rtype)(resource)
    except fastjsonschema.JsonSchemaValueException as exc:
        found = _schema_issues(exc, root)
        issues.extend(found)
        # drop walk issues at or below a location the schema already reported as broken
        broken = tuple(e for i in found for e in i.expression)
        issues.extend(i for i in walk_issues if not _under(i.expression, broken))
        return
    issues.extend(walk_issues)


def validate_resource(resource: object, expected_type: str | None = None) -> list[Issue]:
    """Return ``[]`` when *resource* is a valid R4 resource, else error issues.

    *expected_type*, when given, is the resource type the caller requires (e.g. from the URL);
    a different ``resourceType`` gives an ``invalid`` issue at ``resourceType``.
    Never raises on any input.
    """
    issues: list[Issue] = []
    try:
        _validate(resource, expected_type, "", issues, 0)
    except (_TooDeep, RecursionError):
        return [Issue("error", "structure",
                      f"Resource is nested too deeply (more than {MAX_DEPTH} levels)", [])]
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return [Issue("error", "exception", f"Validation failed: {type(exc).__name__}: {exc}",
                      [])]
    return issues
