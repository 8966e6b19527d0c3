"""User-facing errors: one message naming the field or file:line, the bad value and what is allowed."""
from __future__ import annotations

from typing import Any


class UserError(Exception):
    """A mistake in user input (config, flag, trace file). The CLI prints it without a traceback."""


def format_validation_error(exc: Any, source: str | None = None) -> str:
    """Render a pydantic ValidationError as `source: field.path = value: message` lines."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p is not None)
        value = err.get("input")
        msg = err.get("msg", "invalid")
        ctx = err.get("ctx") or {}
        if "expected" in ctx and "expected" not in msg:
            msg = f"{msg} (allowed: {ctx['expected']})"
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        prefix = f"{source}: " if source else ""
        lines.append(f"{prefix}{loc or '<root>'} = {shown}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
