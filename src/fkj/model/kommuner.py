"""Norwegian municipalities (kommuner) as of 1 January 2024.

Data: ``src/fkj/data/no/kommuner.csv`` - a verbatim copy of the reference file
``kommuner-fylker-2024.csv`` (357 kommuner, 15 fylker); origin in ``data/no/README.md``.
Kommunenummer is 4 digits; the first two are the fylkesnummer.
"""

from __future__ import annotations

import csv
import io
from importlib import resources as _res

__all__ = ["FKJ_MUNICIPALITIES", "FYLKER", "KOMMUNER", "KOMMUNE_FYLKE", "check_kommunenummer"]


def _read() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    text = _res.files("fkj").joinpath("data", "no", "kommuner.csv").read_text(encoding="utf-8")
    kommuner: dict[str, str] = {}
    fylker: dict[str, str] = {}
    kommune_fylke: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(text)):
        nr = row["kommunenummer"].strip()
        kommuner[nr] = row["kommunenavn"].strip()
        fylker[row["fylkesnummer"].strip()] = row["fylkesnavn"].strip()
        kommune_fylke[nr] = row["fylkesnummer"].strip()
    return kommuner, fylker, kommune_fylke


KOMMUNER, FYLKER, KOMMUNE_FYLKE = _read()
"""kommunenummer -> kommunenavn; fylkesnummer -> fylkesnavn; kommunenummer -> fylkesnummer"""

# The FKJ collaboration municipalities, numbers as in the 2024 list.
FKJ_MUNICIPALITIES: dict[str, str] = {
    nr: KOMMUNER[nr]
    for nr in ("4601", "1804", "3201", "5603", "4204", "3411", "1103", "4036")
}


def check_kommunenummer(nr: str) -> str | None:
    """None if *nr* is a valid 2024 kommunenummer, else the reason."""
    if not isinstance(nr, str) or len(nr) != 4 or not nr.isascii() or not nr.isdigit():
        return "kommunenummer must be exactly 4 digits"
    if nr not in KOMMUNER:
        return f"{nr} is not a kommunenummer in the 2024 list"
    return None
