"""Every file torchcontract writes (the CLI's ``--json``, the plugin's ``--conformance-report``,
``--conformance-summary-md`` and ``--conformance-write-baseline``) is written whole or not at all: on a
full disk or under a file-size limit the previous file is left as it was, no temporary file is left
behind, and the run ends with an error naming the path (never a traceback)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchcontract._files import OutputError, output_problem, write_atomically

# A file-size limit (ulimit -f) in a child process: any write past it fails with EFBIG ("File too
# large"; Python ignores SIGXFSZ), as a full disk fails with ENOSPC.
LIMIT = 400


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _run_limited(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=_limited,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- the helper ---------------------------------------------------------------------------------------


def test_a_write_replaces_the_file_and_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o600)
    write_atomically(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == []


def test_a_new_file_gets_the_mode_of_any_new_file(tmp_path: Path) -> None:
    umask = os.umask(0o027)
    try:
        write_atomically(tmp_path / "deep" / "report.json", "new")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "deep" / "report.json").stat().st_mode) == 0o640


def test_a_symbolic_link_keeps_pointing_at_the_replaced_file(tmp_path: Path) -> None:
    real = tmp_path / "real.md"
    real.write_text("first\n", encoding="utf-8")
    link = tmp_path / "summary.md"
    link.symlink_to(real)
    write_atomically(link, "second\n", append=True)
    assert link.is_symlink()
    assert real.read_text(encoding="utf-8") == "first\nsecond\n"


def test_a_target_that_is_no_regular_file_is_written_to(tmp_path: Path) -> None:
    write_atomically(os.devnull, "anything")  # never replaced by a regular file
    assert not stat.S_ISREG(os.stat(os.devnull).st_mode)


@pytest.mark.parametrize("append", [False, True], ids=["write", "append"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path, append: bool) -> None:
    target = tmp_path / "summary.md"
    target.write_text("# the old summary\n", encoding="utf-8")
    script = textwrap.dedent(
        f"""
        from torchcontract._files import OutputError, write_atomically
        try:
            write_atomically({str(target)!r}, "x" * {4 * LIMIT}, append={append})
        except OutputError as error:
            print("REFUSED", error)
        """
    )
    done = _run_limited([sys.executable, "-c", script], tmp_path)
    assert done.stdout.startswith("REFUSED"), done.stdout + done.stderr
    assert str(target) in done.stdout
    assert "File too large" in done.stdout
    assert target.read_text(encoding="utf-8") == "# the old summary\n"
    assert _leftovers(tmp_path) == []


def test_write_idx_replaces_the_file_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "labels-idx1-ubyte"
    target.write_bytes(b"the old labels")
    script = textwrap.dedent(
        f"""
        import numpy as np
        from torchcontract.reference_impl import write_idx
        try:
            write_idx({str(target)!r}, np.zeros({4 * LIMIT}, np.uint8))
        except OSError as error:
            print("REFUSED", error)
        """
    )
    done = _run_limited([sys.executable, "-c", script], tmp_path)
    assert done.stdout.startswith("REFUSED"), done.stdout + done.stderr
    assert target.read_bytes() == b"the old labels"
    assert _leftovers(tmp_path) == []


@contextlib.contextmanager
def _small_file_system(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` (root only): a disk that fills up."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0, reason="mounts a tmpfs: root on Linux"
)
def test_a_full_disk_leaves_the_old_file(tmp_path: Path) -> None:
    with _small_file_system(tmp_path / "disk", "64k") as disk:
        target = disk / "report.json"
        target.write_text('{"old": true}', encoding="utf-8")
        with pytest.raises(OutputError, match="No space left on device") as raised:
            write_atomically(target, "x" * (256 * 1024))
        assert str(target) in str(raised.value)
        assert target.read_text(encoding="utf-8") == '{"old": true}'
        assert _leftovers(disk) == []


def test_a_directory_where_nothing_can_be_created_is_found_before_a_run(tmp_path: Path) -> None:
    if sys.platform.startswith("linux"):
        # /proc takes no new files, whatever the permission bits say (root passes os.access there).
        assert output_problem("/proc/torchcontract-report.json") is not None
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    assert "is not a directory" in (output_problem(str(tmp_path / "a_file" / "x.json")) or "")
    assert "is a directory" in (output_problem(str(tmp_path)) or "")
    assert output_problem(str(tmp_path / "new" / "deeper" / "x.json")) is None
    assert _leftovers(tmp_path) == []


# -- the command line ---------------------------------------------------------------------------------

OBJECTS = """
class Squares:
    def __len__(self):
        return 8

    def __getitem__(self, index):
        if not -8 <= index < 8:
            raise IndexError(index)
        return (index % 8) ** 2


squares = Squares()
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "torchcontract.conformance.cli", *args]


def test_cli_json_that_cannot_be_written_keeps_the_old_report_and_exits_4(tmp_path: Path) -> None:
    (tmp_path / "objs.py").write_text(OBJECTS, encoding="utf-8")
    report = tmp_path / "report.json"
    report.write_text('{"old": true}', encoding="utf-8")
    done = _run_limited(
        _cli("check", "objs:squares", "--protocol", "MapDataset", "--json", str(report)), tmp_path
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "PASSED" in done.stdout  # the results are shown
    assert "Traceback" not in done.stderr, done.stderr
    assert f"cannot write {report}: File too large (the file is as it was)" in done.stderr
    assert report.read_text(encoding="utf-8") == '{"old": true}'
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_cli_json_where_no_file_can_be_created_is_a_usage_error_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "objs.py").write_text(OBJECTS, encoding="utf-8")
    command = _cli("check", "objs:squares", "--protocol", "MapDataset", "--json", "/proc/report.json")
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""  # refused before anything ran
    assert "/proc/report.json" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_json_dash_writes_the_json_to_standard_output_and_the_report_to_standard_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "objs.py").write_text(OBJECTS, encoding="utf-8")
    command = _cli("check", "objs:squares", "--protocol", "MapDataset", "--json", "-")
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # nothing else on standard output
    assert data["passed"] is True
    assert "objs:squares as MapDataset on cpu: PASSED" in done.stderr
    assert not (tmp_path / "-").exists()


# -- the pytest plugin --------------------------------------------------------------------------------

TEST_FILE = """
from torchcontract.conformance import Target, parametrize_with_checks
from torchcontract.protocols import MapDataset


class Wrapping:
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return (index % 8) ** 2


@parametrize_with_checks([Target(Wrapping(), MapDataset, name="wrapping")])
def test_conformance(target, check):
    check(target)
"""

BASELINE = """\
["wrapping"]
"map_dataset.index_past_end_raises_index_error" = "wraps round on purpose: a ring buffer"
"map_dataset.negative_index_mirrors_python" = "wraps round on purpose, as the index past the end does"
"""


def _pytest(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_conformance.py").write_text(TEST_FILE, encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "test_conformance.py",
        "-q",
        "-p",
        "no:cacheprovider",
        *options,
    ]
    return _run_limited(command, tmp_path)


def test_a_baseline_rewritten_onto_the_one_in_use_keeps_its_reasons_when_the_write_fails(
    tmp_path: Path,
) -> None:
    baseline = tmp_path / "baseline.toml"
    baseline.write_text(BASELINE, encoding="utf-8")
    done = _pytest(tmp_path, f"--conformance-baseline={baseline}", f"--conformance-write-baseline={baseline}")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert f"cannot write {baseline}: File too large (the file is as it was)" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert baseline.read_text(encoding="utf-8") == BASELINE
    assert _leftovers(tmp_path) == []


def test_a_report_and_a_summary_that_cannot_be_written_are_left_as_they_were(tmp_path: Path) -> None:
    report, summary = tmp_path / "report.json", tmp_path / "summary.md"
    report.write_text('{"old": true}', encoding="utf-8")
    summary.write_text("# an earlier step\n", encoding="utf-8")
    done = _pytest(tmp_path, f"--conformance-report={report}", f"--conformance-summary-md={summary}")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert f"cannot write {report}" in done.stderr
    assert f"cannot write {summary}" in done.stderr
    assert "JSON report: not written" in done.stdout
    assert report.read_text(encoding="utf-8") == '{"old": true}'
    assert summary.read_text(encoding="utf-8") == "# an earlier step\n"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("job_summary", [True, False])
def test_the_summary_is_appended_to_the_job_summary_and_replaces_any_other_file(
    tmp_path: Path, job_summary: bool
) -> None:
    # $GITHUB_STEP_SUMMARY collects every step's text; a file in a repository holds one run's alone
    # (appending to it grew it by a copy per run).
    summary = tmp_path / "summary.md"
    summary.write_text("# an earlier step\n", encoding="utf-8")
    (tmp_path / "test_conformance.py").write_text(TEST_FILE, encoding="utf-8")
    command = [sys.executable, "-m", "pytest", "test_conformance.py", "-q", "-p", "no:cacheprovider"]
    environment = {key: value for key, value in os.environ.items() if key != "GITHUB_STEP_SUMMARY"}
    if job_summary:
        environment["GITHUB_STEP_SUMMARY"] = str(summary)
    for _ in range(2):
        subprocess.run(
            [*command, f"--conformance-summary-md={summary}"],
            cwd=tmp_path,
            capture_output=True,
            timeout=300,
            check=False,
            env=environment,
        )
    text = summary.read_text(encoding="utf-8")
    assert "| `map_dataset.index_past_end_raises_index_error` | required | failed |" in text
    if job_summary:
        assert text.startswith("# an earlier step\n## torchcontract conformance")
        assert text.count("## torchcontract conformance") == 2
    else:
        assert text.startswith("## torchcontract conformance")
        assert text.count("## torchcontract conformance") == 1


def test_cli_check_fails_a_baseline_table_that_names_no_target(tmp_path: Path) -> None:
    # One rule everywhere (pytest and `torchcontract report` fail it too): a renamed target would
    # otherwise leave its known failures silently unused.
    (tmp_path / "objs.py").write_text(OBJECTS, encoding="utf-8")
    (tmp_path / "known.toml").write_text(
        '["squares"]\n"map_dataset.samples_are_independent_copies" = "views"\n'
    )
    command = _cli("check", "objs:squares", "--protocol", "MapDataset", "--baseline", "known.toml")
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'table ["squares"] names no target of this run' in done.stdout
    # The closing line says why the run failed.
    closing = done.stdout.splitlines()[-1]
    assert closing.startswith("torchcontract check: FAILED: the run failed: baseline table")
    assert '["squares"] names no target' in closing


def test_the_plugin_refuses_standard_output_for_its_files(tmp_path: Path) -> None:
    (tmp_path / "test_conformance.py").write_text(TEST_FILE, encoding="utf-8")
    command = [sys.executable, "-m", "pytest", "test_conformance.py", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, "--conformance-report=-"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "'-' (standard output) is pytest's own report" in done.stderr
    assert not (tmp_path / "-").exists()
