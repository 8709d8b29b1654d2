"""A sample on a CUDA device cannot cross from a worker (a forked worker cannot initialise CUDA); a meta
tensor can (torch sends its shape and dtype). The CUDA case runs where a GPU is present."""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

CROSSES = "map_dataset.samples_cross_process_boundary"

pytestmark = pytest.mark.clause(CROSSES)


class OnDevice:
    def __init__(self, device: str) -> None:
        self.device = device

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -4 <= index < 4:
            raise IndexError(index)
        return {"x": torch.full((2,), float(index), device=self.device)}


def _crossing(device: str) -> Any:
    report = check(OnDevice(device), MapDataset)
    return next(r for r in report.results if r.check_id == CROSSES)


def test_a_meta_tensor_sample_crosses() -> None:
    assert _crossing("meta").status == "passed"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_a_cuda_sample_fails_naming_the_leaf() -> None:
    result = _crossing("cuda")
    assert result.status == "failed"
    assert "ds[0]['x'] is a tensor on cuda" in result.message
