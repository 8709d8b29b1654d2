"""Where an exception of the object was raised, as its message says it: the object's own code, never
the suite's.

An exception raised by a built-in (``dict.__getitem__``, ``sum``, a C extension's function) that the
suite called directly has no frame of its own: the innermost frame of its traceback is the suite's
call site, which names no code of the user's. Such an exception is given no location; the call that
raised it (``ds[0]``) already names it.
"""

from __future__ import annotations

import os
import traceback

__all__ = ["raised_at"]

# The suite's own code; the reference implementation, beside it, is an object under check like any other.
_SUITE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def raised_at(error: BaseException) -> str | None:
    """``file:line`` of the innermost frame of ``error``'s traceback, or None where there is none or
    it is the suite's own (the exception came from a built-in the suite called)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    innermost = frames[-1]
    if os.path.abspath(innermost.filename).startswith(_SUITE):
        return None
    return f"{innermost.filename}:{innermost.lineno}"
