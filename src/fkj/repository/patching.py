"""Applying a JSON Patch (RFC 6902) to a stored resource, with errors that never quote it.

The ``jsonpatch`` library's messages print the document (``member 'x' not found in {…the
whole resource…}``) or the stored values a ``test`` compared. A caller may hold update
but not read rights (``user/Patient.u``): a failed PATCH must tell them which operation
failed and why, in words of their own request, and nothing of what is stored.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from fkj.errors import BadRequest, Unprocessable

__all__ = ["apply_json_patch", "pointer_to_path"]

_OPS = {"add", "remove", "replace", "move", "copy", "test"}


def pointer_to_path(rtype: str, pointer: str) -> str:
    """``/name/0/family`` → ``Patient.name[0].family`` (the FHIRPath of an element, for the
    OperationOutcome's expression).

    >>> pointer_to_path("Patient", "/name/0/family")
    'Patient.name[0].family'
    """
    out = rtype
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        out += f"[{part}]" if part.isdigit() or part == "-" else f".{part}"
    return out


def _check_op(i: int, op: Any) -> None:
    where = f"operation {i}"
    if not isinstance(op, dict):
        raise BadRequest(f"JSON Patch {where} must be an object")
    if op.get("op") not in _OPS:
        raise BadRequest(f"JSON Patch {where}: 'op' must be one of {', '.join(sorted(_OPS))}")
    for key in ("path",) + (("from",) if op["op"] in ("move", "copy") else ()):
        v = op.get(key)
        if not isinstance(v, str) or (v and not v.startswith("/")):
            raise BadRequest(f"JSON Patch {where}: '{key}' must be a JSON Pointer ('/…')")
    if op["op"] in ("add", "replace", "test") and "value" not in op:
        raise BadRequest(f"JSON Patch {where}: '{op['op']}' needs a 'value'")


def apply_json_patch(rtype: str, document: dict, patch: list) -> dict:
    """``document`` with ``patch`` applied, one operation after the other. A malformed patch
    is a 400, an operation that cannot be applied a 422 naming the operation (its index, op
    and path — the caller's own words) and the element, never the stored values."""
    if not isinstance(patch, list):
        raise BadRequest("a JSON Patch document must be a JSON array of operations")
    for i, op in enumerate(patch):
        _check_op(i, op)
    doc: Any = document
    for i, op in enumerate(patch):
        where = f"JSON Patch operation {i} ({op['op']} {op['path'] or '/'})"
        try:
            doc = jsonpatch.apply_patch(doc, [op])
        except jsonpatch.JsonPatchTestFailed:
            raise Unprocessable(f"{where}: the test failed (the stored value differs)",
                                expression=pointer_to_path(rtype, op["path"])) from None
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchException,
                jsonpointer.JsonPointerException, TypeError, ValueError, KeyError,
                IndexError):
            path = op.get("from") if op["op"] in ("move", "copy") else op["path"]
            raise Unprocessable(
                f"{where} cannot be applied: the path does not lead to an element it can "
                "work on in this resource", expression=pointer_to_path(rtype, path)) from None
    if not isinstance(doc, dict):
        raise Unprocessable("the JSON Patch did not produce a resource")
    return doc
