"""The engine: arguments, prerequisites, expected failures, time budgets, and leaving objects unchanged."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from torchcontract.conformance import (
    CHECKS,
    ConformanceWarning,
    Context,
    Report,
    Target,
    check,
    checks_for,
    protocol_by_name,
    register_check,
)
from torchcontract.conformance._core import registry as _registry
from torchcontract.protocols import (
    CallableModule,
    CollateFn,
    IterableDataset,
    Loader,
    MapDataset,
    Module,
    Sampler,
)


class Squares:
    """A correct map-style dataset that counts its __getitem__ calls.

    The count lives on the class: check() puts the instance's own state back after each check.
    """

    _calls: ClassVar[dict[int, int]] = {}

    def __init__(self, length: int = 10) -> None:
        self.length = length
        Squares._calls[id(self)] = 0

    @property
    def calls(self) -> int:
        return Squares._calls[id(self)]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        Squares._calls[id(self)] = Squares._calls.get(id(self), 0) + 1
        if not -self.length <= index < self.length:
            raise IndexError(index)
        return (index % self.length) ** 2


class NegativeLength(Squares):
    def __len__(self) -> int:
        return -1


class Wraps(Squares):
    """Never raises IndexError: Python's legacy iteration over it never ends."""

    def __getitem__(self, index: int) -> int:
        return (index % self.length) ** 2


class HangsAtThree(Squares):
    def __getitem__(self, index: int) -> int:
        if index == 3:
            threading.Event().wait()  # forever
        return super().__getitem__(index)


class ExitsAtFive(Squares):
    def __getitem__(self, index: int) -> int:
        if index == 5:
            raise SystemExit("the dataset called sys.exit")
        return super().__getitem__(index)


def _status(report: Report) -> dict[str, str]:
    return {result.check_id: result.status for result in report.results}


# -- arguments ---------------------------------------------------------------------------------------


def test_check_runs_every_check_of_the_protocol() -> None:
    report = check(Squares(), MapDataset)
    assert [r.check_id for r in report.results] == [c.check_id for c in checks_for(MapDataset)]
    assert report.passed
    assert report.target == "Squares"
    assert report.protocol == "MapDataset"


def test_module_checks_include_callable_module_checks() -> None:
    ids = [c.check_id for c in checks_for(Module)]
    callable_ids = [c.check_id for c in checks_for(CallableModule)]
    assert ids[: len(callable_ids)] == callable_ids
    assert all(i.startswith("module.") for i in ids[len(callable_ids) :])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": int}, "protocol must be one of"),
        ({"protocol": Module}, "needs example_inputs"),
        ({"protocol": CollateFn}, "needs example_inputs"),
        ({"protocol": CollateFn, "example_inputs": []}, "non-empty list of samples"),
        ({"protocol": MapDataset, "shuffle": True}, "unknown option(s) shuffle"),
        ({"protocol": MapDataset, "deterministic": "yes"}, "option deterministic='yes' is not valid"),
        ({"protocol": MapDataset, "max_items": 0}, "max_items must be at least 1"),
        ({"protocol": MapDataset, "sample_size": -1}, "option sample_size=-1 is not valid"),
        ({"protocol": MapDataset, "expected_failures": {"x": ""}}, "the reason it fails"),
        ({"protocol": MapDataset, "expected_failures": ["x"]}, "must be a mapping"),
        ({"protocol": MapDataset, "device": ""}, "device must be a device name"),
        ({"protocol": MapDataset, "time_budget_s": True}, "time_budget_s must be a number of seconds"),
        ({"protocol": MapDataset, "time_budget_s": "2"}, "time_budget_s must be a number of seconds"),
    ],
)
def test_unusable_arguments_raise_type_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(Squares(), **kwargs)


@pytest.mark.parametrize("budget", [0, -1, float("inf"), float("-inf"), float("nan"), 1e300, 10**400])
def test_unusable_time_budgets_raise_value_error_naming_the_argument(budget: float) -> None:
    with pytest.raises(ValueError, match="time_budget_s must be a positive, finite number of seconds"):
        check(Squares(), MapDataset, time_budget_s=budget)


def test_each_run_of_a_target_checks_it_afresh() -> None:
    dataset = NegativeLength()
    target = Target(dataset, MapDataset)
    assert not check(target).passed
    dataset.__class__ = Squares  # the author fixes the bug
    assert check(target).passed


def test_check_accepts_a_target() -> None:
    target = Target(Squares(), MapDataset, name="squares")
    report = check(target)
    assert report.target == "squares"
    with pytest.raises(TypeError, match="takes the target's settings"):
        check(target, MapDataset)


def test_protocol_by_name_accepts_both_spellings() -> None:
    assert protocol_by_name("MapDataset") is MapDataset
    assert protocol_by_name("iterable_dataset") is IterableDataset
    with pytest.raises(KeyError, match="choose one of"):
        protocol_by_name("Dataset")


def test_importing_the_engine_does_not_import_torch() -> None:
    code = "import sys, torchcontract.conformance, torchcontract.protocols; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- prerequisites and failures ------------------------------------------------------------------------


def test_a_failed_prerequisite_skips_its_dependents_naming_it() -> None:
    report = check(NegativeLength(), MapDataset)
    statuses = _status(report)
    assert statuses["map_dataset.len_is_non_negative_int"] == "failed"
    dependents = [r for r in report.results if r.check_id != "map_dataset.len_is_non_negative_int"]
    assert {r.status for r in dependents} == {"skipped"}
    assert "prerequisite map_dataset.len_is_non_negative_int failed" in dependents[0].message
    assert not report.passed
    assert "ValueError" in report.failures[0].message
    assert "reproduce: len(ds)" in report.failures[0].message


def test_a_dataset_that_never_raises_index_error_fails_without_hanging() -> None:
    started = time.monotonic()
    report = check(Wraps(), MapDataset, time_budget_s=5)
    statuses = _status(report)
    assert statuses["map_dataset.index_past_end_raises_index_error"] == "failed"
    assert statuses["map_dataset.iteration_matches_indexing"] == "skipped"
    assert time.monotonic() - started < 5


class NoNegative(Squares):
    def __getitem__(self, index: int) -> int:
        if index < 0:
            return 0  # wrong: neither ds[len - 1] nor an error
        return super().__getitem__(index)


def test_recommended_failures_do_not_fail_the_report() -> None:
    report = check(NoNegative(), MapDataset)
    assert _status(report)["map_dataset.negative_index_mirrors_python"] == "failed"
    assert report.passed
    assert [r.check_id for r in report.failures] == ["map_dataset.negative_index_mirrors_python"]


# -- expected failures ---------------------------------------------------------------------------------


def test_expected_failures_show_as_xfailed_and_xpassed() -> None:
    report = check(
        NegativeLength(),
        MapDataset,
        expected_failures={
            "map_dataset.len_is_non_negative_int": "length is computed lazily",
        },
    )
    result = report.results[0]
    assert result.status == "xfailed"
    assert "length is computed lazily" in result.message
    assert report.passed  # the only required failure was expected

    report = check(
        Squares(), MapDataset, expected_failures={"map_dataset.len_is_non_negative_int": "was broken"}
    )
    assert report.results[0].status == "xpassed"
    assert "remove it from expected_failures" in report.results[0].message


def test_stale_expected_failures_are_reported_by_name() -> None:
    with pytest.warns(ConformanceWarning, match="map_dataset.index_past_end_raises_indexerror") as caught:
        report = check(
            Squares(),
            MapDataset,
            expected_failures={"map_dataset.index_past_end_raises_indexerror": "typo"},
        )
    assert "did you mean 'map_dataset.index_past_end_raises_index_error'" in str(caught[0].message)
    assert report.stale_expected_failures == ("map_dataset.index_past_end_raises_indexerror",)
    assert "STALE" in str(report)


def test_an_expected_failure_of_another_protocol_is_stale_and_says_so() -> None:
    target = Target(Squares(), MapDataset, expected_failures={"loader.epoch_ends": "not a loader"})
    assert target.stale_expected_failures == ["loader.epoch_ends"]
    assert "it is a check of Loader, not of MapDataset" in target.stale_message("loader.epoch_ends")


# -- time budgets and hangs ------------------------------------------------------------------------------


def test_a_hung_call_fails_its_check_and_skips_the_rest() -> None:
    started = time.monotonic()
    report = check(HangsAtThree(), MapDataset, time_budget_s=0.5)
    elapsed = time.monotonic() - started
    statuses = _status(report)
    assert statuses["map_dataset.getitem_in_range_succeeds"] == "failed"
    failure = report.failures[0]
    assert "ds[3] did not return within the time budget of 0.5 s" in failure.message
    # Every later check is unverified for the hang (but those that need torch, where it is missing,
    # are skipped saying so): not skipped, since nothing says they do not apply.
    later = [
        r
        for r in report.results[2:]
        if not (CHECKS[r.check_id].needs & {"torch", "workers"} and "needs torch" in r.message)
    ]
    assert later
    assert all(r.status == "unverified" for r in later)
    assert all("hung in map_dataset.getitem_in_range_succeeds" in r.message for r in later)
    assert not report.passed
    # One budget (plus the grace period) for the hang, nothing more for the skipped checks.
    assert elapsed < 0.5 + 2.0 + 1.0


def test_system_exit_from_the_object_is_a_failure_not_a_crash() -> None:
    report = check(ExitsAtFive(), MapDataset)
    assert _status(report)["map_dataset.getitem_in_range_succeeds"] == "failed"
    assert "ds[5] raised SystemExit" in report.failures[0].message


class Endless:
    def __iter__(self) -> Iterator[int]:
        n = 0
        while True:
            yield n
            n += 1


def test_an_endless_stream_fails_iteration_ends_in_budget_with_bounded_memory() -> None:
    started = time.monotonic()
    report = check(Endless(), IterableDataset, time_budget_s=0.5, max_items=10)
    statuses = _status(report)
    assert statuses["iterable_dataset.iteration_ends"] == "failed"
    assert "without ending" in report.failures[0].message
    assert time.monotonic() - started < 3


def test_an_endless_stream_declared_infinite_passes_on_a_prefix() -> None:
    report = check(Endless(), IterableDataset, infinite=True, max_items=50)
    assert report.passed, report
    assert "first 50 items" in _message(report, "iterable_dataset.iteration_ends")


def _message(report: Report, check_id: str) -> str:
    return next(r.message for r in report.results if r.check_id == check_id)


# -- sampling and options --------------------------------------------------------------------------------


def test_big_datasets_are_sampled_unless_thorough() -> None:
    sampled = Squares(100_000)
    report = check(sampled, MapDataset)
    assert report.passed
    assert sampled.calls < 10_000
    assert "checked 18 of 100000 indices" in _message(report, "map_dataset.getitem_in_range_succeeds")

    small = Squares(300)
    check(small, MapDataset, thorough=True)
    assert small.calls >= 300


def test_sampled_indices_are_reproducible_from_the_seed() -> None:
    class Recording(Squares):
        _seen: ClassVar[dict[int, list[int]]] = {}  # on the class: check() restores the instance

        def __init__(self) -> None:
            super().__init__(10_000)
            Recording._seen[id(self)] = []

        @property
        def seen(self) -> list[int]:
            return Recording._seen[id(self)]

        def __getitem__(self, index: int) -> int:
            Recording._seen.setdefault(id(self), []).append(index)
            return super().__getitem__(index)

    first, second, third = Recording(), Recording(), Recording()
    check(first, MapDataset)
    check(second, MapDataset)
    check(third, MapDataset, seed=1)
    assert first.seen == second.seen
    assert first.seen != third.seen


def test_report_options_list_what_differs_from_the_defaults() -> None:
    report = check(Squares(), MapDataset, thorough=True)
    assert report.options == {"thorough": True}


# -- leaving the object (and the process) as they were -----------------------------------------------------


def test_global_random_state_is_restored_after_each_check() -> None:
    class GlobalRandomSampler:
        def __iter__(self) -> Iterator[int]:
            order = list(range(10))
            random.shuffle(order)
            np.random.shuffle(order)
            return iter(order)

        def __len__(self) -> int:
            return 10

    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), np.random.random())
    random.seed(1)
    np.random.seed(1)
    report = check(GlobalRandomSampler(), Sampler)
    assert (random.random(), np.random.random()) == expected
    # Copies drawn from the same global state give the same order: reproducible.
    assert report.passed, report


def test_module_mode_is_restored() -> None:
    class Plain:
        def __init__(self) -> None:
            self.training = True

        def forward(self, x: float) -> float:
            return x * 2

        def __call__(self, x: float) -> float:
            return self.forward(x)

        def train(self, mode: bool = True) -> Plain:
            self.training = mode
            return self

        def eval(self) -> Plain:
            return self.train(False)

    module = Plain()
    report = check(module, CallableModule, example_inputs=(1.5,))
    assert report.passed, report
    assert module.training is True
    module.eval()
    check(module, CallableModule, example_inputs=(1.5,))
    assert module.training is False
    assert "forward" not in vars(module)  # the wrapper put on the instance was removed


def test_dataset_storage_is_restored_after_the_mutation_check() -> None:
    class Views:
        def __init__(self) -> None:
            self.data = np.arange(12.0).reshape(6, 2)

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
            if not -len(self) <= index < len(self):
                raise IndexError(index)
            return self.data[index]  # a view

    dataset = Views()
    report = check(dataset, MapDataset)
    assert _status(report)["map_dataset.samples_are_independent_copies"] == "failed"
    np.testing.assert_array_equal(dataset.data, np.arange(12.0).reshape(6, 2))


# -- reports ----------------------------------------------------------------------------------------------


def test_report_json_holds_every_result_and_the_environment() -> None:
    report = check(NegativeLength(), MapDataset)
    data = json.loads(report.to_json())
    assert data["schema_version"] == 3
    assert data["passed"] is False
    assert data["counts"]["failed"] == 1
    (entry,) = data["targets"]
    assert entry["counts"] == data["counts"]
    assert len(entry["results"]) == len(checks_for(MapDataset))
    first = entry["results"][0]
    assert set(first) == {"check_id", "protocol", "severity", "status", "message", "duration_s", "device"}
    assert data["environment"]["numpy"] == np.__version__


def test_report_str_is_readable() -> None:
    text = str(check(NegativeLength(), MapDataset))
    assert text.splitlines()[0].startswith("NegativeLength as MapDataset on cpu: FAILED")
    assert "FAIL    map_dataset.len_is_non_negative_int" in text
    assert "reproduce: len(ds)" in text


def test_device_dependent_results_name_their_device() -> None:
    pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")
    from torch import nn

    report = check(nn.Linear(2, 2), Module, example_inputs=(np.zeros(2, dtype=np.float32),))
    devices = {r.check_id: r.device for r in report.results}
    assert devices["module.to_device"] == "cpu"
    assert devices["module.train_eval_set_mode"] is None


# -- the registry -------------------------------------------------------------------------------------------


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Checks registered inside a test are removed afterwards (the registry is global)."""
    before, ids = dict(_registry._REGISTRY), dict(_registry._IDS)
    yield
    _registry._REGISTRY.clear()
    _registry._REGISTRY.update(before)
    _registry._IDS.clear()
    _registry._IDS.update(ids)


@pytest.mark.usefixtures("scratch_registry")
def test_a_custom_check_runs_for_its_protocol() -> None:
    @register_check("mylib.loader_has_batches", protocol=Loader, severity="recommended", since="1.0")
    def loader_has_batches(ctx: Context) -> None:
        """The loader yields at least one batch."""
        if not list(ctx.obj):
            ctx.fail("the loader yielded nothing", reproduce="list(loader)")

    assert CHECKS["mylib.loader_has_batches"].rule == "The loader yields at least one batch."
    report = check([], Loader)
    assert _status(report)["mylib.loader_has_batches"] == "failed"
    assert report.passed  # recommended


@pytest.mark.usefixtures("scratch_registry")
@pytest.mark.parametrize(
    ("check_id", "kwargs", "error"),
    [
        ("NoDots", {}, "dotted lower_snake_case"),
        ("map_dataset.len_is_non_negative_int", {}, "already registered"),
        ("mylib.x", {"requires": ("mylib.missing",)}, "requires the unregistered check 'mylib.missing'"),
        ("mylib.x", {"severity": "optional"}, "severity must be"),
        ("mylib.x", {"needs": ("gpu",)}, "unknown needs"),
    ],
)
def test_register_check_rejects_bad_metadata(check_id: str, kwargs: dict[str, Any], error: str) -> None:
    arguments: dict[str, Any] = {"protocol": MapDataset, "severity": "required", "since": "1.0", **kwargs}

    def rule(ctx: Context) -> None:
        """A rule."""

    with pytest.raises((ValueError, TypeError), match=error):
        register_check(check_id, **arguments)(rule)


@pytest.mark.usefixtures("scratch_registry")
def test_register_check_needs_a_docstring() -> None:
    def undocumented(ctx: Context) -> None:
        pass

    with pytest.raises(ValueError, match="needs a docstring"):
        register_check("mylib.undocumented", protocol=MapDataset, severity="required", since="1.0")(
            undocumented
        )


@pytest.mark.usefixtures("scratch_registry")
def test_a_check_without_an_id_is_named_after_its_protocol_and_function() -> None:
    @register_check(protocol=MapDataset, severity="recommended", since="0.2.0")
    def has_a_name(ctx: Context) -> None:
        """The dataset has a name."""

    @register_check(protocol=MapDataset, severity="recommended", requires=(has_a_name,), since="0.2.0")
    def name_is_short(ctx: Context) -> None:
        """The dataset's name is short."""

    assert CHECKS["map_dataset.has_a_name"].func is has_a_name
    assert CHECKS["map_dataset.name_is_short"].requires == ("map_dataset.has_a_name",)
    assert CHECKS["map_dataset.name_is_short"].since == "0.2.0"


@pytest.mark.usefixtures("scratch_registry")
def test_register_check_needs_since_and_registered_prerequisites() -> None:
    def rule(ctx: Context) -> None:
        """A rule."""

    with pytest.raises(TypeError, match="since"):
        register_check(protocol=MapDataset, severity="required")(rule)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="since must be the version that added the check"):
        register_check(protocol=MapDataset, severity="required", since="")(rule)
    with pytest.raises(ValueError, match=r"requires test_register_check_needs_since.*rule, which is not a"):
        register_check(protocol=MapDataset, severity="required", since="1.0", requires=(rule,))
    assert "map_dataset.rule" not in CHECKS


def test_every_registered_check_has_a_rule_and_known_prerequisites() -> None:
    for check_id, spec in CHECKS.items():
        assert spec.rule.endswith("."), check_id
        for prerequisite in spec.requires:
            assert CHECKS[prerequisite].protocol in (spec.protocol, CallableModule), check_id


def test_no_warnings_from_a_clean_run() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(Squares(), MapDataset)
