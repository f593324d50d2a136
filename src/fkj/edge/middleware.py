"""The ASGI middleware every route sits behind — FHIR, bulk status, OAuth, pages, and the
``extra_routes`` other layers add — so that none of them can forget what it does:

1. **Hygiene** (:mod:`fkj.edge.hygiene`): a path, query or header with a control character
   or text that is not UTF-8 is answered 400 before any route (or authentication) runs, and
   a form body as the route reads it. A ``multipart/form-data`` body is refused (415): no
   route takes one, and the checks would not see into it.
2. **No caching**: a response that does not say how it may be cached gets
   ``Cache-Control: no-store`` — patient data, tokens and errors are never kept by a browser
   or proxy. Public discovery documents (``/.well-known/…``, ``/auth/jwks``) say otherwise
   themselves.
3. **Faults and bugs are answered, as an OperationOutcome**: an exception a route lets
   escape is answered by the error it stands for — a :class:`~fkj.errors.FhirError` as
   itself, a storage fault by :func:`fkj.store.faults.fault_for` (503 + ``Retry-After`` when
   the database cannot be reached, 507 when the disk is full), anything else 500 "internal
   error" (logged with its traceback) — instead of Starlette's plain-text page and a closed
   connection.
"""

from __future__ import annotations

import logging

import orjson
from starlette.requests import ClientDisconnect

from fkj.edge.hygiene import FormCheck, check_headers, check_path, check_query, shown
from fkj.errors import BadRequest, FhirError, Issue, UnsupportedMediaType
from fkj.store.faults import fault_for

log = logging.getLogger("fkj.edge")
FHIR_JSON = b"application/fhir+json; charset=utf-8"
_FORM = b"application/x-www-form-urlencoded"
_MULTIPART = b"multipart/form-data"
_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class InternalError(FhirError):
    """An exception nobody answered: a bug."""


def answer_for(exc: Exception, where: str) -> FhirError:
    """The error an exception that escaped a route is answered with (and logged as)."""
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, ClientDisconnect):  # nobody is left to answer: not a bug
        log.info("%s: the client disconnected while sending its request", where)
        return BadRequest("the client disconnected while sending its request")
    fault = fault_for(exc)
    if fault is not None:
        log.warning("%s: %s (%s: %s)", where, fault.diagnostics, type(exc).__name__,
                    str(exc).splitlines()[0][:300] if str(exc) else "")
        return fault
    log.error("unhandled error on %s", where, exc_info=exc)
    text = "internal error; it has been logged"
    return InternalError(text, issues=[Issue("fatal", "exception", text)])


def outcome_body(error: FhirError) -> bytes:
    return orjson.dumps({"resourceType": "OperationOutcome",
                         "issue": [i.to_fhir() for i in error.issues]})


async def send_error(send, error: FhirError) -> None:
    body = outcome_body(error)
    headers = [(b"content-type", FHIR_JSON), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _where(scope) -> str:
    """The request, for a log line: method and path (escaped)."""
    return f"{scope.get('method')} {shown(scope.get('path', ''), 200)}"


def _header(headers, name: bytes) -> bytes:
    for k, v in headers:
        if k == name:
            return v
    return b""


class Edge:
    """ASGI middleware; see the module docstring. ``max_form_bytes``: the largest form body
    a route may read (larger → 413)."""

    def __init__(self, app, max_form_bytes: int = 10 * 1024 * 1024):
        self.app = app
        self.max_form_bytes = max_form_bytes

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            return await self._websocket(scope, receive, send)
        if kind != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        try:
            check_path(scope.get("raw_path") or scope.get("path", "").encode("utf-8",
                                                                              "surrogateescape"))
            check_query(scope.get("query_string") or b"")
            check_headers(headers)
            # a body: only requests of these methods have one the routes read
            ctype = _header(headers, b"content-type").lower() \
                if scope.get("method") in _WITH_BODY else b""
            if ctype.startswith(_MULTIPART):
                raise UnsupportedMediaType("multipart/form-data is not accepted by any route "
                                           "of this server", expression="http.Content-Type")
        except FhirError as e:
            log.warning("refused %s: %s", _where(scope), e.diagnostics)
            return await send_error(send, e)

        if ctype.startswith(_FORM):
            form = FormCheck(self.max_form_bytes)
            inner_receive = receive

            async def receive():
                message = await inner_receive()
                if message["type"] == "http.request":
                    form.feed(message.get("body", b""), message.get("more_body", False))
                return message

        started = False

        async def sending(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                out = list(message.get("headers") or ())
                for k, _ in out:
                    if k.lower() == b"cache-control":
                        break
                else:
                    out.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": out}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:  # the answer is under way: the connection is all that can end
                log.error("error after the response started on %s", _where(scope),
                          exc_info=exc)
                raise
            await send_error(send, answer_for(exc, _where(scope)))

    async def _websocket(self, scope, receive, send) -> None:
        try:
            check_path(scope.get("raw_path") or scope.get("path", "").encode("utf-8",
                                                                              "surrogateescape"))
            check_query(scope.get("query_string") or b"")
            check_headers(scope.get("headers") or [])
        except FhirError as e:
            log.warning("refused websocket %s: %s", shown(scope.get("path", "")),
                        e.diagnostics)
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008,
                            "reason": e.diagnostics.encode()[:120].decode("utf-8", "ignore")})
            return
        await self.app(scope, receive, send)


__all__ = ["Edge", "InternalError", "answer_for", "send_error"]
