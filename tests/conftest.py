"""Fixtures shared by the whole suite: devices, and torch only where it is installed."""

from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import settings

# Property-based tests are derandomized, so every run (and CI) tries the same examples; set
# HYPOTHESIS_PROFILE=explore to search with fresh random examples (and more of them).
settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

HAS_TORCH = importlib.util.find_spec("torch") is not None
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
