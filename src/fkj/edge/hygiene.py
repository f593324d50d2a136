"""Request hygiene: control characters and malformed text are refused at the edge (400).

A control character in a request part has no legitimate use there, and some cannot be
stored at all (PostgreSQL refuses U+0000 in ``text`` and ``jsonb``): one such request once
stopped the audit log of every tenant. So every part is checked before any of it is used —
before authentication, before routing, before anything reaches a log:

==========================  =================================================================
part                        refused
==========================  =================================================================
path (each segment)         after percent-decoding: not UTF-8, C0 controls (U+0000–U+001F),
                            DEL (U+007F), C1 controls (U+0080–U+009F)
query names and values      the same (``+`` is a space)
form bodies                 the same, for every ``application/x-www-form-urlencoded`` body
(``_search``, OAuth)        (checked as the route reads it; see :class:`FormCheck`)
header names and values     raw bytes: C0 controls other than TAB, and DEL (RFC 9110); the
                            value of ``If-None-Exist`` is a query and is checked as one
JSON bodies (resources,     strings and member names: C0 controls other than TAB, CR and LF
Bundles, Parameters,        (FHIR R4 §2.24.0.1 "string": no code points below 32 but TAB, CR,
patches)                    LF; XML, FHIR's other format, cannot carry them). The refusal
                            names the element (``Patient.name[0].family``). Not UTF-8 or a
                            lone surrogate escape: refused by the JSON parser already
==========================  =================================================================

Each refusal is a :class:`RefusedPart` (a :class:`~fkj.errors.BadRequest`) whose
OperationOutcome names the part: ``http.path``, ``http.<parameter>``, ``http.<Header>``
(FHIR's convention for HTTP errors) or the element of the body. The text of the part is
shown escaped (``a\\x00b``), so the refusal itself is safe to log and to audit.
"""

from __future__ import annotations

import re
from itertools import chain
from urllib.parse import unquote_to_bytes

from fkj.errors import BadRequest

__all__ = ["FormCheck", "RefusedPart", "check_headers", "check_json", "check_path",
           "check_query", "has_control", "shown"]

#: path, query and form text, after percent-decoding
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the same, on raw bytes that need no decoding (ASCII without ``%``); bytes are tested
#: with ``translate`` (a deleted byte shortens them), several times faster than a regex
_CONTROL_ASCII = bytes(range(0x20)) + b"\x7f"
#: header names and values, raw: HTAB is allowed (RFC 9110 field-value)
_CONTROL_HEADER = bytes(range(0x09)) + bytes(range(0x0a, 0x20)) + b"\x7f"
_CONTROL_HEADER_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: strings of a JSON body: TAB, LF and CR are allowed (FHIR string)
_CONTROL_JSON = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: in raw JSON, a control character can only be an escape (raw ones are malformed JSON):
#: ``\u0000``–``\u001f``, ``\b``, ``\f``. Only a body that has one is walked.
_JSON_SUSPECT = re.compile(rb"\\(?:u00[01][0-9a-fA-F]|[bf])")
#: headers whose value is a query, percent-decoded by the server
_QUERY_HEADERS = {b"if-none-exist": "If-None-Exist"}


class RefusedPart(BadRequest):
    """A request part holds a control character or text that is not UTF-8."""


def shown(text: str | bytes, limit: int = 80) -> str:
    """``text`` with its control characters (and bytes that are not UTF-8) escaped, cut to
    ``limit`` characters: safe to show, log and store.

    >>> shown("a\\x00b")
    'a\\\\x00b'
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    out = out.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    return out if len(out) <= limit else out[:limit] + "…"


def has_control(text: str) -> bool:
    """Whether ``text`` (a value decoded from a request: a credential, a token's claim)
    holds a control character (C0, DEL or C1)."""
    return _CONTROL.search(text) is not None


def _decoded(raw: bytes) -> str | None:
    """Percent-decoded UTF-8 text of ``raw``, or None if it is not UTF-8."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _clean(raw: bytes) -> bool:
    """Whether ``raw`` (a path, a query) is free of control characters and UTF-8 once
    percent-decoded — checked whole, the common case; only a refusal looks at the parts
    to name the one at fault."""
    if raw.isascii() and b"%" not in raw:
        return len(raw.translate(None, _CONTROL_ASCII)) == len(raw)
    text = _decoded(raw)
    return text is not None and _CONTROL.search(text) is None


def _refuse_text(what: str, expression: str, text: str | None, raw: bytes) -> None:
    if text is None:
        raise RefusedPart(f"{what} '{shown(raw)}' is not valid UTF-8 after percent-decoding",
                          expression=expression)
    m = _CONTROL.search(text)
    if m is not None:
        raise RefusedPart(f"{what} '{shown(text)}' holds the control character "
                          f"U+{ord(m.group()):04X}; a request may hold no control characters "
                          "there", expression=expression)


def check_path(raw_path: bytes) -> None:
    """Refuse a path (as sent: percent-encoded, without the query) with a control
    character or a segment that is not UTF-8."""
    if _clean(raw_path):
        return
    for segment in raw_path.split(b"/"):
        _refuse_text("the path segment", "http.path", _decoded(segment), segment)


def check_query(raw: bytes, where: str = "query") -> None:
    """Refuse a query string (or form body, or ``If-None-Exist``) with a control character
    or text that is not UTF-8 in a name or value."""
    if _clean(raw):
        return
    for pair in raw.split(b"&"):
        if not pair:
            continue
        name_raw, _, value_raw = pair.partition(b"=")
        name = _decoded(name_raw.replace(b"+", b" "))
        label = shown(name if name is not None else name_raw, 40)
        kind = {"query": "query parameter", "form": "form parameter"}.get(
            where, f"{where}: parameter")
        expression = f"http.{label}" if where in ("query", "form") else f"http.{where}"
        _refuse_text(f"the name of {kind}", expression, name, name_raw)
        value = _decoded(value_raw.replace(b"+", b" "))
        _refuse_text(f"the value of {kind} '{label}'", expression, value, value_raw)


def check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse a header whose name or value holds a control character (TAB is allowed in
    values), and an ``If-None-Exist`` whose query is refused by :func:`check_query`."""
    blob = b"".join(chain.from_iterable(headers))  # all at once: the common case is clean
    clean = len(blob.translate(None, _CONTROL_HEADER)) == len(blob)
    for name, value in headers:
        if not clean and (len(value.translate(None, _CONTROL_HEADER)) != len(value) or
                          len(name.translate(None, _CONTROL_HEADER)) != len(name)):
            label = "-".join(w.capitalize() for w in shown(name, 40).split("-"))
            m = _CONTROL_HEADER_RE.search(value) or _CONTROL_HEADER_RE.search(name)
            raise RefusedPart(f"header {label} holds the control character "
                              f"U+{m.group()[0]:04X}; control characters are not allowed",
                              expression=f"http.{label}")
        query_header = _QUERY_HEADERS.get(name)
        if query_header is not None:
            check_query(value, where=query_header)


class FormCheck:
    """The ``application/x-www-form-urlencoded`` body of a request, checked as the route
    reads it: the chunks pass through unchanged and are kept (form bodies are small;
    beyond ``limit`` bytes the body is refused, 413), and before the last chunk reaches the
    route the whole body is checked with :func:`check_query`. A route that never reads its
    body (an unauthenticated caller of a FHIR route) makes the server check nothing."""

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []

    def feed(self, chunk: bytes, more: bool) -> None:
        from fkj.errors import PayloadTooLarge

        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"form body exceeds the limit of {self.limit} bytes")
        self.chunks.append(chunk)
        if not more:
            body, self.chunks = b"".join(self.chunks), []
            check_query(body, where="form")


def check_json(raw: bytes, value) -> None:
    """Refuse a parsed JSON body (``value``, parsed from ``raw``) with a control character
    other than TAB, CR and LF in a string or member name; the refusal names the element.

    Costs one scan of ``raw`` for an escape that could be one; only such a body is walked.
    """
    if _JSON_SUSPECT.search(raw) is None:
        return
    root = value.get("resourceType") if isinstance(value, dict) else None
    if not isinstance(root, str) or _CONTROL_JSON.search(root) is not None:
        root = "$"
    stack: list[tuple[object, str]] = [(value, root)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            m = _CONTROL_JSON.search(item)
            if m is not None:
                raise RefusedPart(
                    f"{path} holds the control character U+{ord(m.group()):04X}; FHIR "
                    "strings may hold no control characters but TAB, CR and LF",
                    expression=path)
        elif isinstance(item, dict):
            for k, v in item.items():
                m = _CONTROL_JSON.search(k)
                if m is not None:
                    raise RefusedPart(
                        f"{path} has a member named '{shown(k)}' holding the control "
                        f"character U+{ord(m.group()):04X}", expression=path)
                stack.append((v, f"{path}.{k}"))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))

