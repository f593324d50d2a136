"""``fkj bench NAME``: runs a benchmark from the repository's ``benchmarks/`` directory."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import typer


def _benchmarks_dir() -> Path:
    for candidate in (Path.cwd() / "benchmarks", Path(__file__).resolve().parents[3] / "benchmarks"):
        if candidate.is_dir():
            return candidate
    raise typer.BadParameter("benchmarks/ not found: run from a checkout of the repository")


def bench(name: str = typer.Argument(..., help="store | search | bulk | events | overview | auth | policy"),
          args: list[str] = typer.Argument(None, help="extra arguments, e.g. sqlite")) -> None:
    """Run a benchmark and print its figures."""
    d = _benchmarks_dir()
    script = d / f"bench_{name}.py"
    if not script.exists():
        raise typer.BadParameter(f"no benchmark {name!r} in {d}")
    sys.path.insert(0, str(d))
    sys.argv = [str(script), *(args or [])]
    runpy.run_path(str(script), run_name="__main__")


def register(app: typer.Typer) -> None:
    app.command("bench", help="Run a benchmark (code under benchmarks/).")(bench)
