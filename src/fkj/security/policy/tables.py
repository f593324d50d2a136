"""Tables of the access policy: emergency accesses (akuttilgang / break-the-glass)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from fkj.store.schema import BigId, metadata

#: one row per emergency access: who (agent = HPR number, else token subject) opened which
#: patient, why, from when until when (microseconds since the epoch, like the store)
emergency_access = Table(
    "emergency_access", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tenant", String(4), nullable=False),
    Column("agent", String(200), nullable=False),
    Column("fhir_user", String(200), nullable=True),
    Column("unit", String(200), nullable=True),
    Column("roles", String(400), nullable=False, default=""),
    Column("patient", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("started", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Index("ix_emergency_access_agent", "tenant", "agent", "patient", "expires"),
    Index("ix_emergency_access_started", "tenant", "started"),
)

#: per tenant, a counter bumped by every write that can change an access decision (care
#: relations, blocks, grants …); cached decision contexts are valid only for the epoch they
#: were built in (see fkj.security.policy.cache)
policy_epoch = Table(
    "policy_epoch", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("epoch", BigInteger, nullable=False, default=0),
)
