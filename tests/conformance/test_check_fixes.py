"""Regression tests for the changes made to the checks while building the mutant corpus.

Each test names the defect it pins: a check that ran into another check's failure (precision), or a
check that changed the object it was checking.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import Report, check
from torchcontract.conformance._values import sample_count
from torchcontract.protocols import CallableModule, CollateFn, Loader, MapDataset, Module, Sampler

from ..conftest import HAS_TORCH, NO_TORCH_REASON
from .correct import (
    MLP,
    BatchLoader,
    EndlessShuffles,
    NoisyPoints,
    NumpyModule,
    Parameter,
    Points,
    mlp_inputs,
    numpy_collate,
)
from .mutants.map_dataset import AugmentsWithoutDeclaring, HoldsLambdaTransform, LenIsFloat
from .mutants.module import DeepcopySharesParameters


def _status(report: Report, check_id: str) -> tuple[str, str]:
    result = next(r for r in report.results if r.check_id == check_id)
    return result.status, result.message


# -- prerequisites are transitive ---------------------------------------------------------------------


def test_a_failed_len_skips_every_check_that_depends_on_it_even_indirectly() -> None:
    # getitem_is_deterministic requires getitem_in_range_succeeds, which requires len_is_non_negative_int.
    # Before the fix only direct prerequisites counted, so a broken __len__ failed four checks.
    report = check(LenIsFloat(), MapDataset)
    failed = [r.check_id for r in report.results if r.status == "failed"]
    assert failed == ["map_dataset.len_is_non_negative_int"]
    status, message = _status(report, "map_dataset.getitem_is_deterministic")
    assert status == "skipped"
    assert message == "not run: prerequisite map_dataset.len_is_non_negative_int failed"


def test_a_prerequisite_skipped_as_not_applicable_does_not_skip_its_dependents() -> None:
    # deterministic=False skips getitem_is_deterministic; the checks that require it still run.
    report = check(NoisyPoints(), MapDataset, deterministic=False)
    assert _status(report, "map_dataset.getitem_is_deterministic")[0] == "skipped"
    assert _status(report, "map_dataset.pickle_round_trip")[0] == "passed"
    assert _status(report, "map_dataset.iteration_matches_indexing")[0] == "passed"


# -- pickle_round_trip requires determinism -----------------------------------------------------------


def test_an_undeclared_random_dataset_fails_determinism_not_pickling() -> None:
    report = check(AugmentsWithoutDeclaring(), MapDataset)
    assert _status(report, "map_dataset.getitem_is_deterministic")[0] == "failed"
    status, message = _status(report, "map_dataset.pickle_round_trip")
    assert (status, message) == (
        "skipped",
        "not run: prerequisite map_dataset.getitem_is_deterministic failed",
    )


def test_pickling_is_still_checked_on_a_declared_random_dataset() -> None:
    class RandomAndUnpicklable(HoldsLambdaTransform, NoisyPoints):
        pass

    report = check(RandomAndUnpicklable(), MapDataset, deterministic=False)
    status, message = _status(report, "map_dataset.pickle_round_trip")
    assert status == "failed"
    assert "pickle.dumps(ds) raised" in message


# -- the reproducer of a NumPy index is an expression, not a quoted string ------------------------------


def test_numpy_index_failure_shows_the_expression() -> None:
    class IntOnly(NoisyPoints):
        def __getitem__(self, index: Any) -> Any:
            if type(index) is not int:
                raise TypeError(f"index must be int, not {type(index).__name__}")
            return super().__getitem__(index)

    status, message = _status(
        check(IntOnly(), MapDataset, deterministic=False), "map_dataset.accepts_numpy_integer_index"
    )
    assert status == "failed"
    assert "reproduce: ds[np.int64(9)]" in message
    assert "'np.int64" not in message


# -- call_preserves_inputs must not change the module -------------------------------------------------


class RunningMean(NumpyModule):
    """Like BatchNorm: in training mode every call updates a running statistic."""

    def __init__(self) -> None:
        super().__init__()
        self.running_mean = np.zeros(3)
        self.scale = Parameter(np.ones(3))

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self.training:
            self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(axis=0)
        return (x - self.running_mean) * self.scale.data


def test_checking_a_module_in_training_mode_leaves_its_running_statistics_alone() -> None:
    module = RunningMean()
    report = check(module, Module, example_inputs=mlp_inputs())
    assert report.passed, report
    assert module.training is True
    assert np.array_equal(module.running_mean, np.zeros(3)), "check() updated the running mean"


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
def test_checking_a_torch_batchnorm_leaves_its_running_statistics_alone() -> None:
    import torch
    from torch import nn

    batchnorm = nn.BatchNorm1d(3)
    before = {name: tensor.clone() for name, tensor in batchnorm.state_dict().items()}
    assert check(batchnorm, Module, example_inputs=(torch.randn(4, 3),)).passed
    after = batchnorm.state_dict()
    changed = [name for name, tensor in before.items() if not torch.equal(tensor, after[name])]
    assert changed == []


class ScalesInputInPlaceWhileTraining:
    """An in-place operation on the input that happens only in training mode."""

    def __init__(self) -> None:
        self.training = True

    def train(self, mode: bool = True) -> ScalesInputInPlaceWhileTraining:
        self.training = mode
        return self

    def eval(self) -> ScalesInputInPlaceWhileTraining:
        return self.train(False)

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self.training:
            x *= 2.0
        return x.sum(axis=-1)

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)


def test_an_in_place_op_that_happens_only_in_training_is_still_caught() -> None:
    # The call runs on a deep copy in the module's own (training) mode, not in eval mode.
    report = check(ScalesInputInPlaceWhileTraining(), CallableModule, example_inputs=mlp_inputs())
    assert _status(report, "callable_module.call_preserves_inputs")[0] == "failed"


def test_a_module_that_cannot_be_copied_is_still_checked_for_in_place_ops() -> None:
    class Uncopyable(ScalesInputInPlaceWhileTraining):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

        def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            x *= 2.0  # in every mode: the eval-mode fallback sees it
            return x.sum(axis=-1)

    module = Uncopyable()
    report = check(module, CallableModule, example_inputs=mlp_inputs())
    assert _status(report, "callable_module.call_preserves_inputs")[0] == "failed"
    assert module.training is True, "the fallback's eval mode was not undone"


# -- deepcopy_is_independent must not leave the original's parameters perturbed -----------------------


def test_a_copy_sharing_parameters_is_reported_and_the_original_left_intact() -> None:
    module = DeepcopySharesParameters()
    before = module.state_dict()
    report = check(module, Module, example_inputs=mlp_inputs())
    assert _status(report, "module.deepcopy_is_independent")[0] == "failed"
    after = module.state_dict()
    assert all(np.array_equal(before[name], after[name]) for name in before), "check() changed m's weights"


def test_the_original_is_restored_even_when_parameter_names_repeat() -> None:
    # Restoring by name would write one layer's weights into another of a different shape.
    class SharesAndRepeatsNames(DeepcopySharesParameters):
        def named_parameters(self) -> Any:
            for _, child in self.named_children():
                yield from child.named_parameters()

    module = SharesAndRepeatsNames()
    weights = [p.data.copy() for p in module.parameters()]
    check(module, Module, example_inputs=mlp_inputs())
    assert all(np.array_equal(w, p.data) for w, p in zip(weights, module.parameters(), strict=True))


def test_an_mlp_is_unchanged_by_check() -> None:
    module = MLP()
    before = module.state_dict()
    assert check(module, Module, example_inputs=mlp_inputs()).passed
    assert all(np.array_equal(before[name], value) for name, value in module.state_dict().items())


# -- the device checks do not import torch to look at a NumPy module ----------------------------------


def test_device_checks_skip_a_numpy_module_without_importing_torch() -> None:
    # Run in a fresh interpreter: here torch may already be imported by another test.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        from tests.conformance.correct import MLP, mlp_inputs
        from torchcontract.conformance import check
        from torchcontract.protocols import Module
        report = check(MLP(), Module, example_inputs=mlp_inputs(), time_budget_s=0.5)
        print(report)
        assert report.passed, "a correct NumPy module failed"
        assert "torch" not in sys.modules, "checking a NumPy module imported torch"
        """
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- a batch that keeps its samples whole is counted by its length ------------------------------------


def test_sample_count_of_a_list_of_samples_is_its_length_given_an_example() -> None:
    samples = [(np.full(3, i, dtype=np.float32), i % 2) for i in range(4)]
    # Without an example, the samples' own leading dimension (3) would be taken for the batch's.
    assert sample_count(samples) == 3
    assert sample_count(samples, like=samples[0]) == 4  # collate_fn=lambda b: b
    assert sample_count(tuple(zip(*samples, strict=True)), like=samples[0]) == 4  # tuple(zip(*b))
    assert sample_count(numpy_collate(samples), like=samples[0]) == 4  # stacked: unchanged
    assert sample_count(numpy_collate(samples[:3]), like=samples[0]) == 3


def test_a_loader_whose_batches_are_lists_of_samples_is_counted_right() -> None:
    # Before the fix: "batches held 9 samples in all (3 batches of sizes 3); expected 10".
    report = check(BatchLoader(Points(10), 4, collate_fn=list), Loader)
    assert _status(report, "loader.batches_cover_dataset")[0] == "passed"
    assert _status(report, "loader.batches_match_collate")[0] == "passed"


def test_a_collate_that_keeps_samples_whole_passes_and_one_that_drops_them_fails() -> None:
    samples = [{"image": np.zeros((2, 2)), "label": i} for i in range(4)]
    assert check(list, CollateFn, example_inputs=samples).passed

    def drops_last(batch: list[Any]) -> list[Any]:
        return batch[:-1]

    report = check(drops_last, CollateFn, example_inputs=samples)
    assert _status(report, "collate_fn.batch_has_one_row_per_sample")[0] == "failed"
    # The structure is intact: only the count is wrong, and only that check says so.
    assert _status(report, "collate_fn.batch_mirrors_sample_structure")[0] == "passed"


# -- check() does not keep the iterators it made alive ------------------------------------------------


class _SharedList(list):  # type: ignore[type-arg]
    """Shared by a loader and its deep copies (check() iterates a deep copy of a loader)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedList:
        return self


class _TrackedLoader(BatchLoader):
    """Keeps a weak reference to each iterator it (or a deep copy of it) hands out."""

    def __init__(self) -> None:
        super().__init__(Points(10), 4)
        self.handed_out: list[weakref.ref[Any]] = _SharedList()

    def __iter__(self) -> Any:
        iterator = super().__iter__()
        self.handed_out.append(weakref.ref(iterator))
        return iterator


def test_check_releases_the_iterators_it_made_without_waiting_for_the_garbage_collector() -> None:
    # A DataLoader iterator with persistent workers, freed by the cyclic collector instead of by its
    # last reference going, took 5 s to shut its workers down (and kept them alive until then).
    loader = _TrackedLoader()
    gc.disable()
    try:
        assert check(loader, Loader).passed
        alive = [ref for ref in loader.handed_out if ref() is not None]
    finally:
        gc.enable()
    assert loader.handed_out, "the checks should have iterated the loader"
    assert alive == [], f"{len(alive)} of {len(loader.handed_out)} iterators outlived check()"


def test_check_keeps_no_reference_to_the_object_it_checked() -> None:
    # A DataLoader with persistent workers keeps its iterator itself: the loader must be freed as soon
    # as its last reference goes, not at the next cyclic garbage collection.
    loader = _TrackedLoader()
    gc.disable()
    try:
        report = check(loader, Loader)
        gone = weakref.ref(loader)
        del loader
        assert gone() is None, "check() left the loader in a reference cycle"
    finally:
        gc.enable()
    assert report.passed


# -- an infinite sampler repeats indices across epochs ------------------------------------------------


def test_an_endless_sampler_of_shuffled_epochs_is_checked_one_epoch_deep() -> None:
    report = check(EndlessShuffles(10), Sampler, infinite=True, data_source_len=10)
    status, message = _status(report, "sampler.each_index_once")
    assert (status, message) == (
        "passed",
        "infinite sampler: checked its first 10 indices, one epoch's worth",
    )
    unknown = check(EndlessShuffles(10), Sampler, infinite=True)
    assert _status(unknown, "sampler.each_index_once")[0] == "skipped"


# -- a slow map-style dataset is not a broken one -----------------------------------------------------


class SlowPoints(Points):
    def __getitem__(self, index: int) -> Any:
        time.sleep(0.001)  # a decoder of compressed images, say
        return super().__getitem__(index)


def test_iteration_of_a_slow_dataset_compares_what_the_budget_allows() -> None:
    # 1,000 items to compare at 2 ms each outlast a 0.5 s budget: before the fix, a failure.
    report = check(SlowPoints(2000), MapDataset, time_budget_s=0.5)
    status, message = _status(report, "map_dataset.iteration_matches_indexing")
    assert status == "passed", message
    assert "the time budget (0.5 s) ran out after" in message


def test_a_sequence_of_stacked_fields_is_not_taken_for_a_list_of_samples() -> None:
    sample = np.zeros(3, dtype=np.float32)
    assert sample_count([np.zeros((4, 3))], like=sample) == 4  # [stack(samples)]: one more dimension
    assert sample_count((np.zeros((5, 4)), np.arange(4)), like=sample) is None  # (T, B) and lengths
    assert sample_count([np.zeros(3), np.zeros(3)], like=sample) == 2  # the samples themselves


# -- train(False) is checked, and modes are restored with calls every implementation takes ----------


def test_train_false_is_checked_and_the_mode_restored() -> None:
    from .mutants.module import TrainIgnoresMode

    module = TrainIgnoresMode().eval()
    report = check(module, Module, example_inputs=mlp_inputs())
    status, message = _status(report, "module.train_eval_set_mode")
    assert status == "failed"
    assert "after m.train(False), m.training is True" in message
    assert module.training is False, "check() left the module in training mode"


class TrainTakesNoMode(MLP):
    """A hand-written train() without the mode parameter (protocol violation, reported once)."""

    def train(self) -> TrainTakesNoMode:  # type: ignore[override]
        self.training = True
        for _, child in self.named_children():
            child.train()
        return self

    def eval(self) -> TrainTakesNoMode:
        self.training = False
        for _, child in self.named_children():
            child.eval()
        return self


def test_a_train_without_mode_fails_the_mode_check_alone() -> None:
    # Restoring the mode with m.train(was_training) used to make every check that switches modes fail.
    report = check(TrainTakesNoMode(), Module, example_inputs=mlp_inputs())
    violations = [r.check_id for r in report.results if r.is_violation]
    assert violations == ["module.train_eval_set_mode"], str(report)
    assert "m.train(True) raised TypeError" in _status(report, "module.train_eval_set_mode")[1]
