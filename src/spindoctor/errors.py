"""Error types shared by the library and the CLI.

A :class:`UserError` is bad input (a missing file, an unknown option value, a
checkpoint that is not one). It is a ``ValueError``: library code raises
``ValueError`` / ``TypeError`` naming the parameter at fault, and the CLI
prints the message on one line to stderr and exits with code 2, without a
traceback (docs/design.md, "CLI contract"). Any other exception is an internal
failure and exits with code 1.
"""

from __future__ import annotations

import sys
from typing import Any


class UserError(ValueError):
    """Bad input from the user; the message is one line saying what is wrong."""


def first_error(exc: Any) -> tuple[str, str]:
    """``(location, message)`` of the first error of a pydantic ``ValidationError``;
    the location is the dotted field path (empty for a model-level check)."""
    first = exc.errors()[0]
    return ".".join(str(part) for part in first.get("loc", ())), str(first.get("msg", "invalid"))


def one_line_warnings(show: Any, category: type[Warning]) -> Any:
    """A ``warnings.showwarning`` that prints warnings of ``category`` as one ``warning: <message>``
    line on stderr (no source line; docs/design.md, "CLI contract") and hands others to ``show``."""

    def showwarning(message, cat, *args, **kwargs):
        if issubclass(cat, category):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, cat, *args, **kwargs)

    return showwarning
