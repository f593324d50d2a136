"""``fkj bench NAME [ARGS…]``: runs a benchmark from the repository's ``benchmarks/``."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import typer


def _benchmarks_dir() -> Path:
    for candidate in (Path.cwd() / "benchmarks",
                      Path(__file__).resolve().parents[3] / "benchmarks"):
        if candidate.is_dir():
            return candidate
    raise typer.BadParameter("benchmarks/ not found: run from a checkout of the repository")


def bench(ctx: typer.Context,
          name: str = typer.Argument(..., help="store | search | bulk | auth | policy")) -> None:
    """Run a benchmark and print its figures; further arguments (sqlite, postgresql,
    --small …) go to the benchmark."""
    d = _benchmarks_dir()
    script = d / f"bench_{name}.py"
    if not script.exists():
        raise typer.BadParameter(f"no benchmark {name!r} in {d}")
    sys.path.insert(0, str(d))
    sys.argv = [str(script), *[a for a in ctx.args if a != "--"]]
    runpy.run_path(str(script), run_name="__main__")


def register(app: typer.Typer) -> None:
    app.command("bench", help="Run a benchmark (code under benchmarks/).",
                context_settings={"allow_extra_args": True,
                                  "ignore_unknown_options": True})(bench)
