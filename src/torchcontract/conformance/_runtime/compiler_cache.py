"""What ``torch.compile`` and ``torch.export`` leave behind, put back as it was.

Whatever the backend (``"aot_eager"`` and ``"eager"`` compile nothing to disk), torch creates its
inductor cache directory when it compiles or exports (``torch._inductor.runtime.cache_dir_utils.cache_dir``,
called by ``torch.compile`` and at the import of ``torch._dynamo.package``): ``torchinductor_<user>`` in
the temporary directory, or ``$TORCHINDUCTOR_CACHE_DIR``, which it also sets in ``os.environ``. The
clauses that compile or export (``compile=True``, ``export=True``) run within :func:`left_as_found`:
afterwards the variable is as it was, and the directory is removed when the block created it and left
it empty (with only empty directories in it). A cache directory that existed before, or that holds
anything, is the user's or torch's, and is never touched.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["left_as_found"]

_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def _cache_directory() -> Path:
    """Where torch would put its inductor cache now, without creating it: the path of
    ``torch/_inductor/runtime/cache_dir_utils.py``'s ``cache_dir()``, computed as it does (importing
    that module imports ``torch._inductor``, which creates the directory). Should torch ever put it
    elsewhere, this names a directory torch never creates, and nothing is removed."""
    configured = os.environ.get(_VARIABLE)
    if configured is None:
        try:
            user = getpass.getuser()
        except (KeyError, ModuleNotFoundError, OSError):
            getuid = getattr(os, "getuid", None)
            user = f"uid_{getuid()}" if callable(getuid) else "unknown_user"
        configured = os.path.join(
            tempfile.gettempdir(), "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user)
        )
    return Path(os.path.abspath(configured))


def _remove_if_empty(directory: Path) -> None:
    """Remove ``directory`` if it holds nothing but empty directories (bottom-up; never a file)."""
    for root, _, _ in sorted(os.walk(directory), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):  # not empty (or gone): left as it is
            os.rmdir(root)


@contextlib.contextmanager
def left_as_found(active: bool = True) -> Iterator[None]:
    """Within the block, torch may compile or export; afterwards its cache directory and
    ``$TORCHINDUCTOR_CACHE_DIR`` are as they were (see the module docstring). A no-op unless
    ``active``."""
    if not active:
        yield
        return
    variable = os.environ.get(_VARIABLE)
    directory = _cache_directory()
    existed = os.path.lexists(directory)
    try:
        yield
    finally:
        if variable is None:
            os.environ.pop(_VARIABLE, None)
        else:
            os.environ[_VARIABLE] = variable
        if not existed and directory.is_dir() and not directory.is_symlink():
            _remove_if_empty(directory)
