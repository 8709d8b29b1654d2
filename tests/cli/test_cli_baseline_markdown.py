"""Baselines (the TOML subset parser of Python 3.10 too) and the CLI's Markdown, baseline and list --json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from torchcontract.conformance import CHECKS
from torchcontract.conformance._report.baseline import BaselineError, dumps, parse_subset, read_baseline
from torchcontract.conformance.cli import main

from ..user_modules import user_module, write_user_module

GOOD = """
# known failures
["my dataset"]   # a comment
"map_dataset.x" = "wraps \\"round\\"\\u00e9"
bare_key = 'literal \\ kept'

[plain]
"a.b" = "TODO"
"""


def test_the_subset_parser_reads_what_tomllib_reads() -> None:
    expected = {
        "my dataset": {"map_dataset.x": 'wraps "round"é', "bare_key": "literal \\ kept"},
        "plain": {"a.b": "TODO"},
    }
    assert parse_subset(GOOD) == expected
    if sys.version_info >= (3, 11):
        import tomllib

        assert tomllib.loads(GOOD) == expected


def test_dumps_round_trips_through_both_parsers() -> None:
    baseline = {'odd "name"\\': {"x.y": 'tab\there, newline\n, quote " and é 😀 \x7f'}}
    assert parse_subset(dumps(baseline)) == baseline
    if sys.version_info >= (3, 11):
        import tomllib

        assert tomllib.loads(dumps(baseline)) == baseline


@pytest.mark.parametrize(
    ("text", "line", "complaint"),
    [
        ('"a.b" = "x"\n', 1, "outside a table"),
        ('[t]\n"a.b" = 3\n', 2, "must be a string in quotes"),
        ('[t]\n"a.b" = "x\n', 2, "not closed on its line"),
        ("[t]\na.b = 'x'\n", 2, "dotted keys"),
        ("[t.u]\n", 1, "nested tables"),
        ('[t]\n"a" = "x"\n"a" = "y"\n', 3, "given twice"),
        ("[t]\n[t]\n", 2, "defined twice"),
        ('[t]\n"a" = ""\n', 2, "the reason is empty"),
        ('[t]\n"a" = "x" y\n', 2, "unexpected"),
        ('[t]\n"a" = "\\q"\n', 2, "unknown escape"),
    ],
)
def test_the_subset_parser_names_the_file_and_line_of_bad_input(text: str, line: int, complaint: str) -> None:
    with pytest.raises(BaselineError, match=rf"baseline b.toml, line {line}: .*{complaint}"):
        parse_subset(text, "b.toml")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib (3.11+) reads the whole of TOML")
def test_read_baseline_rejects_a_non_string_reason_naming_the_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "b.toml"
    path.write_text('[t]\n"a" = 3\n')
    with pytest.raises(BaselineError, match=r"b.toml: \[\"t\"\] \"a\": the reason must be a string"):
        read_baseline(path)


def test_list_json_shows_since_for_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["check_id"] for row in rows} == set(CHECKS)
    assert {row["since"] for row in rows} == {"0.1.0"}


CHECKED = """
    class Wrapping:
        def __len__(self):
            return 6

        def __getitem__(self, index):
            return (index % 6, (index % 6) ** 2)
"""
PAST_END = "map_dataset.index_past_end_raises_index_error"


@pytest.fixture
def wrapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    write_user_module(tmp_path, monkeypatch, "cli_wrapping_mod", user_module(CHECKED))
    return "cli_wrapping_mod:Wrapping"


def test_check_format_markdown_prints_a_table(wrapping: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["check", wrapping, "--protocol", "MapDataset", "--format", "markdown", "-o", "num_workers=2"]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert f"### {wrapping} (MapDataset): FAIL" in out
    assert f"| `{PAST_END}` | required | failed | ds[6] returned (0, 0)" in out


def test_check_baseline_blesses_and_todo_fails(
    wrapping: str, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    baseline = Path(str(tmp_path)) / "b.toml"
    baseline.write_text(f'["{wrapping}"]\n"{PAST_END}" = "wraps on purpose"\n')
    assert main(["check", wrapping, "--protocol", "MapDataset", "--baseline", str(baseline)]) == 0
    assert "xfailed" in capsys.readouterr().out
    baseline.write_text(f'["{wrapping}"]\n"{PAST_END}" = "TODO"\n"map_dataset.nope" = "x"\n')
    assert main(["check", wrapping, "--protocol", "MapDataset", "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert '= "TODO": write why the check fails' in out
    assert '"map_dataset.nope" matches no check of MapDataset' in out
    assert out.splitlines()[-1].startswith(
        f"torchcontract check: FAILED: 1 of 1 target failed: {wrapping}: {PAST_END} failed, "
        f"baseline entry '{PAST_END}' is still TODO and 1 more"
    )
