"""Runtime settings, from arguments or environment variables (``FKJ_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fkj.search.limits import SearchLimits

DEFAULT_DATA_DIR = Path("fkj-data")


def default_database_url() -> str:
    return os.environ.get("FKJ_DATABASE_URL") or f"sqlite:///{DEFAULT_DATA_DIR / 'fkj.sqlite'}"


@dataclass
class Settings:
    database_url: str = field(default_factory=default_database_url)
    #: public base URL of the server (used in Bundle links, token audiences)
    base_url: str = field(default_factory=lambda: os.environ.get("FKJ_BASE_URL", "http://127.0.0.1:8080"))
    demo: bool = field(default_factory=lambda: os.environ.get("FKJ_DEMO", "") == "1")
    max_body_bytes: int = 10 * 1024 * 1024
    max_json_depth: int = 64
    default_page_size: int = 50
    max_page_size: int = 1000
    #: authentication switched off (only for benchmarks measuring its cost, and the store tests
    #: that predate the security layer); never in production
    auth_enabled: bool = field(default_factory=lambda: not (
        os.environ.get("FKJ_AUTH_DISABLED") == "1" and os.environ.get("FKJ_DEMO") == "1"))
    #: search indexing at write time; switched off only to measure its cost (FKJ_INDEXING=0)
    indexing: bool = field(default_factory=lambda: os.environ.get("FKJ_INDEXING", "1") != "0")
    #: what one search may cost: parameter counts and the statement timeout
    #: (FKJ_SEARCH_*, see fkj.search.limits)
    search_limits: SearchLimits = field(default_factory=SearchLimits.from_env)
    #: trusted external token issuers (JSON list), see fkj.security
    trusted_issuers: str = field(default_factory=lambda: os.environ.get("FKJ_TRUSTED_ISSUERS", "[]"))

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")
