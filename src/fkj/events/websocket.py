"""The websocket channel: ``GET ws(s)://…/fhir/{tenant}/subscription-ws``.

The client sends ``bind-with-token: TOKEN`` (a token from ``$get-ws-binding-token``, which
only the subscriptions' owner gets); the server answers with a handshake Bundle per bound
Subscription and then sends notification and heartbeat Bundles as text frames, with
full-resource payloads read and audited as the principal the token was issued to. A
subscription that stops being that principal's (deleted, taken over) is let go. A notification counts as delivered once written to the
socket; what was not delivered when the socket closes is sent after the next bind (and can be
replayed with ``$events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

import anyio.from_thread
import orjson
from sqlalchemy import delete, insert, select
from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from fkj.errors import FhirError
from fkj.events.delivery import NotOwner
from fkj.events.tables import ws_binding_token
from fkj.store.backend import now_us, scope

log = logging.getLogger(__name__)
PATH = "/fhir/{tenant}/subscription-ws"
TOKEN_LIFETIME_S = 300


def websocket_url(base_url: str, tenant: str) -> str:
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return base + PATH.replace("{tenant}", tenant)


def issue_token(engine, tenant: str, sub_ids: list[str], principal) -> tuple[str, int]:
    """A binding token of ``principal`` (the subscriptions' owner) for ``sub_ids``."""
    from fkj.events.subscriptions import principal_json
    token = secrets.token_urlsafe(32)
    expires = now_us() + TOKEN_LIFETIME_S * 1_000_000
    with scope(engine, tenant, write=True) as conn:
        conn.execute(delete(ws_binding_token).where(ws_binding_token.c.tenant == tenant,
                                                    ws_binding_token.c.expires < now_us()))
        conn.execute(insert(ws_binding_token).values(
            token=token, tenant=tenant, subscriptions=orjson.dumps(sub_ids).decode(),
            expires=expires, principal=principal_json(principal)))
    return token, expires


def redeem_token(engine, tenant: str, token: str):
    """(Subscription ids, Principal) of a valid token, else None."""
    from fkj.events.subscriptions import principal_from_json
    with scope(engine, tenant) as conn:
        row = conn.execute(select(ws_binding_token).where(
            ws_binding_token.c.tenant == tenant, ws_binding_token.c.token == token)).first()
    if row is None or row.expires < now_us() or not row.principal:
        return None
    return orjson.loads(row.subscriptions), principal_from_json(row.principal)


def websocket_route(fkj, worker) -> WebSocketRoute:
    engine = fkj.services.engine

    async def endpoint(websocket: WebSocket) -> None:
        tenant = websocket.path_params["tenant"]
        try:
            fkj.services.tenants.get(tenant)
        except FhirError:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        inbox: asyncio.Queue = asyncio.Queue()

        async def reader():
            try:
                while True:
                    await inbox.put(await websocket.receive_text())
            except Exception:  # noqa: BLE001 - disconnect, or a frame that is not text
                await inbox.put(None)

        task = asyncio.create_task(reader())
        bound: dict[str, object] = {}  # Subscription id → the principal that bound it
        seen_matches = -1
        last_poll = 0.0

        def send_sync(text: str) -> None:
            anyio.from_thread.run(websocket.send_text, text)

        def deliver(sid: str) -> bool:
            """False when the subscription is no longer the binder's."""
            try:
                for _ in range(50):  # drain a backlog, a Bundle at a time
                    if not worker.deliver_ws(tenant, sid, send_sync, bound[sid]):
                        break
            except NotOwner:
                return False
            return True

        try:
            while True:
                try:
                    msg = await asyncio.wait_for(inbox.get(), timeout=0.02)
                except TimeoutError:
                    msg = ""
                if msg is None:
                    break
                if msg.startswith("bind-with-token:"):
                    token = msg.split(":", 1)[1].strip()
                    redeemed = await run_in_threadpool(redeem_token, engine, tenant, token)
                    if redeemed is None:
                        await websocket.send_text(_outcome(
                            "security", "unknown or expired binding token"))
                        continue
                    subs, principal = redeemed
                    for sid in subs:
                        if sid in bound:
                            continue
                        hs = await run_in_threadpool(worker.bind, tenant, sid, principal)
                        if hs is not None:
                            await websocket.send_text(orjson.dumps(hs).decode())
                            bound[sid] = principal
                    last_poll = 0.0
                elif msg:
                    await websocket.send_text(_outcome("not-supported",
                                                       "send 'bind-with-token: TOKEN'"))
                # deliver when this process matched something, else poll (other processes'
                # matches, heartbeats)
                now = time.monotonic()
                if bound and (worker.matched_generation != seen_matches
                              or now - last_poll >= worker.config.poll):
                    seen_matches, last_poll = worker.matched_generation, now
                    for sid in list(bound):
                        if not await run_in_threadpool(deliver, sid):
                            del bound[sid]
                            await websocket.send_text(_outcome(
                                "security", f"Subscription/{sid} is no longer bound: it was "
                                "deleted or has another owner"))
        except WebSocketDisconnect:
            pass  # the socket is gone; the rest is sent after a rebind
        except Exception:
            log.exception("websocket channel of tenant %s failed", tenant)
            with contextlib.suppress(Exception):
                await websocket.close(code=1011)
        finally:
            task.cancel()

    return WebSocketRoute(PATH, endpoint)


def _outcome(code: str, text: str) -> str:
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": code, "diagnostics": text}]}).decode()
