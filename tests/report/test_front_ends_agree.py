"""The pytest plugin and the CLI judge and show one run alike: the Markdown summary and the verdicts
of both come from one function each, so that the same objects, baseline and policy give the same
text, the same verdicts and the same closing line whichever front-end checked them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from torchcontract.conformance import RunReport
from torchcontract.conformance._report.baseline import read_baseline
from torchcontract.conformance._report.markdown import render_markdown
from torchcontract.conformance._report.outcomes import Policy
from torchcontract.conformance._report.plan import plan_baseline, unknown_tables
from torchcontract.conformance._report.verdict import judge_run
from torchcontract.conformance.cli import main

from ..plugin.test_plugin import QUIET

PAST_END = "map_dataset.index_past_end_raises_index_error"
PICKLE = "map_dataset.pickle_round_trip"
NEGATIVE = "map_dataset.negative_index_mirrors_python"

# A user's module of targets: one correct, one broken in a required and a recommended clause, one
# whose baseline entries are still TODO or stale, one with a stale expected failure in code.
TARGETS = """
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset


    class Pairs:
        def __len__(self):
            return 6

        def __getitem__(self, index):
            if not -6 <= index < 6:
                raise IndexError(index)
            return (index % 6, (index % 6) ** 2)


    class Wrapping(Pairs):
        def __getitem__(self, index):
            return (index % 6, (index % 6) ** 2)


    pairs = Target(Pairs(), MapDataset, name="pairs")
    wrapping = Target(Wrapping(), MapDataset, name="wrapping")
    known = Target(Wrapping(), MapDataset, name="known")
    typo = Target(Pairs(), MapDataset, name="typo", expected_failures={"map_dataset.len_ok": "renamed"})
    fine = Target(Pairs(), MapDataset, name="fine")
"""
BASELINE = f"""
["wrapping"]
"{NEGATIVE}" = "wraps round on purpose"

["known"]
"{PAST_END}" = "TODO"
"map_dataset.no_such_check" = "gone"

["pairs"]
"{PICKLE}" = "was broken once"

["ghost"]
"{PAST_END}" = "a target renamed since"
"""
TEST_FILE = """
    import targets_mod
    from torchcontract.conformance import parametrize_with_checks

    @parametrize_with_checks(
        [targets_mod.pairs, targets_mod.wrapping, targets_mod.known, targets_mod.typo, targets_mod.fine]
    )
    def test_conformance(target, check):
        check(target)
"""


@pytest.mark.slow
def test_the_plugin_and_the_cli_render_one_markdown_and_one_verdict(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(targets_mod=textwrap.dedent(TARGETS), test_conformance=textwrap.dedent(TEST_FILE))
    pytester.syspathinsert()
    (pytester.path / "b.toml").write_text(BASELINE, encoding="utf-8")
    options = ["--conformance-baseline=b.toml", "--conformance-devices=cpu"]
    plugin = pytester.runpytest(
        *options, "--conformance-summary-md=plugin.md", "--conformance-report=plugin.json", *QUIET
    )
    assert plugin.ret == pytest.ExitCode.TESTS_FAILED
    plugin_markdown = (pytester.path / "plugin.md").read_text(encoding="utf-8")
    capsys.readouterr()  # the in-process pytest's own output

    monkeypatch.chdir(pytester.path)
    status = main(["check", "targets_mod", "--baseline", "b.toml", "--format", "markdown"])
    cli = capsys.readouterr()
    assert status == 1

    # One text, byte for byte: the same verdict words, counts, outcome words, rows and problems.
    assert cli.out.rstrip("\n") == plugin_markdown.rstrip("\n")
    # One verdict: the closing lines say the same after the front-end's name.
    plugin_closing = next(line for line in plugin.stdout.lines if line.startswith("torchcontract: FAILED:"))
    cli_closing = cli.err.splitlines()[-1]
    assert cli_closing.startswith("torchcontract check: FAILED:")
    assert cli_closing.partition(": ")[2] == plugin_closing.partition(": ")[2]
    for reason in (
        f"wrapping: {PAST_END} failed",
        f"known: {PAST_END} failed, baseline entry '{PAST_END}' is still TODO and 1 more",
        f"pairs: baseline entry '{PICKLE}' passes now",
        "typo: expected failure 'map_dataset.len_ok' matches no check",
        'baseline table ["ghost"] names no target',
    ):
        assert reason in plugin_closing, reason

    # Both are the reporting layer's rendering of the run the plugin recorded.
    run = RunReport.from_dict(json.loads((pytester.path / "plugin.json").read_text(encoding="utf-8")))
    names = ["pairs", "wrapping", "known", "typo", "fine"]
    assert [report.target for report in run.reports] == names
    baseline = read_baseline(Path(pytester.path / "b.toml"))
    problems = unknown_tables(baseline, names, "b.toml")
    assert len(problems) == 1
    import targets_mod  # type: ignore[import-not-found]

    uses = {}
    for target in (getattr(targets_mod, name) for name in names):
        _, use = plan_baseline(target, baseline, "b.toml")
        if use is not None:
            uses[target.name, target.protocol.__name__] = use
    judged = judge_run(run, Policy(), uses, problems)
    assert render_markdown(judged) == plugin_markdown
    assert [verdict.word for verdict in judged.verdicts] == ["FAILED", "FAILED", "FAILED", "FAILED", "PASSED"]
    assert "| fine | MapDataset | PASSED |" in plugin_markdown
    # The recommended failure the baseline declares is an xfail in both.
    assert f"| `{NEGATIVE}` | recommended | xfailed |" in plugin_markdown


@pytest.mark.slow
def test_under_xdist_the_controller_judges_and_renders_the_run_as_one_process_does(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(targets_mod=textwrap.dedent(TARGETS), test_conformance=textwrap.dedent(TEST_FILE))
    (pytester.path / "b.toml").write_text(BASELINE, encoding="utf-8")
    options = ["--conformance-baseline=b.toml", "--conformance-devices=cpu", "-p", "no:randomly", *QUIET]
    one = pytester.runpytest_subprocess(*options, "--conformance-summary-md=one.md", "-p", "no:xdist")
    # --dist load: a target's tests spread over both workers, each result sent once.
    two = pytester.runpytest_subprocess(
        *options, "--conformance-summary-md=two.md", "-n", "2", "--dist", "load"
    )
    assert one.ret == two.ret == pytest.ExitCode.TESTS_FAILED
    one_markdown = (pytester.path / "one.md").read_text(encoding="utf-8")
    assert (pytester.path / "two.md").read_text(encoding="utf-8") == one_markdown
    closing = [line for line in one.stdout.lines if line.startswith("torchcontract: FAILED")]
    assert closing == [line for line in two.stdout.lines if line.startswith("torchcontract: FAILED")]
    assert " 1 error " in two.stdout.lines[-1]  # the table naming no target, on the controller
