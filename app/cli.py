"""`llmsim` entry point: a thin typer app; each command lives in its own `app/cmd_*.py` module.

Every module exposes `register(app: typer.Typer) -> None`. User mistakes raise `UserError` and are
printed as one clear message with exit code 2, never a traceback.
"""
from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

from hwmodels.errors import UserError


class _Group(TyperGroup):
    """Turns a UserError raised by any (sub)command into `error: ...` on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(name="llmsim", help="Simulate, profile, validate and plan LLM serving and training systems.",
                  cls=_Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

# Order is the order of `llmsim --help`. A module not written yet is skipped (and only then).
COMMAND_MODULES = ["cmd_catalog", "cmd_cost", "cmd_simulate", "cmd_profile", "cmd_validate", "cmd_plan",
                   "cmd_train", "cmd_dashboard"]

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"app.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name == f"app.{_name}":
            continue
        raise
    _mod.register(app)


def main() -> None:
    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
