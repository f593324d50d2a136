"""Text normalisation shared by index extraction and search (they must agree)."""

from __future__ import annotations

import unicodedata


def normalise_text(value: str) -> str:
    """Case- and accent-insensitive form: casefold, decompose, drop combining marks.

    >>> normalise_text("Ågård José")
    'agard jose'
    """
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
