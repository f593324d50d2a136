"""Tables of the event side (SQLAlchemy Core) on the shared :data:`metadata`.

All are tenant-scoped (row-level security on PostgreSQL, migration 0008). Times are integers,
microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from fkj.store.schema import metadata

#: one row per Subscription resource: its parsed configuration and delivery state. A
#: dispatcher claims rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL), matches new
#: events and leases the deliveries, so several server processes deliver each notification
#: once per subscription.
subscription_state = Table(
    "subscription_state", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("topic", Text, nullable=False),
    #: JSON list of [resourceType or null, [[name, value], …]]
    Column("filters", Text, nullable=False),
    #: rest-hook | websocket
    Column("channel", String(16), nullable=False),
    Column("endpoint", Text, nullable=True),
    #: JSON list of "Name: value" strings (Subscription.channel.header)
    Column("headers", Text, nullable=False),
    #: empty | id-only | full-resource
    Column("content", String(16), nullable=False),
    Column("heartbeat", Integer, nullable=False),
    Column("timeout", Integer, nullable=False),
    Column("max_count", Integer, nullable=False),
    #: requested | active | error | off
    Column("status", String(16), nullable=False),
    #: the owner's Principal (JSON): matching and full-resource payloads use its rights
    Column("owner", Text, nullable=False),
    #: last event_log seq examined for this subscription
    Column("matched_seq", BigInteger, nullable=False),
    #: notifications matched so far (= events-since-subscription-start, last event-number)
    Column("event_count", BigInteger, nullable=False),
    #: last event-number acknowledged by the endpoint (2xx) or written to the websocket
    Column("delivered", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("next_attempt", BigInteger, nullable=False),
    Column("last_sent", BigInteger, nullable=False),
    #: the lease of the delivery in flight (one per subscription): who holds it and until
    #: when. Claimed under the row lock; a crashed holder's lease expires and another
    #: process redelivers (at-least-once)
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=False, default=0, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("end_time", BigInteger, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

#: the notifications matched for a subscription, numbered 1, 2, 3 … (the event-number):
#: what is sent, and what ``$events`` replays
subscription_event = Table(
    "subscription_event", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("sub_id", String(64), primary_key=True),
    Column("number", BigInteger, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("rid", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", String(8), nullable=False),
    Column("time", BigInteger, nullable=False),
)

#: tokens handed out by ``$get-ws-binding-token``
ws_binding_token = Table(
    "ws_binding_token", metadata,
    Column("token", String(64), primary_key=True),
    Column("tenant", String(4), nullable=False),
    #: JSON list of Subscription ids
    Column("subscriptions", Text, nullable=False),
    Column("expires", BigInteger, nullable=False),
    #: the Principal (JSON) the token was issued to: the owner of the subscriptions, who
    #: receives — and is audited for — what the socket is sent (migration 0014)
    Column("principal", Text, nullable=True),
    Index("ix_ws_binding_token_tenant", "tenant"),
)

#: how far each outbound bridge (e.g. ``nats``) has published a tenant's event log
event_outbox = Table(
    "event_outbox", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

TABLES = ("subscription_state", "subscription_event", "ws_binding_token", "event_outbox")
