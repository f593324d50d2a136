"""Small helpers every part of the authorisation server shares."""

from __future__ import annotations

import hashlib
import re
from typing import Final

#: a tenant is a four-digit municipality number
TENANT_RE: Final = re.compile(r"^[0-9]{4}$")


def sha256_hex(value: str) -> str:
    """How codes and refresh tokens are stored: only their SHA-256, never the value.

    >>> sha256_hex("abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(value.encode()).hexdigest()
