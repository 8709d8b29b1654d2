"""The plugin and the user's Target: never changed, and its shared work released after its last test."""

from __future__ import annotations

import textwrap

import pytest

from tests.plugin.test_plugin import DATASETS, QUIET


def test_the_options_of_the_command_line_leave_the_users_target_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_conformance=textwrap.dedent(DATASETS)
        + textwrap.dedent(
            """
            TARGET = Target(Pairs(), MapDataset, name="pairs")


            @parametrize_with_checks([TARGET])
            def test_conformance(target, check):
                assert target is not TARGET and target.options.world_size == 2
                check(target)


            @parametrize_with_checks([TARGET])
            def test_again(target, check):
                check(target)


            def test_zz_unchanged():
                assert TARGET.options.world_size is None
                assert TARGET.options.isolate is False
            """
        )
    )
    selected = "len_is_non_negative or unchanged"
    result = pytester.runpytest("--conformance-world-size=2", "-k", selected, *QUIET)
    result.assert_outcomes(passed=3)


def test_a_targets_shared_work_is_released_after_its_last_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_conformance=textwrap.dedent(DATASETS)
        + textwrap.dedent(
            """
            from torchcontract.conformance import DEFAULT_TIME_BUDGET_S

            TARGET = Target(Pairs(), MapDataset, name="pairs")


            @parametrize_with_checks([TARGET])
            def test_conformance(target, check):
                check(target)


            def test_zz_released():
                session = TARGET.session("cpu", DEFAULT_TIME_BUDGET_S)
                assert session.results  # the session the tests used
                assert session.shared == {}, sorted(session.shared)
            """
        )
    )
    result = pytester.runpytest("-v", *QUIET)
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes, result.stdout.str()
    assert "errors" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_zz_released PASSED*"])


def test_each_generated_test_names_its_targets_xdist_group(pytester: pytest.Pytester) -> None:
    # pytest-xdist's --dist loadgroup sends the tests of one group to one worker, so that the work a
    # target's checks share (one recorded epoch, one process-group run) is done once.
    source = textwrap.dedent(DATASETS) + textwrap.dedent(
        """
        @parametrize_with_checks([Target(Pairs(), MapDataset, name="pairs"),
                                  Target(Pairs(), MapDataset, name="again")])
        def test_conformance(target, check):
            check(target)
        """
    )
    items = pytester.getitems(source)
    assert items
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        assert mark is not None, item.nodeid
        assert mark.kwargs["name"] == f"torchcontract:{item.nodeid.split('[', 1)[1].split('-', 1)[0]}"
