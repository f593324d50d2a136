"""Search-index extraction: resource JSON → rows for the ``idx_*`` tables.

``extract(resource)`` returns ``{table: [row, ...]}`` for the tables "string", "token",
"reference", "date", "number", "quantity", "uri" and "composite" (every key always present,
rows de-duplicated, each row starting with the parameter code):

* string    ``(param, norm, exact)`` — ``norm`` = casefold + accents removed (NFKD, combining
  marks dropped; ø/æ kept). HumanName → one row per family/given/prefix/suffix/text, Address →
  one per line/city/district/state/postalCode/country/text.
* token     ``(param, system, code, text_norm)``. Coding → (system, code, norm(display)).
  CodeableConcept → one row per coding, plus ``(param, None, None, norm(text))`` when it has
  ``text`` (``:text`` searches the text column of all rows). Identifier → (system, value,
  norm(type.text)), and for each ``type.coding`` an extra row
  ``(param + ":of-type", type_system + "|" + type_code, value, None)`` (missing type system →
  ``""``) so ``:of-type=S|C|V`` is ``param = 'identifier:of-type' AND system = 'S|C' AND
  code = V`` (what ``fkj.search.engine`` queries). ContactPoint → (None, value, None).
  code/string/id/uri primitives → (None, value, None), except a ``code`` element whose
  required binding implies one CodeSystem (fkj.search.code_systems): (system, value, None),
  so ``status=http://hl7.org/fhir/observation-status|final`` works as R4 says; boolean →
  (None, "true"/"false", None).
* reference ``(param, target_type, target_id, url, ident_system, ident_value)``. ``Type/id``
  → (Type, id, None…); absolute ``…/Type/id`` → (Type, id, full url); ``urn:uuid:``/other →
  (None, None, url); contained ``#x`` → no row (only its identifier, if any); canonical/uri →
  (None, None, url) plus the url without ``|version``; Reference.identifier → ident columns
  (with target_type = Reference.type when there is no ``reference``).
* date      ``(param, low, high)`` — float epoch seconds UTC, half-open ``[low, high)`` by
  precision ("2024-03" → [2024-03-01T00:00Z, 2024-04-01T00:00Z)). dateTime without timezone
  and partial dates are taken as UTC. Period: start.low, end.high; missing side → ∓1e15
  sentinel (``_rows.LOW``/``_rows.HIGH``, finite so both SQLite and PostgreSQL store them).
  Timing → one row per ``event``.
* number    ``(param, low, high)`` — implicit precision, ``100`` → [99.5, 100.5).
* quantity  ``(param, system, code, low, high)`` — code = Quantity.code else unit (extra
  ``(param, None, unit, …)`` row when both exist and differ); Money → system
  ``urn:iso:std:iso:4217``, code = currency; Range → low.low .. high.high (open side ∓1e15);
  comparator ``<``/``>`` opens the range; SampledData → no row.
* uri       ``(param, uri)``.
* composite ``(param, c1, c2[, c3])`` — per context element, the cross product of its
  components' rows, each ``ci`` being the component's row *without* its param code (e.g. a
  token component is ``(system, code, text)``, a quantity one ``(system, code, low, high)``).

Resource-level: ``_tag``/``_security`` token, ``_profile`` uri row **and** reference row
(url), ``_source`` uri. ``_id`` and ``_lastUpdated`` have no rows: they are the resource
table's own columns (:data:`COLUMN_PARAMS`).

Structure: :func:`values` gives the raw FHIR element values for one parameter (what a
FHIRPath engine would return; tested against fhirpathpy), the ``_rows`` builders normalise them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

from fkj.search import _compile as C
from fkj.search import _rows as R
from fkj.search.code_systems import implicit_system
from fkj.search.registry import Registry, SearchParam, default_registry

TABLES = ("string", "token", "reference", "date", "number", "quantity", "uri", "composite")


@dataclass
class CompiledParam:
    param: SearchParam
    parts: list[C.Part]
    # composite only, one entry per context part: [(component search type, parts), ...]
    components: list[list[tuple[str, list[C.Part]]]] | None = None

    @property
    def fast(self) -> bool:
        return all(p.fast for p in self.parts) and all(
            q.fast for per_ctx in (self.components or ()) for _, ps in per_ctx for q in ps)


def compile_param(param: SearchParam, resource_type: str,
                  registry: Registry | None = None) -> CompiledParam | None:
    """Compile the parts of ``param`` that apply to ``resource_type`` (None: nothing applies)."""
    if not param.expression:
        return None
    parts: list[C.Part] = []
    ctxs: list[str | None] = []
    for part in C.split_top(param.expression):
        base = C.part_base(part)
        if base not in (resource_type, "Resource", "DomainResource"):
            continue
        got = C.compile_part(part, resource_type)
        parts += got
        if param.type == "composite":
            ctxs.append(C.context_of(part, resource_type))
    if not parts:
        return None
    comps = None
    if param.type == "composite":
        reg = registry or default_registry()
        if len(ctxs) != len(parts):  # a context part expanded by type: no common context
            ctxs = [None] * len(parts)
        comps = []
        for ctx in ctxs:
            per_ctx = []
            for url, expr in param.components:
                sub = reg.by_url(url)
                per_ctx.append((sub.type if sub else "token", C.compile_relative(expr, ctx)))
            comps.append(per_ctx)
    return CompiledParam(param, parts, comps)


#: parameters searched and sorted on the resource table's own columns (``resource.id``,
#: ``resource.last_updated``, see fkj.search.engine): no index rows — they were two of a
#: resource's ~24 rows, written on every change and never read
COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})

#: R4's ``combo-*`` parameters of Observation are unions of two others (``combo-code`` is
#: ``Observation.code | Observation.component.code``): they get no rows of their own and are
#: searched as either (:func:`stored_params`) — a third of an Observation's index rows
UNION_PARAMS = {
    "combo-code": ("code", "component-code"),
    "combo-code-value-concept": ("code-value-concept", "component-code-value-concept"),
    "combo-code-value-quantity": ("code-value-quantity", "component-code-value-quantity"),
    "combo-data-absent-reason": ("data-absent-reason", "component-data-absent-reason"),
    "combo-value-concept": ("value-concept", "component-value-concept"),
    "combo-value-quantity": ("value-quantity", "component-value-quantity"),
}
_R4 = "http://hl7.org/fhir/SearchParameter/Observation-"


#: R4's root-level composites of Observation whose components are, element for element, two
#: other parameters of Observation: ``code-value-quantity`` has the components ``code`` (the
#: ``clinical-code`` definition, ``Observation.code``) and ``value.as(Quantity)`` (the
#: ``value-quantity`` definition, whose SampledData gets no row either), both taken from the
#: one Observation. A composite row exists for every pair of a code row and a value row, so
#: ``code-value-quantity=a$b`` matches exactly where ``code=a`` and ``value-quantity=b`` both
#: hold: no rows of their own (1.4 rows per Observation), searched as that intersection
#: (fkj.search.composite). Not ``code-value-string`` (``value-string`` also indexes
#: ``value.text`` of a CodeableConcept) nor ``code-value-date`` (its component is
#: ``value.as(DateTime)``, not the parameter's expression): those keep their rows.
INTERSECTION_PARAMS = {
    "code-value-quantity": ("code", "value-quantity"),
    "code-value-concept": ("code", "value-concept"),
}


def intersection_of(param: SearchParam | None, code: str) -> tuple[str, ...] | None:
    """The parameters whose rows answer the official composite ``code`` of Observation
    together (see :data:`INTERSECTION_PARAMS`), or None."""
    if code in INTERSECTION_PARAMS and param is not None and param.url == _R4 + code:
        return INTERSECTION_PARAMS[code]
    return None


def stored_params(param: SearchParam | None, code: str) -> tuple[str, ...]:
    """The parameter codes whose rows answer a search on ``code``: the code itself, or for
    the official ``combo-*`` definitions of Observation the two they unite."""
    if code in UNION_PARAMS and param is not None and param.url == _R4 + code:
        return UNION_PARAMS[code]
    return (code,)


# plan entry: (code, fn, builder, table); plans index entries by the resource key they need
Entry = tuple[str, Callable, Callable, str]


@dataclass
class Plan:
    by_key: dict[str, list[Entry]]
    always: list[Entry]
    comp_by_key: dict[str, list[Callable]]
    comp_always: list[Callable]


def _add(index: dict[str, list], always: list, keys: tuple[str, ...] | None, item: Any) -> None:
    if keys is None:
        always.append(item)
    else:
        for k in keys:
            index.setdefault(k, []).append(item)


def _composite_keys(cp: CompiledParam) -> tuple[str, ...] | None:
    """Resource keys one of which a composite needs (None: always run)."""
    keys: set[str] = set()
    for part, per_ctx in zip(cp.parts, cp.components or ()):
        if part.keys is not None:
            keys.update(part.keys)
            continue
        # context is the resource itself: the last component's keys gate it
        last = per_ctx[-1][1] if per_ctx else []
        if not last or any(p.keys is None for p in last):
            return None
        for p in last:
            keys.update(p.keys)
    return tuple(sorted(keys))


def _composite_fn(cp: CompiledParam) -> Callable:
    kinds = C.kinds()
    per_part = []
    for part, per_ctx in zip(cp.parts, cp.components or ()):
        comps = [[(p.fn, _builder(stype, p, kinds)) for p in ps]
                 for stype, ps in per_ctx]
        per_part.append((part.fn, comps))
    code = cp.param.code

    def build(resource: Any, out: list) -> None:
        for f, comps in per_part:
            for node in f(resource, resource):
                keys = []
                for comp in comps:
                    tmp: list = []
                    for fn, b in comp:
                        for v in fn(node, resource):
                            b(code, v, tmp)
                    if not tmp:
                        break
                    keys.append(list(dict.fromkeys(r[1:] for r in tmp if r[0] == code)))
                else:
                    for combo in itertools.product(*keys):
                        out.append((code, *combo))
    return build


def _builder(search_type: str, part: C.Part, kinds: dict) -> R.Builder:
    """The row builder for a part's values; a ``code`` element with an implicit system
    (its required binding's one CodeSystem, see fkj.search.code_systems) gets that system."""
    if search_type == "token" and part.ftype == "code":
        system = implicit_system(part.path)
        if system is not None:
            return R.b_code_in(system)
    return R.builder_for(search_type, part.ftype, kinds.get(part.ftype or ""))


def plan_for(resource_type: str, registry: Registry) -> Plan:
    cache = registry._compiled
    got = cache.get(resource_type)
    if got is not None:
        return got
    plan = Plan({}, [], {}, [])
    kinds = C.kinds()
    for code, param in registry.for_type(resource_type).items():
        if param.type == "special" or code in COLUMN_PARAMS \
                or stored_params(param, code) != (code,) or intersection_of(param, code):
            continue
        cp = compile_param(param, resource_type, registry)
        if cp is None:
            continue
        if param.type == "composite":
            _add(plan.comp_by_key, plan.comp_always, _composite_keys(cp), _composite_fn(cp))
            continue
        for part in cp.parts:
            b = _builder(param.type, part, kinds)
            _add(plan.by_key, plan.always, part.keys, (code, part.fn, b, param.type))
            if code == "_profile":
                _add(plan.by_key, plan.always, part.keys, (code, part.fn, R.b_canon, "reference"))
    cache[resource_type] = plan
    return plan


def extract(resource: dict, registry: Registry | None = None) -> dict[str, list[tuple]]:
    """Index rows per table for ``resource`` (see the module docstring for the formats)."""
    reg = registry or default_registry()
    plan = plan_for(resource.get("resourceType", ""), reg)
    out: dict[str, list[tuple]] = {t: [] for t in TABLES}
    by_key, comp_by_key = plan.by_key, plan.comp_by_key
    comps = list(plan.comp_always)
    for k in resource:
        entries = by_key.get(k)
        if entries is not None:
            for code, fn, build, table in entries:
                vals = fn(resource, resource)
                if vals:
                    lst = out[table]
                    for v in vals:
                        build(code, v, lst)
        c = comp_by_key.get(k)
        if c is not None:
            comps += c
    for code, fn, build, table in plan.always:
        vals = fn(resource, resource)
        if vals:
            lst = out[table]
            for v in vals:
                build(code, v, lst)
    if comps:
        lst = out["composite"]
        for c in dict.fromkeys(comps):
            c(resource, lst)
    for t, rows in out.items():
        if len(rows) > 1:
            out[t] = list(dict.fromkeys(rows))
    return out


def param_rows(resource: dict, codes: frozenset[str], table: str,
               registry: Registry | None = None) -> list[tuple]:
    """The rows of ``table`` that :func:`extract` makes for the parameters ``codes`` only
    (the access policy asks a resource for its patient references on every read; a full
    extraction of an Observation costs ~90 µs, its ``subject``/``patient`` parameters a
    tenth of that)."""
    reg = registry or default_registry()
    rtype = resource.get("resourceType", "")
    # kept with the registry's compiled plans (a registry freed and another made at the same
    # address must not find this one's)
    key = ("param_rows", rtype, codes, table)
    sub = reg._compiled.get(key)
    if sub is None:
        plan = plan_for(rtype, reg)
        keep = [e for e in plan.always if e[0] in codes and e[3] == table]
        by_key = {}
        for k, entries in plan.by_key.items():
            kept = [e for e in entries if e[0] in codes and e[3] == table]
            if kept:
                by_key[k] = kept
        sub = reg._compiled[key] = (by_key, keep)
    by_key, always = sub
    out: list[tuple] = []
    for k in resource:
        entries = by_key.get(k)
        if entries is not None:
            for code, fn, build, _ in entries:
                for v in fn(resource, resource) or ():
                    build(code, v, out)
    for code, fn, build, _ in always:
        for v in fn(resource, resource) or ():
            build(code, v, out)
    return list(dict.fromkeys(out)) if len(out) > 1 else out


def values(resource: dict, code: str, registry: Registry | None = None) -> list:
    """The raw FHIR element values parameter ``code`` selects in ``resource`` (fast path)."""
    reg = registry or default_registry()
    rtype = resource.get("resourceType", "")
    param = reg.get(rtype, code)
    if param is None:
        return []
    cp = compile_param(param, rtype, reg)
    if cp is None:
        return []
    out: list = []
    for p in cp.parts:
        out += p.fn(resource, resource)
    return out


def composite_values(resource: dict, code: str, registry: Registry | None = None
                     ) -> list[tuple[str, Any, list[list]]]:
    """For a composite parameter: (context part source, context node, [values per component])
    for every context node (fast path; the oracle tests compare this with fhirpathpy)."""
    reg = registry or default_registry()
    rtype = resource.get("resourceType", "")
    param = reg.get(rtype, code)
    cp = compile_param(param, rtype, reg) if param else None
    if cp is None or cp.components is None:
        return []
    out = []
    for part, per_ctx in zip(cp.parts, cp.components):
        for node in part.fn(resource, resource):
            vals = []
            for _stype, ps in per_ctx:
                vs: list = []
                for p in ps:
                    vs += p.fn(node, resource)
                vals.append(vs)
            out.append((part.source, node, vals))
    return out


def compile_stats(registry: Registry | None = None) -> dict[str, int]:
    """Counts of (resource type, parameter) pairs compiled fast vs. via fhirpathpy."""
    reg = registry or default_registry()
    stats = {"fast": 0, "fallback": 0, "typed_parts": 0, "untyped_parts": 0}
    for rtype in reg.resource_types():
        for param in reg.for_type(rtype).values():
            cp = compile_param(param, rtype, reg)
            if cp is None:
                continue
            stats["fast" if cp.fast else "fallback"] += 1
            for p in cp.parts:
                stats["typed_parts" if p.ftype else "untyped_parts"] += 1
    return stats
