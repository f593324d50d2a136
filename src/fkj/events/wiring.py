"""``register_events(fkj)``: installs the event side on an app — the Subscription hooks
(delivery state, write-only headers, and who may see a Subscription: its owner and the
tenant's admins, :mod:`fkj.events.access`), the wake-up of the delivery workers after each
commit, the websocket route, the operations' worker handle, and (with ``FKJ_NATS_URL``) the
NATS JetStream bridge. Idempotent."""

from __future__ import annotations

from fkj.events.delivery import DeliveryWorker, EventConfig


def register_events(fkj, config: EventConfig | None = None, *, start: bool | None = None):
    extras = fkj.services.extras
    if "events" in extras:
        return extras["events"]
    from fkj.events import access, subscriptions
    from fkj.events.websocket import websocket_route

    cfg = config or EventConfig()
    worker = DeliveryWorker(fkj.services, fkj.settings.base_url, cfg)
    extras["events"] = worker
    hooks = fkj.services.hooks
    hooks.prepare.append(subscriptions.prepare)
    hooks.before_commit.append(subscriptions.before_commit)
    # a rule of its own beside the need-to-know policy, in both its forms (Python, SQL)
    hooks.authorize.append(access.authorize)
    hooks.check_result.append(access.check_result)
    hooks.search_filters.append(access.search_filter)
    hooks.after_commit.append(worker.wake)
    fkj.extra_routes.append(websocket_route(fkj, worker))
    fkj.capability_hooks.append(_capability)
    bridge = None
    if cfg.nats_url:
        from fkj.events.nats_bridge import NatsBridge
        bridge = NatsBridge(fkj.services, cfg)
        extras["events_nats"] = bridge
        hooks.after_commit.append(bridge.wake)
    if cfg.start if start is None else start:
        worker.start()
        if bridge is not None:
            bridge.start()
    return worker


def _capability(rest: dict, tenant: str) -> None:
    from fkj.events.topics import TOPICS
    rest.setdefault("extension", []).extend(
        {"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                "capabilitystatement-subscriptiontopic-canonical", "valueCanonical": url}
        for url in TOPICS)
