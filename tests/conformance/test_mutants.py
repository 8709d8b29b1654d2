"""The suite can fail: every mutant fails the one check it violates, and no other required check.

Recall alone would let a check that fails everything pass this test; precision (no other required
check fails) is what shows that each check tests its own clause. The messages must be usable: they
say what was expected and end with a line that reproduces the failure.
"""

from __future__ import annotations

import time

import pytest

from torchcontract.conformance import CHECKS, CheckResult, Report, check, checks_for

from ..conftest import HAS_TORCH, NO_TORCH_REASON, cuda_available
from .mutants import Mutant, all_mutants

MUTANTS = all_mutants()
# A hung call is abandoned after the budget plus the engine's grace period (2 s); allow scheduling slack.
HANG_SLACK_S = 4.0


def _params() -> list[object]:
    params: list[object] = [
        pytest.param(m, id=m.test_id, marks=pytest.mark.clause(m.violates)) for m in MUTANTS
    ]
    if not HAS_TORCH:
        # Shown in the report, so that a run without torch says what it did not test.
        params.append(pytest.param(None, id="torch_mutants", marks=pytest.mark.skip(reason=NO_TORCH_REASON)))
    return params


def _result(report: Report, check_id: str) -> CheckResult:
    return next(result for result in report.results if result.check_id == check_id)


def _run(mutant: Mutant) -> Report:
    device = "cuda" if mutant.needs_cuda else "cpu"
    return check(mutant.factory(), mutant.protocol, device=device, **mutant.kwargs)


@pytest.mark.parametrize("mutant", _params())
def test_mutant_fails_its_check_and_no_other(mutant: Mutant) -> None:
    started = time.monotonic()
    report = _run(mutant)
    elapsed = time.monotonic() - started
    result = _result(report, mutant.violates)
    if mutant.needs_cuda and not cuda_available():
        # Without a GPU the CUDA-only check must skip cleanly, saying why.
        assert result.status == "skipped", report
        assert "CUDA" in result.message, result.message
        pytest.skip(f"{mutant.violates} needs a CUDA device (torch.cuda.is_available() is False)")

    assert result.status == "failed", f"{mutant.bug}: expected {mutant.violates} to fail\n{report}"
    others = [r.check_id for r in report.results if r.is_violation and r.check_id != mutant.violates]
    assert not others, f"{mutant.bug}: only {mutant.violates} should fail, but so did {others}\n{report}"
    assert not report.passed or result.severity == "recommended"

    # What was expected, and how to reproduce it.
    what, marker, reproducer = result.message.partition("\n  reproduce: ")
    assert marker, f"no reproducer line in: {result.message!r}"
    assert reproducer.strip(), f"empty reproducer in: {result.message!r}"
    assert "expected" in what, f"the message does not say what was expected: {result.message!r}"
    for fragment in mutant.message_contains:
        assert fragment in result.message, f"{fragment!r} not in {result.message!r}"

    if mutant.hangs:
        _assert_hang_contained(mutant, report, elapsed)


def _assert_hang_contained(mutant: Mutant, report: Report, elapsed: float) -> None:
    """The hung check failed within its budget, and every check after it is unverified (never skipped:
    it was not verified), naming the hang; the report does not pass."""
    budget = mutant.kwargs["time_budget_s"]
    assert elapsed < budget + HANG_SLACK_S, f"check() took {elapsed:.1f} s with a {budget} s budget"
    ids = [r.check_id for r in report.results]
    hung_at = ids.index(mutant.violates)
    assert "did not return within the time budget" in report.results[hung_at].message
    after = report.results[hung_at + 1 :]
    assert after, "the hang should come before the last check, so that the checks after it are tested"
    for later in after:
        # Skips for missing needs (torch, CUDA) come first; every other check names the hang.
        if later.status == "skipped" and later.message.startswith("needs"):
            continue
        assert later.status == "unverified", (
            f"{later.check_id} after the hang: {later.status}: {later.message}"
        )
        assert f"hung in {mutant.violates}" in later.message, later.message
    assert not report.passed, "checks that could not be verified must not let the report pass"


def test_the_corpus_has_hanging_mutants() -> None:
    # Otherwise _assert_hang_contained would never run.
    assert {m.protocol.__name__ for m in MUTANTS if m.hangs} >= {"MapDataset", "IterableDataset", "Loader"}


def test_every_mutant_names_a_check_of_its_protocol() -> None:
    for mutant in MUTANTS:
        ids = {c.check_id for c in checks_for(mutant.protocol)}
        assert mutant.violates in ids, f"{mutant.test_id}: {mutant.violates!r} is no check of its protocol"


def test_every_check_has_a_mutant() -> None:
    if not HAS_TORCH:
        pytest.skip(f"the torch mutants cover the torch-only checks: {NO_TORCH_REASON}")
    covered = {m.violates for m in MUTANTS}
    assert sorted(set(CHECKS) - covered) == []


def test_every_check_without_torch_has_a_plain_mutant() -> None:
    """Without torch, the NumPy and plain-Python corpus alone still covers every check it can run."""
    covered = {m.violates for m in MUTANTS if not m.needs_torch}
    runnable = {c.check_id for c in CHECKS.values() if "torch" not in c.needs}
    assert sorted(runnable - covered) == []


def test_every_recommended_check_has_a_mutant_too() -> None:
    # Named separately so that a missing recommended mutant is not lost in the list above.
    # Without torch, the torch mutants are not in the corpus: the checks that need torch are covered by
    # test_every_check_has_a_mutant in the torch sessions.
    recommended = {
        c.check_id
        for c in CHECKS.values()
        if c.severity == "recommended" and (HAS_TORCH or "torch" not in c.needs)
    }
    assert recommended, "the registry should have recommended checks"
    assert sorted(recommended - {m.violates for m in MUTANTS}) == []
