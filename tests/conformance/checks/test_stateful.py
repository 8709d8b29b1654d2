"""Resumable loading (SPEC.md, "Stateful"): correct objects pass, through the API and the CLI."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import check
from torchcontract.protocols import Stateful
from torchcontract.reference_impl import DataLoader, RandomSampler, SequentialSampler, StreamDataset

from ...conftest import HAS_TORCH, NO_TORCH_REASON
from ..mutants.stateful import Resumable

DATA = [np.full(3, i) for i in range(23)]
NEXT_EPOCH = "stateful.resume_then_same_next_epoch"
# Measured with torchdata 0.11.0: the loader's generator is not restored to where the uninterrupted run
# left it (the base seed drawn at iter() is not replayed), so the epoch after a resume is a different
# permutation. The resumed epoch itself is exact.
TORCHDATA_NEXT_EPOCH = (
    "torchdata 0.11.0: a single-process shuffled StatefulDataLoader resumes its epoch exactly, but the "
    "epoch after it differs from the uninterrupted run's"
)

CORRECT: list[Any] = [
    pytest.param(lambda: DataLoader(DATA, batch_size=4), id="reference-sequential"),
    pytest.param(lambda: DataLoader(DATA, batch_size=4, shuffle=True, seed=1), id="reference-shuffled"),
    pytest.param(lambda: DataLoader(DATA, batch_size=None, shuffle=True, seed=2), id="reference-unbatched"),
    pytest.param(lambda: DataLoader(DATA, batch_size=4, drop_last=True), id="reference-drop-last"),
    pytest.param(lambda: DataLoader(StreamDataset(DATA), batch_size=5), id="reference-stream"),
    pytest.param(lambda: RandomSampler(10, seed=3), id="reference-random-sampler"),
    pytest.param(lambda: SequentialSampler(7), id="reference-sequential-sampler"),
    pytest.param(Resumable, id="plain-resumable"),
]


def _assert_passes(obj: object, **kwargs: Any) -> None:
    report = check(obj, Stateful, **kwargs)
    bad = [r.check_id for r in report.results if r.status in ("failed", "error", "unverified", "xpassed")]
    assert report.passed, str(report)
    assert bad == [], str(report)


@pytest.mark.parametrize("factory", CORRECT)
def test_correct_objects_pass(factory: Any) -> None:
    _assert_passes(factory())


def test_the_reference_loader_is_stateful() -> None:
    assert isinstance(DataLoader(DATA), Stateful)
    assert isinstance(RandomSampler(3), Stateful)
    assert not isinstance(iter(DATA), Stateful)


def test_the_factory_option_builds_the_fresh_instances() -> None:
    built: list[object] = []

    def factory() -> DataLoader:
        built.append(loader := DataLoader(DATA, batch_size=4, shuffle=True, seed=5))
        return loader

    _assert_passes(factory(), factory=factory)
    assert len(built) > 10


def test_a_non_stateful_object_fails_without_internal_errors() -> None:
    report = check(DataLoader(DATA), Stateful, factory=lambda: [[1], [2]])
    assert not report.passed
    assert all(r.status != "error" for r in report.results), str(report)


def test_reference_resume_replays_the_shuffled_epochs() -> None:
    original = DataLoader(DATA, batch_size=4, shuffle=True, seed=9)
    epochs = [[b.tolist() for b in original] for _ in range(2)]
    source = DataLoader(DATA, batch_size=4, shuffle=True, seed=9)
    it = iter(source)
    [next(it) for _ in range(2)]
    fresh = DataLoader(DATA, batch_size=4, shuffle=True, seed=9)
    fresh.load_state_dict(source.state_dict())
    assert [b.tolist() for b in fresh] == epochs[0][2:]
    assert [b.tolist() for b in fresh] == epochs[1]
    with pytest.raises(KeyError, match="not a state of a DataLoader"):
        fresh.load_state_dict({"torchcontract_foreign_state": 0})


def _torchdata() -> Any:
    if not HAS_TORCH:
        pytest.skip(NO_TORCH_REASON)
    return pytest.importorskip(
        "torchdata.stateful_dataloader",
        reason="torchdata is not installed (the torch 2.14.1 session installs torchdata==0.11.0)",
    )


@pytest.mark.clause(NEXT_EPOCH)
@pytest.mark.parametrize("kind", ["plain", "shuffled", "workers", "shuffled-workers"])
def test_torchdata_stateful_dataloader_passes(kind: str) -> None:
    module = _torchdata()
    import torch

    shuffled = kind.startswith("shuffled")
    loader = module.StatefulDataLoader(
        list(range(23)),
        batch_size=4,
        shuffle=shuffled,
        generator=torch.Generator().manual_seed(0) if shuffled else None,
        num_workers=2 if kind.endswith("workers") else 0,
    )
    expected = {NEXT_EPOCH: TORCHDATA_NEXT_EPOCH} if shuffled else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchdata's deprecation of torch.set_vital
        report = check(loader, Stateful, expected_failures=expected)
    bad = [r.check_id for r in report.results if r.status in ("failed", "error", "unverified", "xpassed")]
    assert report.passed, str(report)
    assert bad == [], str(report)
    if shuffled:
        assert {r.check_id: r.status for r in report.results}[NEXT_EPOCH] == "xfailed", str(report)


class Position:
    """A resume position kept as an object of its own: torch.load(weights_only=True) refuses it."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.state = dict(state)


class PositionAsObject(Resumable):
    def state_dict(self) -> dict[str, Any]:
        return {"position": Position(super().state_dict())}

    def load_state_dict(self, state: Mapping[str, Any], /) -> None:
        super().load_state_dict(state["position"].state)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
def test_an_unportable_state_names_the_leaf_and_torchs_reason_in_plain_text() -> None:
    report = check(PositionAsObject(), Stateful)
    (result,) = [r for r in report.results if r.check_id == "stateful.state_is_portable"]
    assert result.status == "failed", str(report)
    assert "\x1b" not in result.message
    assert result.message.startswith(
        "the state did not survive torch.save / torch.load(weights_only=True): state['position'] = "
    )
    assert "(UnpicklingError: Unsupported global: GLOBAL " in result.message
    assert "Position was not an allowed global by default); expected tensors" in result.message
