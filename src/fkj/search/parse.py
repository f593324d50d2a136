"""Parsing search parameters into a tree the predicate builders turn into SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fkj.errors import InvalidSearch

#: parameters that control the result rather than filter it
RESULT_PARAMS = {
    "_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude",
    "_format", "_pretty", "_cursor", "_contained", "_containedType",
}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass
class Criterion:
    """One ``name[:modifier]=value[,value]`` parameter (values are OR-ed)."""

    name: str
    modifier: str | None
    values: list[str]
    raw_name: str
    #: for chained parameters: the rest of the chain (``subject:Patient.name`` → chain=["name"])
    chain: list[tuple[str | None, str]] = field(default_factory=list)


def split_values(value: str) -> list[str]:
    """Split on commas not escaped with a backslash; unescape ``\\,`` ``\\|`` ``\\$``."""
    out, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i:i + 2])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def unescape(v: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", v)


def split_pipe(v: str) -> tuple[str | None, str]:
    """``system|code`` → (system, code); no pipe → (None, code). Honours ``\\|`` escapes."""
    m = re.search(r"(?<!\\)\|", v)
    if not m:
        return None, unescape(v)
    return unescape(v[:m.start()]), unescape(v[m.end():])


def split_prefix(v: str) -> tuple[str, str]:
    if len(v) > 2 and v[:2] in PREFIXES and (v[2].isdigit() or v[2] == "-"):
        return v[:2], v[2:]
    return "eq", v


def parse_name(raw: str) -> tuple[str, str | None]:
    if ":" in raw:
        name, mod = raw.split(":", 1)
        if not name or not mod:
            raise InvalidSearch(f"malformed parameter name {raw!r}", expression=raw)
        return name, mod
    return raw, None
