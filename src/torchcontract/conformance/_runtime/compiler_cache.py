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
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["left_as_found", "recompilations_undone"]

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


@contextlib.contextmanager
def recompilations_undone() -> Iterator[None]:
    """Within the block, code compiled with ``torch.compile`` (a compiled target, or a compiled function
    its forward calls) may be called in ways its user never calls it: deep copies, train and eval mode,
    float64, the meta device. TorchDynamo adds an entry to the cache of the code's object for each, and
    once one holds ``recompile_limit`` (8) entries torch runs it eagerly from then on, silently.
    Afterwards every code object that gained entries in the block holds none: it is compiled again at
    its next call, as at its first. Code the block did not compile keeps its entries. Reads TorchDynamo's
    own records (``convert_frame.input_codes`` and ``output_codes``, the code objects it has compiled;
    ``reset_code``, what ``torch._dynamo.reset_code_caches`` calls for each); where a version of torch
    has none of them, nothing is done."""
    before = _cache_entry_counts()
    try:
        yield
    finally:
        after = _cache_entry_counts()
        grown = [code for code, count in after.items() if count > before.get(code, 0)]
        if grown:
            _reset_codes(grown)


def _dynamo_records() -> tuple[Any, Any, Any] | None:
    """TorchDynamo's convert_frame module, its eval_frame module and reset_code, if torch._dynamo was
    imported (nothing was compiled otherwise) and this version of torch has them."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is None:
        return None
    try:
        from torch._C._dynamo.eval_frame import reset_code
        from torch._dynamo import convert_frame, eval_frame
    except ImportError:
        return None
    return convert_frame, eval_frame, reset_code


def _cache_entry_counts() -> dict[Any, int]:
    """{code object: how many compiled entries its cache holds} for every code TorchDynamo has seen."""
    records = _dynamo_records()
    if records is None:
        return {}
    convert_frame, eval_frame, _ = records
    counts: dict[Any, int] = {}
    try:
        for tracker in (convert_frame.input_codes, convert_frame.output_codes):
            for reference in list(tracker.seen):
                code = reference()
                if code is not None:
                    counts[code] = len(eval_frame._debug_get_cache_entry_list(code))
    except Exception:  # another version's records: nothing to compare
        return {}
    return counts


def _reset_codes(codes: list[Any]) -> None:
    records = _dynamo_records()
    if records is None:
        return
    convert_frame, _, reset_code = records
    lock = getattr(convert_frame, "compile_lock", contextlib.nullcontext())
    with lock:
        for code in codes:
            with contextlib.suppress(Exception):
                reset_code(code)
