"""Compile R4 search-parameter FHIRPath expressions into fast dictionary walkers.

Each expression is split into its union parts (``a | b | c``). A part whose first step names a
resource type only runs for that type (``Resource``/``DomainResource`` parts run for all).
Parts made of plain paths, choice-type casts (``x as T``, ``x.as(T)``, ``x.ofType(T)``), the
``where(resolve() is T)`` reference-type filter, ``where(name='literal')``, ``first()`` and
``[n]`` indexing become closures over plain ``dict``/``list`` JSON; anything else is compiled
once with ``fhirpathpy`` (after the rewrites in :func:`rewrite_for_fhirpathpy`).

Every compiled part knows the FHIR type it yields when that can be derived from the element
definitions (``fkj/data/fhir/elements.json``); an un-cast choice element at the end of a path is
expanded into one part per allowed type, so rows can be built without guessing.

``resolve() is T`` semantics (fast walker and fhirpathpy rewrite agree): a Reference matches
when ``reference`` is ``T/id`` or ``…/T/id`` (optionally ``/_history/v``), or when it has no
``reference`` and ``Reference.type = 'T'``. Contained (``#x``) references never match.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

Fn = Callable[[Any, Any], list]  # (context node, root resource) -> values

_ID = r"[A-Za-z0-9.-]{1,64}"


@functools.lru_cache(maxsize=1)
def _elements() -> tuple[dict, dict, dict]:
    data = json.loads(resources.files("fkj.data").joinpath("fhir/elements.json").read_bytes())
    return data["elements"], data["contentReference"], data["kinds"]


def kinds() -> dict[str, str]:
    return _elements()[2]


# --------------------------------------------------------------------------- element types
@dataclass
class Elem:
    types: list[str]          # allowed type codes
    choice: bool              # value[x]
    child_ctx: str | None     # lookup prefix for children when not a choice
    path: str | None = None   # the element's definition path (``Observation.status``)


def lookup(ctx: str | None, name: str) -> Elem | None:
    if ctx is None:
        return None
    els, cref, kinds_ = _elements()
    for c in _ctx_chain(ctx, kinds_):
        p = f"{c}.{name}"
        if p in cref:
            target = cref[p]
            return Elem(els.get(target, []), False, target, p)
        t = els.get(p)
        if t is not None:
            if t in (["BackboneElement"], ["Element"]) or not t:
                return Elem(t, False, p, p)
            return Elem(t, False, t[0] if len(t) == 1 else None, p)
        t = els.get(p + "[x]")
        if t is not None:
            return Elem(t, True, None, p + "[x]")
    return None


def _ctx_chain(ctx: str, kinds_: dict) -> list[str]:
    if "." in ctx:
        return [ctx]
    k = kinds_.get(ctx)
    if k == "resource":
        return [ctx, "DomainResource", "Resource"]
    if k == "complex-type":
        return [ctx, "Element"]
    return [ctx]


def child_ctx_for_type(t: str) -> str:
    return t


def _choice_key(name: str, t: str) -> str:
    return name + t[0].upper() + t[1:]


def _match_type(types: list[str], want: str) -> str | None:
    lw = want.lower()
    for t in types:
        if t.lower() == lw:
            return t
    return None


# --------------------------------------------------------------------------- parsing
class Unsupported(Exception):
    pass


def split_top(expr: str, sep: str = "|") -> list[str]:
    """Split on ``sep`` outside parentheses and quotes."""
    out, depth, quote, cur = [], 0, False, []
    for ch in expr:
        if quote:
            cur.append(ch)
            if ch == "'":
                quote = False
            continue
        if ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [p for p in out if p]


def _split_steps(path: str) -> list[str]:
    return [s.strip() for s in split_top(path, ".")]


_AS_RE = re.compile(r"^\((.+?) as (\w+)\)(.*)$", re.S)
_AS_BARE_RE = re.compile(r"^([\w.%\[\]]+) as (\w+)$")
_IDX_RE = re.compile(r"^(\w+)\[(\d+)\]$")
_FN_RE = re.compile(r"^(\w+)\((.*)\)$", re.S)
_RESOLVE_RE = re.compile(r"^resolve\(\)\s+is\s+(\w+)$")
_EQ_RE = re.compile(r"^(\w+)\s*=\s*'([^']*)'$")


def parse_part(part: str) -> list[tuple]:
    """Parse one union part into steps: ("name", n) ("cast", T) ("index", i) ("first",)
    ("where_ref", T) ("where_eq", name, literal) ("root",)."""
    part = part.strip()
    m = _AS_RE.match(part)
    if m:
        inner, t, rest = m.groups()
        steps = parse_part(inner) + [("cast", t)]
        rest = rest.strip()
        if rest:
            if not rest.startswith("."):
                raise Unsupported(part)
            steps += _parse_steps(_split_steps(rest[1:]))
        return steps
    m = _AS_BARE_RE.match(part)
    if m:
        return parse_part(m.group(1)) + [("cast", m.group(2))]
    if part.startswith("(") and part.endswith(")") and len(split_top(part[1:-1])) == 1:
        return parse_part(part[1:-1])
    return _parse_steps(_split_steps(part))


def _parse_steps(raw: list[str]) -> list[tuple]:
    steps: list[tuple] = []
    for s in raw:
        if s == "%resource":
            steps.append(("root",))
            continue
        if re.fullmatch(r"\w+", s):
            steps.append(("name", s))
            continue
        m = _IDX_RE.match(s)
        if m:
            steps += [("name", m.group(1)), ("index", int(m.group(2)))]
            continue
        m = _FN_RE.match(s)
        if not m:
            raise Unsupported(s)
        fn, arg = m.group(1), m.group(2).strip()
        if fn in ("as", "ofType") and re.fullmatch(r"\w+", arg):
            steps.append(("cast", arg))
        elif fn == "first" and not arg:
            steps.append(("first",))
        elif fn == "where":
            mm = _RESOLVE_RE.match(arg)
            if mm:
                steps.append(("where_ref", mm.group(1)))
                continue
            mm = _EQ_RE.match(arg)
            if mm:
                steps.append(("where_eq", mm.group(1), mm.group(2)))
                continue
            raise Unsupported(s)
        else:
            raise Unsupported(s)
    return steps


# --------------------------------------------------------------------------- rewriting
def ref_type_regex(t: str) -> str:
    return f"^(.*/)?{t}/{_ID}(/_history/{_ID})?$"


def rewrite_for_fhirpathpy(expr: str, resource_type: str | None = None) -> str:
    """``as T`` → ``ofType(T)``, ``resolve() is T`` → reference-type check (see module doc);
    with ``resource_type``, ``Resource.``/``DomainResource.`` prefixes become that type
    (fhirpathpy does not match the abstract base types)."""
    if resource_type:
        expr = re.sub(r"\b(?:DomainResource|Resource)\.", resource_type + ".", expr)
    def where_ref(m: re.Match) -> str:
        t = m.group(1)
        return (f"where(reference.matches('{ref_type_regex(t)}') or "
                f"(reference.empty() and type = '{t}'))")
    expr = re.sub(r"where\(\s*resolve\(\)\s+is\s+(\w+)\s*\)", where_ref, expr)
    expr = re.sub(r"\.as\((\w+)\)", r".ofType(\1)", expr)
    # "(path as T)" / "path as T"
    expr = re.sub(r"([\w.\[\]%]+)\s+as\s+(\w+)", r"\1.ofType(\2)", expr)
    expr = re.sub(r"ofType\(DateTime\)", "ofType(dateTime)", expr)
    return expr


@functools.lru_cache(maxsize=None)
def fhirpath_compiled(expr: str) -> Callable:
    import fhirpathpy
    from fhirpathpy.models import models
    return fhirpathpy.compile(expr, models["r4"])


# --------------------------------------------------------------------------- closures
def _mk_name(key: str) -> Callable[[list], list]:
    def step(nodes: list) -> list:
        out: list = []
        for n in nodes:
            if type(n) is dict:
                v = n.get(key)
                if v is not None:
                    if type(v) is list:
                        out.extend(x for x in v if x is not None)
                    else:
                        out.append(v)
        return out
    return step


def _mk_multi(keys: tuple[str, ...]) -> Callable[[list], list]:
    def step(nodes: list) -> list:
        out: list = []
        for n in nodes:
            if type(n) is dict:
                for key in keys:
                    v = n.get(key)
                    if v is not None:
                        if type(v) is list:
                            out.extend(x for x in v if x is not None)
                        else:
                            out.append(v)
        return out
    return step


def _mk_where_eq(key: str, lit: str) -> Callable[[list], list]:
    def step(nodes: list) -> list:
        return [n for n in nodes if type(n) is dict and n.get(key) == lit]
    return step


def ref_type_matcher(t: str) -> Callable[[Any], bool]:
    rx = re.compile(ref_type_regex(t)).match

    def ok(n: Any) -> bool:
        if type(n) is not dict:
            return False
        r = n.get("reference")
        if r is None:
            return n.get("type") == t
        return type(r) is str and rx(r) is not None and not r.endswith("\n")
    return ok


def _mk_where_ref(t: str) -> Callable[[list], list]:
    ok = ref_type_matcher(t)

    def step(nodes: list) -> list:
        return [n for n in nodes if ok(n)]
    return step


def _mk_index(i: int) -> Callable[[list], list]:
    return lambda nodes: nodes[i:i + 1]


@dataclass
class Part:
    fn: Fn
    ftype: str | None   # FHIR type of the values, None when unknown
    fast: bool
    source: str         # the part's expression (for diagnostics / oracle)
    #: keys of the start node at least one of which must be present for a non-empty result
    #: (None: unknown, always run)
    keys: tuple[str, ...] | None = None
    #: definition path of the element the values come from (``Observation.status``), when
    #: the part ends on a known element (for the implicit system of ``code`` elements)
    path: str | None = None


def _chain(steps: list[Callable], from_root: bool) -> Fn:
    """Generic list-at-a-time walker (used when a step cannot be generated inline)."""
    steps = tuple(steps)

    def run(node: Any, root: Any) -> list:
        nodes = [root if from_root else node]
        for s in steps:
            nodes = s(nodes)
            if not nodes:
                return nodes
        return nodes
    return run


def _codegen(steps: list[tuple], from_root: bool) -> Fn | None:
    """Generate a nested-loop walker for steps made of ("key", k) / ("keys", ks) /
    ("eq", k, lit) / ("ref", T). Returns None for anything else."""
    env: dict[str, Any] = {}
    lines = ["def walk(node, root):", "    out = []", f"    n0 = {'root' if from_root else 'node'}"]
    ind = "    "
    depth = 0
    for i, st in enumerate(steps):
        cur = f"n{depth}"
        last = i == len(steps) - 1
        if st[0] in ("key", "keys"):
            keys = (st[1],) if st[0] == "key" else st[1]
            if len(keys) > 1:
                lines.append(f"{ind}for k{depth} in {keys!r}:")
                ind += "    "
                getter = f"k{depth}"
            else:
                getter = repr(keys[0])
            v = f"v{depth}"
            lines.append(f"{ind}{v} = {cur}.get({getter}) if type({cur}) is dict else None")
            if last:
                lines.append(f"{ind}if {v} is not None:")
                lines.append(f"{ind}    if type({v}) is list:")
                lines.append(f"{ind}        out.extend([x for x in {v} if x is not None])")
                lines.append(f"{ind}    else:")
                lines.append(f"{ind}        out.append({v})")
            else:
                nxt = f"n{depth + 1}"
                lines.append(f"{ind}if {v} is not None:")
                lines.append(f"{ind}    for {nxt} in ({v} if type({v}) is list else ({v},)):")
                ind += "        "
                depth += 1
        elif st[0] == "eq":
            lines.append(f"{ind}if type({cur}) is dict and {cur}.get({st[1]!r}) == {st[2]!r}:")
            ind += "    "
            if last:
                lines.append(f"{ind}out.append({cur})")
        elif st[0] == "ref":
            fname = f"ok{i}"
            env[fname] = ref_type_matcher(st[1])
            lines.append(f"{ind}if {fname}({cur}):")
            ind += "    "
            if last:
                lines.append(f"{ind}out.append({cur})")
        else:
            return None
    if not steps:
        return None
    lines.append("    return out")
    exec("\n".join(lines), env)  # noqa: S102 - generated from parsed, validated steps
    return env["walk"]


def _build(fns: list[tuple[Callable, tuple | None]], from_root: bool) -> Fn:
    specs = [sp for _, sp in fns]
    if all(sp is not None for sp in specs):
        g = _codegen(specs, from_root)
        if g is not None:
            return g
    return _chain([f for f, _ in fns], from_root)


def compile_steps(steps: list[tuple], ctx: str | None, source: str) -> list[Part]:
    """Compile parsed steps starting at context ``ctx`` (a type name or backbone path)."""
    fns: list[Callable] = []
    from_root = False
    cur = ctx
    cur_types: list[str] | None = [ctx] if ctx and "." not in ctx else None
    pending_choice: tuple[str, list[str]] | None = None   # (name, types) awaiting a cast
    first_keys: tuple[str, ...] | None = None
    cur_path: str | None = None   # definition path of the element reached (non-choice)
    i = 0
    while i < len(steps):
        st = steps[i]
        kind = st[0]
        if pending_choice and kind != "cast":
            name, types = pending_choice
            mk = tuple(_choice_key(name, t) for t in types)
            if not fns and not from_root:
                first_keys = mk
            fns.append((_mk_multi(mk), ('keys', mk)))
            pending_choice, cur, cur_types, cur_path = None, None, None, None
        if kind == "root":
            if fns:
                raise Unsupported(source)
            from_root = True
            cur = _root_ctx(ctx)
            cur_types = cur_path = None
        elif kind == "name":
            el = lookup(cur, st[1])
            if el is not None and el.choice:
                pending_choice = (st[1], el.types)
                cur_path = None
            else:
                if not fns and not from_root:
                    first_keys = (st[1],)
                fns.append((_mk_name(st[1]), ('key', st[1])))
                cur = el.child_ctx if el else None
                cur_types = el.types if el else None
                cur_path = el.path if el else None
        elif kind == "cast":
            if pending_choice is not None:
                name, types = pending_choice
                t = _match_type(types, st[1])
                if t is None:
                    fns.append((lambda nodes: [], None))
                    cur, cur_types = None, []
                else:
                    if not fns and not from_root:
                        first_keys = (_choice_key(name, t),)
                    fns.append((_mk_name(_choice_key(name, t)), ('key', _choice_key(name, t))))
                    cur, cur_types = t, [t]
                pending_choice = None
            elif cur_types is not None and len(cur_types) == 1 and \
                    cur_types[0].lower() == st[1].lower():
                pass  # cast to the element's own type: no-op
            else:
                raise Unsupported(source)
        elif kind == "where_ref":
            fns.append((_mk_where_ref(st[1]), ('ref', st[1])))
        elif kind == "where_eq":
            fns.append((_mk_where_eq(st[1], st[2]), ('eq', st[1], st[2])))
        elif kind == "index":
            fns.append((_mk_index(st[1]), None))
        elif kind == "first":
            fns.append((_mk_index(0), None))
        else:
            raise Unsupported(source)
        i += 1
    if pending_choice is not None:
        name, types = pending_choice
        parts = []
        for t in types:
            key = _choice_key(name, t)
            f = _build(fns + [(_mk_name(key), ('key', key))], from_root)
            k = first_keys if fns or from_root else (key,)
            parts.append(Part(f, t, True, f"{source}.ofType({t})", k))
        return parts
    if not fns:
        fn: Fn = (lambda node, root: [root]) if from_root else (lambda node, root: [node])
    else:
        fn = _build(fns, from_root)
    ftype = cur_types[0] if cur_types and len(cur_types) == 1 else None
    return [Part(fn, ftype, True, source, first_keys, cur_path)]


def _root_ctx(ctx: str | None) -> str | None:
    if ctx is None:
        return None
    return ctx.split(".", 1)[0]


# hand-written special cases (exact part text → (fn, ftype))
def _deceased(node: Any, root: Any) -> list:
    if type(node) is not dict:
        return []
    if "deceasedDateTime" in node:
        return [True]
    b = node.get("deceasedBoolean")
    return [b is True]


SPECIAL: dict[str, tuple[Fn, str]] = {
    "Patient.deceased.exists() and Patient.deceased != false": (_deceased, "boolean"),

}


def _fallback(part: str, relative: bool, resource_type: str | None = None) -> Part:
    """fhirpathpy, compiled once. An expression fhirpathpy cannot compile (e.g. a broken tenant
    SearchParameter) yields nothing instead of breaking extraction for the whole type; an
    evaluation error on one resource yields nothing for that parameter."""
    try:
        fp = fhirpath_compiled(rewrite_for_fhirpathpy(part, resource_type))
    except Exception:  # noqa: BLE001 - invalid expression: index nothing
        return Part(lambda node, root: [], None, False, part)

    def fn(node: Any, root: Any) -> list:
        try:
            return fp(node, {"resource": root}) if relative else fp(node)
        except Exception:  # noqa: BLE001
            return []
    return Part(fn, None, False, part)


def part_base(part: str) -> str | None:
    """The type a part applies to (its first identifier), e.g. ``Observation``."""
    p = part.lstrip("( ")
    m = re.match(r"([A-Z]\w*)", p)
    return m.group(1) if m else None


def compile_part(part: str, resource_type: str) -> list[Part]:
    """Compile an absolute union part (starting with a type name) for ``resource_type``."""
    special = SPECIAL.get(part)
    if special:
        return [Part(special[0], special[1], True, part)]
    try:
        steps = parse_part(part)
        if not steps or steps[0][0] != "name":
            raise Unsupported(part)
        # first step is the type name: start at the resource root
        return compile_steps(steps[1:], resource_type, part)
    except Unsupported:
        return [_fallback(part, relative=False, resource_type=resource_type)]


def compile_relative(expr: str, ctx: str | None) -> list[Part]:
    """Compile a relative expression (composite component) evaluated on a context node."""
    out: list[Part] = []
    for part in split_top(expr):
        try:
            out += compile_steps(parse_part(part), ctx, part)
        except Unsupported:
            out.append(_fallback(part, relative=True))
    return out


def context_of(part: str, resource_type: str) -> str | None:
    """The element context (type or backbone path) a compiled absolute part ends on."""
    try:
        steps = parse_part(part)
    except Unsupported:
        return None
    cur: str | None = resource_type
    pend = None
    for st in steps[1:]:
        if st[0] == "name":
            el = lookup(cur, st[1])
            if el is not None and el.choice:
                pend = (st[1], el.types)
                cur = None
            else:
                cur = el.child_ctx if el else None
        elif st[0] == "cast" and pend:
            t = _match_type(pend[1], st[1])
            cur = t
            pend = None
    return cur
