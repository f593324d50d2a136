"""Per-tenant configuration of the overview's sources, and the adapters built from it.

Configuration, first found wins:

1. tenant settings ``fkj.store.tenants.tenant_settings(engine, tenant)["sources"]``;
2. environment ``FKJ_SOURCES``: JSON, either a list (every tenant) or an object
   ``{"<tenant>": [...], "*": [...]}``.

Each source is ``{"name": "kjernejournal"|"pll"|"provesvar"|…, "base_url": …,
"token_url": … (default base_url + "/token"), "client_id": …, "client_secret": …,
"timeout_ms": 700, "retries": 1, "cache_ttl_s": 10, "breaker_threshold": 3,
"breaker_reset_s": 10, "types": [...] (default: the service's types), "enabled": true}``.
The overview's total budget: tenant setting ``overview_budget_ms`` or env
``FKJ_OVERVIEW_BUDGET_MS`` (default 800).

Adapters are kept per configuration (same config → same adapter, so circuit breaker, token
and cache survive between requests; a changed config builds a new adapter).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import orjson

from fkj.sources.fhir_adapter import AdapterConfig, FhirSourceAdapter

DEFAULT_BUDGET_MS = 800


class ViewsRegistry:
    def __init__(self, engine, *, max_workers: int = 32):
        self.engine = engine
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fkj-source")
        self._adapters: dict[bytes, FhirSourceAdapter] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ configuration
    def _tenant_settings(self, tenant: str) -> dict:
        from fkj.errors import NotFound
        from fkj.store.tenants import tenant_settings
        try:
            return tenant_settings(self.engine, tenant) or {}
        except NotFound:
            return {}

    def config_for(self, tenant: str) -> tuple[list[dict], int]:
        settings = self._tenant_settings(tenant)
        sources = settings.get("sources")
        if sources is None:
            raw = os.environ.get("FKJ_SOURCES")
            if raw:
                parsed = orjson.loads(raw)
                sources = parsed if isinstance(parsed, list) else \
                    parsed.get(tenant, parsed.get("*", []))
        budget = settings.get("overview_budget_ms") or \
            os.environ.get("FKJ_OVERVIEW_BUDGET_MS") or DEFAULT_BUDGET_MS
        return [s for s in (sources or []) if s.get("enabled", True)], int(budget)

    def sources_for(self, tenant: str) -> tuple[list[FhirSourceAdapter], int]:
        configs, budget = self.config_for(tenant)
        out = []
        for c in configs:
            key = orjson.dumps(c, option=orjson.OPT_SORT_KEYS)
            adapter = self._adapters.get(key)
            if adapter is None:
                with self._lock:
                    adapter = self._adapters.get(key)
                    if adapter is None:
                        adapter = self._adapters[key] = FhirSourceAdapter(
                            AdapterConfig.from_dict(c))
            out.append(adapter)
        return out, budget

    def close(self) -> None:
        for a in self._adapters.values():
            a.close()
        self._adapters.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
