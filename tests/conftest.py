"""Fixtures shared by the whole suite: devices, and torch only where it is installed."""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import settings

# The `clause` mark: `pytest -k <check id>` selects the tests of that clause (tests/clauses.py).
from tests.clauses import pytest_collection_finish, pytest_collection_modifyitems  # noqa: F401

# Property-based tests are derandomized, so every run (and CI) tries the same examples; set
# HYPOTHESIS_PROFILE=explore to search with fresh random examples (and more of them).
settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

HAS_TORCH = importlib.util.find_spec("torch") is not None
if HAS_TORCH:
    # Imported once, up front: pytester's in-process runs restore sys.modules afterwards, and a torch
    # first imported inside one would then be imported a second time, which its C extension cannot
    # survive (SystemError/ValueError from `from torch._C import *`) in whichever test comes next.
    import torch  # noqa: F401
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
NO_TORCH_REASON = "torch is not installed (pip install 'torchcontract[torch]')"
NO_TORCHVISION_REASON = "torchvision is not installed (pip install 'torchcontract[vision]')"


def cuda_available() -> bool:
    if not HAS_TORCH:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> str:
    """Each test that takes ``device`` runs on the CPU and, where one is present, on a CUDA device."""
    name: str = request.param
    if name == "cuda":
        if not HAS_TORCH:
            pytest.skip(f"CUDA tests need torch: {NO_TORCH_REASON}")
        if not cuda_available():
            pytest.skip("no CUDA device on this machine (torch.cuda.is_available() is False)")
    return name


# `nox -s flakes` (tests/flakes.py) sets TORCHCONTRACT_TEST_SEED to a different value in each run: the
# global random generators are seeded with it before every test, and every check whose target gives no
# `seed` of its own samples its indices with it. A verdict that changes with it depends on chance.
_TEST_SEED = os.environ.get("TORCHCONTRACT_TEST_SEED")


@pytest.fixture(autouse=True)
def _seeded_by_the_flake_run(monkeypatch: pytest.MonkeyPatch) -> None:
    if _TEST_SEED is None:
        return
    import random

    import numpy as np

    from torchcontract.conformance._core.options import Options

    seed = int(_TEST_SEED)
    random.seed(seed)
    np.random.seed(seed)
    if HAS_TORCH:
        import torch

        torch.manual_seed(seed)
    original = Options.from_kwargs.__func__  # type: ignore[attr-defined]

    def from_kwargs(cls: type[Options], options: dict[str, object]) -> Options:
        return original(cls, {"seed": seed, **options})  # type: ignore[no-any-return]

    monkeypatch.setattr(Options, "from_kwargs", classmethod(from_kwargs))


@pytest.fixture(scope="session")
def _dynamo_loaded_before_pytester_snapshots() -> None:
    """The same for torch._dynamo, which only some tests load (it takes two seconds): a module that
    registers operators with torch's C++ library at import cannot run twice (torch._dynamo.trace_rules
    imports torch._inductor.test_operators: "Only a single TORCH_LIBRARY can be used to register the
    namespace _inductor_test"), and a later in-process run's meta-device probe then fails with it."""
    if HAS_TORCH:
        import torch._dynamo  # noqa: F401


@pytest.fixture
def pytester(_dynamo_loaded_before_pytester_snapshots: None, pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester, created (and its sys.modules snapshot taken) after torch._dynamo is loaded."""
    return pytester


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt in this process, as in a terminal's Python, for the test:
    a runner that starts the tests as a background job of a shell ignores SIGINT, and Python then
    leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
