"""Warnings on the command line: one line ``giblet-store: warning: <message>``, never a source line."""

from __future__ import annotations

import sys
import warnings

__all__ = ["plain_warnings", "format_warning"]


def format_warning(message) -> str:
    """The line a warning prints as on the command line."""
    return f"giblet-store: warning: {message}"


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    print(format_warning(message), file=sys.stderr if file is None else file)


def plain_warnings() -> None:
    """Inside ``warnings.catch_warnings()``: show each warning once as :func:`format_warning` on stderr.

    Every warning is shown (``always``, so a test's ``error`` filter does not turn a CLI warning into
    a failure), but third-party deprecations stay hidden.
    """
    warnings.simplefilter("always")
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.simplefilter("ignore", category)
    warnings.showwarning = _show
