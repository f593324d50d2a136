"""Builds the ASGI application from its parts: settings → engine → services → routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fkj.config import Settings
from fkj.edge import Edge, check_json
from fkj.errors import (
    BadRequest,
    FhirError,
    Issue,
    NotAcceptable,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from fkj.fhir.jsonio import parse_body
from fkj.fhir.outcomes import operation_outcome, outcome_for
from fkj.fhir.request import FhirRequest, FhirResponse
from fkj.repository.repository import Repository
from fkj.repository.services import Services
from fkj.store.cancel import run_in_thread
from fkj.store.engine import make_engine
from fkj.store.faults import fault_for
from fkj.types import Principal

log = logging.getLogger("fkj")
FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json-patch+json",
              "text/json")
ACCEPTABLE = ("application/fhir+json", "application/json", "application/*", "*/*", "json",
              "text/json", "application/json-patch+json")


@dataclass
class FkjApp:
    settings: Settings
    services: Services
    #: ``authenticate(request_headers, tenant) -> Principal``; replaced by the security layer
    authenticate: Callable[[dict, str], Principal] | None = None
    capability_hooks: list[Callable[[dict, str], None]] = field(default_factory=list)
    extra_routes: list[Any] = field(default_factory=list)
    #: ``after_response(fkj, request, principal_or_none, response, error_or_none)``: runs in
    #: the worker thread after a FHIR request was handled and before its response is sent;
    #: an exception raised here replaces the response (a read whose audit cannot be written
    #: fails)
    after_response: list[Callable[..., None]] = field(default_factory=list)
    #: people offered on the demo login pages, per tenant (see fkj.seed)
    directory: Callable[[str], list[dict]] = field(default=lambda tenant: [])

    def close(self) -> None:
        """Stop the background threads this app started on its database (event delivery,
        NATS bridge, views, statistics watcher, audit writer — the audit writer last, as the
        others may still write audit records while they stop)."""
        extras = self.services.extras
        for name in ("events", "events_nats", "views", "statistics_watcher", "audit_writer"):
            part = extras.get(name)
            stop = getattr(part, "stop", None) or getattr(part, "close", None)
            if stop is not None:
                stop()

    def principal_for(self, headers: dict, tenant: str) -> Principal:
        if self.authenticate is not None:
            return self.authenticate(headers, tenant)
        return Principal.system(tenant, subject="unauthenticated-dev")

    def authenticate_request(self, tenant: str, segments: list[str], headers: dict) -> Principal:
        """Who is calling: unknown tenant → 404, then the token (401/403). Runs before the
        body is read, so an anonymous caller cannot make the server parse anything."""
        self.services.tenants.get(tenant)
        if segments == ["metadata"]:  # public: no clinical data
            return Principal(kind="client", subject="anonymous", tenant=tenant)
        return self.principal_for(headers, tenant)

    def handle(self, req: FhirRequest, principal: Principal | None = None,
               pending: list | None = None) -> FhirResponse:
        """Run one FHIR request to completion (called in a worker thread).

        An after-response hook may return a ``concurrent.futures.Future`` (the audit log's
        commit): with ``pending`` given, the futures are appended there for the caller to
        await before it answers; otherwise they are waited for here."""
        from fkj.fhir.router import dispatch

        response, error = None, None
        try:
            if principal is None:
                principal = self.authenticate_request(req.tenant, req.segments, req.headers)
            repo = Repository(self.services, principal, req.tenant)
            response = dispatch(req, repo, self)
        except FhirError as e:
            error, response = e, outcome_for(e)
        except Exception as e:
            fault = fault_for(e)  # the database cannot be reached, the disk is full
            if fault is None:
                raise
            _log_fault(req, fault, e)
            error, response = fault, outcome_for(fault)
        try:
            for hook in self.after_response:
                fut = hook(self, req, principal, response, error)
                if fut is None:
                    continue
                if pending is not None:
                    pending.append(fut)
                else:
                    wait_hook(fut)
        except FhirError as e:
            return outcome_for(e)
        return response


def wait_hook(fut, timeout: float = 30.0) -> None:
    """Wait for an after-response hook's future; its failure fails the request (503)."""
    try:
        fut.result(timeout=timeout)
    except FhirError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ServiceUnavailable(f"the access could not be recorded in the audit log: {e}") \
            from e


async def await_hooks(pending: list, timeout: float = 30.0) -> None:
    import asyncio
    for fut in pending:
        try:
            if fut.done():  # committed in this thread already: no trip through the loop
                fut.result()
            else:
                await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except FhirError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ServiceUnavailable(
                f"the access could not be recorded in the audit log: {e}") from e


def build_fkj(settings: Settings | None = None, engine=None) -> FkjApp:
    settings = settings or Settings()
    engine = engine or make_engine(settings.database_url)
    services = Services(engine=engine, settings=settings, indexing=settings.indexing)
    return FkjApp(settings=settings, services=services)


def _negotiate(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if not any(a in fmt for a in ("json",)):
            raise NotAcceptable(f"_format {fmt!r} is not supported; this server speaks JSON "
                                "(application/fhir+json)")
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ACCEPTABLE or media.endswith("+json"):
            return
    raise NotAcceptable(f"cannot produce {accept!r}; this server speaks application/fhir+json")


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def to_response(resp: FhirResponse, pretty: bool = False) -> Response:
    body = resp.body
    if body is None:
        content = b""
    elif isinstance(body, bytes):
        content = body
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)
    headers = dict(resp.headers)
    if resp.status in (204, 304):
        return Response(status_code=resp.status, headers=headers)
    return Response(content, status_code=resp.status, headers=headers, media_type=FHIR_JSON)


def create_app(fkj: FkjApp) -> Starlette:
    settings = fkj.settings

    async def fhir_endpoint(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        path = request.path_params.get("path", "")
        segments = [s for s in path.split("/") if s]
        headers = {k.lower(): v for k, v in request.headers.items()}
        principal = None  # known once the token is verified: a later refusal names it
        try:
            try:
                principal = fkj.authenticate_request(tenant, segments, headers)
                _negotiate(request)
                body = None
                raw = b""
                if request.method in ("POST", "PUT", "PATCH"):
                    # a form body is checked by the edge (fkj.edge) as it is read here
                    raw = await _read_body(request, settings.max_body_bytes)
                    ctype = request.headers.get("content-type", "application/fhir+json")
                    media = ctype.split(";")[0].strip().lower()
                    if media == "application/x-www-form-urlencoded" and \
                            path.endswith("_search"):
                        body = None
                    elif media not in JSON_TYPES and not media.endswith("+json"):
                        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported; "
                                                   "send application/fhir+json")
                    elif raw.strip() or request.method != "POST" or \
                            not path.endswith("_search"):
                        body = parse_body(raw, max_bytes=settings.max_body_bytes,
                                          max_depth=settings.max_json_depth)
                        check_json(raw, body)
                query = list(request.query_params.multi_items())
                if path.endswith("_search") and request.method == "POST" and raw and \
                        body is None:
                    from urllib.parse import parse_qsl
                    try:
                        query += parse_qsl(raw.decode(), keep_blank_values=True,
                                           strict_parsing=False)
                    except UnicodeDecodeError:
                        raise BadRequest("the form body is not UTF-8") from None
                req = FhirRequest(request.method, tenant, segments, query, headers, body)
            except FhirError:
                raise
            except Exception as e:
                # the token's revocation check or the tenant lookup could not reach the
                # database: answered (and audited) like any refusal
                fault = fault_for(e)
                if fault is None:
                    raise
                log.warning("%s %s: %s (%s)", request.method, request.url.path,
                            fault.diagnostics, e.__class__.__name__)
                raise fault from e
        except FhirError as e:
            resp = outcome_for(e)
            if fkj.after_response:  # refusals before dispatch (401, 403, 415 …) are audited
                failed = FhirRequest(request.method, tenant, segments,
                                     list(request.query_params.multi_items()), headers, None)
                resp = await run_in_threadpool(_after_refusal, fkj, failed, e, resp,
                                               principal)
            return to_response(resp)
        if _is_point_read(req):
            # a primary-key lookup costs less than the hop to a worker thread; the audit
            # record's commit is awaited without blocking the event loop
            pending: list = []
            resp = _safe_handle(fkj, req, principal, pending)
            if pending:
                try:
                    await await_hooks(pending)
                except FhirError as e:
                    resp = outcome_for(e)
        else:
            # a read's searches stop when its client goes away (fkj.store.cancel)
            resp = await run_in_thread(request, _safe_handle, fkj, req, principal)
        if request.method == "HEAD":
            resp.body = None
        return to_response(resp, pretty=request.query_params.get("_pretty") == "true")

    async def openapi(request: Request) -> Response:
        from fkj.fhir.openapi import openapi_document
        return JSONResponse(openapi_document(fkj))

    async def root(request: Request) -> Response:
        from fkj.web.pages import landing
        return await landing(request, fkj)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
    routes = [
        Route("/", root),
        Route("/openapi.json", openapi),
        Route("/fhir/{tenant}", fhir_endpoint, methods=methods),
        *fkj.extra_routes,
        Route("/fhir/{tenant}/{path:path}", fhir_endpoint, methods=methods),
    ]
    async def http_error(request: Request, exc) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return to_response(FhirResponse(exc.status_code, operation_outcome(
            [Issue("error", code, f"{request.method} {request.url.path}: {exc.detail}")])))

    # every route, extra_routes included, sits behind the edge: request hygiene,
    # Cache-Control: no-store, and faults and bugs answered as OperationOutcomes (fkj.edge)
    app = Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error},
                    middleware=[Middleware(Edge, max_form_bytes=settings.max_body_bytes)])
    app.state.fkj = fkj
    return app


def _is_point_read(req: FhirRequest) -> bool:
    s = req.segments
    return (req.method == "GET" and not req.query and
            (len(s) == 2 or (len(s) == 4 and s[2] == "_history"))
            and not s[1].startswith(("$", "_")))


def _after_refusal(fkj: FkjApp, req: FhirRequest, error: FhirError,
                   resp: FhirResponse, principal: Principal | None = None) -> FhirResponse:
    """Run the after-response hooks for a request refused before dispatch (``principal``:
    the caller, if its token was verified before the refusal — a 406, 413, 415 or bad body
    of an authenticated caller is recorded as hers); an unknown tenant has no log to
    write to."""
    from fkj.errors import NotFound
    try:
        fkj.services.tenants.get(req.tenant)
    except NotFound:
        return resp
    except Exception as e:
        if fault_for(e) is None:
            raise
        return resp  # the database cannot confirm the tenant: the refusal (503) stands
    try:
        for hook in fkj.after_response:
            fut = hook(fkj, req, principal, resp, error)
            if fut is not None:
                wait_hook(fut)
    except FhirError as e:
        return outcome_for(e)
    except Exception as e:
        fault = fault_for(e)
        if fault is not None:
            return outcome_for(fault)
        log.exception("after-response hook failed on a refused request")
        return outcome_for(ServiceUnavailable("the refused request could not be audited"))
    return resp


def _safe_handle(fkj: FkjApp, req: FhirRequest, principal: Principal | None = None,
                 pending: list | None = None) -> FhirResponse:
    try:
        return fkj.handle(req, principal, pending)
    except Exception as e:
        fault = fault_for(e)  # raised by an after-response hook (handle maps the others)
        if fault is not None:
            _log_fault(req, fault, e)
            return outcome_for(fault)
        # a bug: log it, answer with an OperationOutcome, never a bare 500 page
        log.exception("unhandled error on %s %s", req.method, "/".join(req.segments))
        return FhirResponse(500, operation_outcome(
            [Issue("fatal", "exception", "internal error; it has been logged")]))


def _log_fault(req: FhirRequest, fault: FhirError, exc: BaseException) -> None:
    """One line per fault (not a traceback: a database that is down fails every request)."""
    text = str(getattr(exc, "orig", None) or exc).splitlines()
    log.warning("%s %s: %s (%s: %s)", req.method, "/".join(req.segments), fault.diagnostics,
                type(exc).__name__, text[0][:300] if text else "")
