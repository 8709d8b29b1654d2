"""The pytest plugin as a third-party test suite uses it: its own test file, the options, the report."""

from __future__ import annotations

import importlib.util
import json
import textwrap

import pytest

from torchcontract.conformance import checks_for
from torchcontract.protocols import MapDataset

MAP_CHECKS = len(checks_for(MapDataset))

DATASETS = """
    from torchcontract.conformance import Target, parametrize_with_checks
    from torchcontract.protocols import MapDataset


    class Pairs:
        '''A correct map-style dataset.'''

        def __len__(self):
            return 6

        def __getitem__(self, index):
            if not -6 <= index < 6:
                raise IndexError(index)
            return (index % 6, (index % 6) ** 2)


    class Wrapping(Pairs):
        '''Broken: never raises IndexError, so `for sample in ds` never ends.'''

        def __getitem__(self, index):
            return (index % 6, (index % 6) ** 2)
"""


# Plugins that a third-party suite would not load, and that make every inner run seconds slower.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")


def _write(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_conformance=textwrap.dedent(DATASETS) + textwrap.dedent(body))


def test_one_test_per_target_and_check_and_only_the_broken_target_fails(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks(
            [Target(Pairs(), MapDataset, name="pairs"), Target(Wrapping(), MapDataset, name="wrapping")]
        )
        def test_conformance(target, check):
            check(target)
        """,
    )
    result = pytester.runpytest("-v", *QUIET)
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1
    assert outcomes["passed"] + outcomes["failed"] + outcomes["skipped"] == 2 * MAP_CHECKS
    result.stdout.fnmatch_lines(
        [
            "*test_conformance[[]pairs-map_dataset.index_past_end_raises_index_error[]] PASSED*",
            "*test_conformance[[]wrapping-map_dataset.index_past_end_raises_index_error[]] FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(["*ds[[]6[]] returned (0, 0) but len(ds) == 6; expected IndexError*"])
    # The recommended violation passes with a warning that carries its message.
    result.stdout.fnmatch_lines(["*ConformanceWarning: map_dataset.negative_index_mirrors_python*"])
    result.stdout.fnmatch_lines(["*torchcontract conformance*", "pairs (MapDataset): * passed*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_ids_select_checks_with_k(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks([Target(Pairs(), MapDataset, name="pairs")])
        def test_conformance(target, check):
            check(target)
        """,
    )
    result = pytester.runpytest("-k", "pickle_round_trip", *QUIET)
    result.assert_outcomes(passed=1)
    # A whole check id, and a whole test id, are -k expressions too (pytest's grammar takes dots and dashes).
    for expression in ("map_dataset.pickle_round_trip", "pairs-map_dataset.pickle_round_trip"):
        result = pytester.runpytest("-k", expression, *QUIET)
        result.assert_outcomes(passed=1)


def test_expected_failures_xfail_and_xpass(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        REASON = "wraps round on purpose"

        @parametrize_with_checks(
            [
                Target(
                    Wrapping(),
                    MapDataset,
                    name="wrapping",
                    expected_failures={"map_dataset.index_past_end_raises_index_error": REASON},
                ),
                Target(
                    Pairs(),
                    MapDataset,
                    name="pairs",
                    expected_failures={"map_dataset.pickle_round_trip": "was broken once"},
                ),
            ]
        )
        def test_conformance(target, check):
            check(target)
        """,
    )
    result = pytester.runpytest("-rxX", *QUIET)
    outcomes = result.parseoutcomes()
    assert outcomes["xfailed"] == 1
    assert outcomes["xpassed"] == 1
    assert "failed" not in outcomes
    result.stdout.fnmatch_lines(["*XFAIL*wrapping-map_dataset.index_past_end_raises_index_error*"])


def test_a_stale_expected_failure_fails_naming_it(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks(
            [Target(Pairs(), MapDataset, name="pairs", expected_failures={"map_dataset.len_ok": "old"})]
        )
        def test_conformance(target, check):
            check(target)
        """,
    )
    result = pytester.runpytest(*QUIET)
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1
    result.stdout.fnmatch_lines(
        [
            "*pairs-stale_expected_failure-map_dataset.len_ok*",
            "*names 'map_dataset.len_ok', which matches no check of MapDataset*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["pairs (MapDataset): FAILED: * (expected failure 'map_dataset.len_ok' matches no check)"]
    )


def test_the_json_report_holds_every_result(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks(
            [Target(Pairs(), MapDataset, name="pairs"), Target(Wrapping(), MapDataset, name="wrapping")]
        )
        def test_conformance(target, check):
            check(target)
        """,
    )
    report = pytester.path / "out" / "report.json"
    pytester.runpytest(f"--conformance-report={report}", *QUIET)
    data = json.loads(report.read_text())
    assert data["schema_version"] == 3
    assert [t["target"] for t in data["targets"]] == ["pairs", "wrapping"]
    for entry in data["targets"]:
        ids = [row["check_id"] for row in entry["results"]]
        assert sorted(ids) == sorted(c.check_id for c in checks_for(MapDataset))
    wrapping = {row["check_id"]: row for row in data["targets"][1]["results"]}
    assert wrapping["map_dataset.index_past_end_raises_index_error"]["status"] == "failed"
    assert "expected IndexError" in wrapping["map_dataset.index_past_end_raises_index_error"]["message"]


def test_device_dependent_checks_get_one_test_per_device(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")
    pytester.makepyfile(
        test_modules="""
        import torch
        from torchcontract.conformance import Target, parametrize_with_checks
        from torchcontract.protocols import Module

        @parametrize_with_checks(
            [Target(torch.nn.Linear(3, 2), Module, name="linear", example_inputs=(torch.ones(2, 3),))]
        )
        def test_conformance(target, check):
            check(target)
        """
    )
    result = pytester.runpytest("--conformance-devices=cpu,cuda", "-v", "-rs", *QUIET)
    result.stdout.fnmatch_lines(
        [
            "*linear-module.to_device-cpu*PASSED*",
            "*linear-module.to_device-cuda*",
            "*linear-module.device_parity-cuda*",
        ]
    )
    if not torch_cuda_available():
        result.stdout.fnmatch_lines(["*SKIPPED*needs a CUDA device*"])
    assert result.ret == pytest.ExitCode.OK


def torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# A target whose ds[2] never returns.
HANGS = """
    import threading

    class Hangs(Pairs):
        def __getitem__(self, index):
            if index == 2:
                threading.Event().wait()
            return super().__getitem__(index)

    @parametrize_with_checks([Target(Hangs(), MapDataset, name="hangs")])
    def test_conformance(target, check):
        check(target)
"""


def test_the_time_budget_option_bounds_a_hung_object(pytester: pytest.Pytester) -> None:
    _write(pytester, HANGS)
    result = pytester.runpytest("--conformance-time-budget=0.3", *QUIET)
    outcomes = result.parseoutcomes()
    # The hung check fails, and so does every required check after it (not verified); the recommended
    # ones after it pass with a warning; those that need torch, where it is missing, are skipped.
    has_torch = importlib.util.find_spec("torch") is not None
    checks = checks_for(MapDataset)
    hung_at = [c.check_id for c in checks].index("map_dataset.getitem_in_range_succeeds")
    later = [c for c in checks[hung_at + 1 :] if has_torch or "torch" not in c.needs]
    skipped = len(checks) - hung_at - 1 - len(later)
    assert outcomes["failed"] == 1 + sum(c.severity == "required" for c in later)
    assert outcomes["passed"] == hung_at + sum(c.severity == "recommended" for c in later)
    result.stdout.fnmatch_lines(["*ds[[]2[]] did not return within the time budget of 0.3 s*"])
    # The checks after the hang were not verified: failed tests, not skips, and the run fails.
    assert outcomes.get("skipped", 0) == skipped
    result.stdout.fnmatch_lines(["*hangs (MapDataset): * failed, * unverified*"])


def test_a_target_whose_every_check_skipped_is_an_error(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks([Target(Pairs(), MapDataset, name="pairs")])
        def test_conformance(target, check):
            check(target)
        """,
    )
    result = pytester.runpytest("-k", "getitems", *QUIET)
    result.stdout.fnmatch_lines(["*pairs (MapDataset) ran zero conformance checks*"])
    assert result.ret != pytest.ExitCode.OK


def test_an_empty_target_list_is_an_error_not_a_green_run(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks([])
        def test_conformance(target, check):
            check(target)
        """,
    )
    result = pytester.runpytest(*QUIET)
    result.stdout.fnmatch_lines(["*parametrize_with_checks needs at least one target*"])
    assert result.ret != pytest.ExitCode.OK


def test_a_test_without_the_check_argument_is_a_usage_error(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks([Target(Pairs(), MapDataset, name="pairs")])
        def test_conformance(target):
            pass
        """,
    )
    result = pytester.runpytest(*QUIET)
    result.stdout.fnmatch_lines(["*must take the arguments 'target' and 'check' (missing: check)*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error stops the run


def test_duplicate_target_names_are_rejected() -> None:
    from torchcontract.conformance import Target, parametrize_with_checks

    with pytest.raises(ValueError, match="target names must be unique"):
        parametrize_with_checks([Target([1], MapDataset, name="a"), Target([2], MapDataset, name="a")])


def test_under_xdist_the_report_holds_every_result_once(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed")
    _write(
        pytester,
        """
        @parametrize_with_checks(
            [Target(Pairs(), MapDataset, name="pairs"), Target(Wrapping(), MapDataset, name="wrapping")]
        )
        def test_conformance(target, check):
            check(target)
        """,
    )
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("-n", "2", f"--conformance-report={report}", *QUIET)
    assert result.parseoutcomes()["failed"] == 1
    data = json.loads(report.read_text())
    for entry in data["targets"]:
        ids = [row["check_id"] for row in entry["results"]]
        assert len(ids) == len(set(ids)) == MAP_CHECKS, entry["target"]
    result.stdout.fnmatch_lines(["*wrapping (MapDataset): * failed*"])


def test_the_world_size_option_turns_on_the_distributed_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sharding="""
        from torchcontract import reference_impl as ref
        from torchcontract.conformance import Target, parametrize_with_checks
        from torchcontract.protocols import Sampler

        def rank_sampler(rank, world_size):
            return ref.DistributedSampler(10, num_replicas=world_size, rank=rank)

        @parametrize_with_checks([Target(ref.DistributedSampler(10, num_replicas=2, rank=0), Sampler,
                                         name="shards", data_source_len=10, shards=rank_sampler)])
        def test_conformance(target, check):
            check(target)
        """
    )
    sharding = "shards-sampler.shards_cover_dataset"
    off = pytester.runpytest("-v", "-rs", *QUIET)
    off.stdout.fnmatch_lines(
        [f"*{sharding}* SKIPPED*", "*distributed checks are off*--conformance-world-size*"]
    )
    on = pytester.runpytest("-v", "--conformance-world-size=3", *QUIET)
    on.stdout.fnmatch_lines([f"*{sharding}* PASSED*"])
    assert on.ret == pytest.ExitCode.OK


def test_every_option_can_live_in_the_ini_file_and_the_command_line_wins(pytester: pytest.Pytester) -> None:
    _write(pytester, HANGS)
    pytester.makefile(
        ".toml",
        pyproject=(
            "[tool.pytest.ini_options]\n"
            'conformance_time_budget = "0.3"\n'
            'conformance_report = "out/report.json"\n'
            'conformance_devices = "cpu"\n'
        ),
    )
    result = pytester.runpytest(*QUIET)
    result.stdout.fnmatch_lines(
        [
            "torchcontract *, torch *, numpy *",
            "torchcontract settings: report=out/report.json, devices=*, time_budget_s=0.3, isolate=False*",
            "*ds[[]2[]] did not return within the time budget of 0.3 s*",
        ]
    )
    assert (pytester.path / "out" / "report.json").exists()
    result = pytester.runpytest("--conformance-time-budget=0.4", *QUIET)
    result.stdout.fnmatch_lines(["*time_budget_s=0.4*", "*within the time budget of 0.4 s*"])


def test_an_unusable_ini_value_is_a_usage_error_naming_the_key(pytester: pytest.Pytester) -> None:
    _write(pytester, "")
    pytester.makeini("[pytest]\nconformance_time_budget = soon\n")
    result = pytester.runpytest(*QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini key conformance_time_budget = 'soon'" in result.stderr.str()


def test_families_of_checks_are_selected_by_markers(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks([Target(Pairs(), MapDataset, name="pairs")])
        def test_conformance(target, check):
            check(target)
        """,
    )
    everything = pytester.runpytest("-m", "conformance", "--collect-only", "-q", *QUIET)
    assert f"{MAP_CHECKS} tests collected" in everything.stdout.str()
    narrowed = pytester.runpytest("-m", "not conformance_workers", "--collect-only", "-q", *QUIET)
    workers = sum("workers" in c.needs for c in checks_for(MapDataset))
    assert workers > 0
    narrowed.stdout.fnmatch_lines([f"{MAP_CHECKS - workers}/{MAP_CHECKS} tests collected*"])
    assert "spawn_workers" not in narrowed.stdout.str()


@pytest.mark.slow
def test_the_fresh_interpreter_is_starting_before_the_spawn_test_asks_for_it(
    pytester: pytest.Pytester,
) -> None:
    # As Target.run does: a target's first test starts it when one of its selected tests will use it,
    # so that its start (importing what the dataset needs) overlaps the tests before; not otherwise.
    pytest.importorskip("torch")
    pytester.makeconftest(
        """
        import torchcontract.conformance._runtime.fresh as fi

        RUNNING = []
        fetch = fi.fetch

        def recording_fetch(*args, **kwargs):
            RUNNING.append(bool(fi.client._current))
            return fetch(*args, **kwargs)

        fi.fetch = recording_fetch

        def pytest_sessionfinish(session):
            running = bool(fi.client._current)
            print(f"\\nSERVER running at each request {RUNNING}; running at the end {running}")
        """
    )
    _write(
        pytester,
        """
        @parametrize_with_checks([Target(Pairs(), MapDataset, name="pairs")])
        def test_conformance(target, check):
            check(target)
        """,
    )
    result = pytester.runpytest_subprocess("-s", *QUIET)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*SERVER running at each request [[]True[]]; running at the end True*"])
    # Without the spawn test selected, nothing is started.
    result = pytester.runpytest_subprocess("-s", "-k", "not spawn", *QUIET)
    result.stdout.fnmatch_lines(["*SERVER running at each request [[][]]; running at the end False*"])
