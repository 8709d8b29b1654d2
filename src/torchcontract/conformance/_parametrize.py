"""``parametrize_with_checks``: one pytest test per (target, check), for third-party test suites.

The decorator only marks the test; the plugin (:mod:`torchcontract.conformance.plugin`) expands the mark
in ``pytest_generate_tests``, once the command-line options (devices, time budget) are known.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from torchcontract.conformance._core.arguments import DEFAULT_TIME_BUDGET_S
from torchcontract.conformance._core.errors import ConformanceWarning
from torchcontract.conformance._core.target import Target
from torchcontract.conformance._pytest_shared import MARK, ExpectedCheckFailure, active_in
from torchcontract.conformance._results import CheckResult
from torchcontract.conformance._runtime import compiler_cache

if TYPE_CHECKING:
    import pytest

__all__ = ["MARK", "CheckCase", "StaleExpectedFailure", "parametrize_with_checks"]


def parametrize_with_checks(targets: Sequence[Target]) -> pytest.MarkDecorator:
    """Make the decorated test run once per (target, check), with ids ``<target name>-<check id>``.

    The test takes two arguments, ``target`` and ``check``, and its body is ``check(target)``:

    >>> from torchcontract.protocols import Sampler
    >>> @parametrize_with_checks([Target(range(4), Sampler, name="indices", data_source_len=4)])
    ... def test_conformance(target, check):
    ...     check(target)

    A failed required check fails its test with the check's message; a failed recommended check
    passes with a :class:`ConformanceWarning` (fails under ``--conformance-strict``); expected
    failures xfail (and xpass when they pass, which fails under pytest's ``xfail_strict``); an
    expected-failure id that matches no check gets a failing test of its own. Device-dependent checks
    get one test per device of ``--conformance-devices`` (ids ending in the device); the per-dtype
    checks of a target with ``dtypes=`` one test per dtype (ids ending in it: ``-float64``).
    """
    import pytest

    if isinstance(targets, Target) or not isinstance(targets, Sequence):
        raise TypeError("parametrize_with_checks takes a list of Target objects")
    for target in targets:
        if not isinstance(target, Target):
            raise TypeError(
                f"parametrize_with_checks takes Target objects, got {target!r}; wrap it: "
                "Target(obj, protocol, name=...)"
            )
    names = [target.name for target in targets]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"target names must be unique (they are test ids): {', '.join(repeated)}")
    if not targets:
        raise ValueError("parametrize_with_checks needs at least one target")
    if _collected_without_the_plugin():
        raise RuntimeError(
            "parametrize_with_checks needs torchcontract's pytest plugin, which is disabled in this run "
            "(-p no:torchcontract, or PYTEST_DISABLE_PLUGIN_AUTOLOAD without -p torchcontract); "
            "without it no conformance test is generated. Enable it: remove -p no:torchcontract, or "
            "add -p torchcontract.conformance.plugin"
        )
    return pytest.mark.torchcontract_checks(tuple(targets))


def _collected_without_the_plugin() -> bool:
    """Whether pytest is importing the calling test module in a session where torchcontract's plugin
    is disabled: without it, no conformance test is generated."""
    import pytest

    frame = sys._getframe(1)
    while frame is not None:
        # The session's configuration, from the innermost of pytest's frames that holds it (the
        # import of the test module: a Config, or a node or hook that has one).
        if str(frame.f_globals.get("__name__", "")).startswith("_pytest."):
            for value in list(frame.f_locals.values()):
                config = value if isinstance(value, pytest.Config) else _config_of(value)
                if isinstance(config, pytest.Config):
                    return not active_in(config)
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _config_of(value: object) -> object:
    try:
        return getattr(value, "config", None)
    except Exception:  # a property of some local of pytest's that raises: not a holder of the config
        return None


class CheckCase:
    """The ``check`` argument of a generated test: ``check(target)`` runs one check on the target."""

    def __init__(
        self,
        target: Target,
        check_id: str,
        device: str,
        time_budget_s: float = DEFAULT_TIME_BUDGET_S,
        recorder: Callable[[Target, CheckResult], None] | None = None,
        *,
        strict: bool = False,
        todo: str | None = None,
        dtype: str | None = None,
    ) -> None:
        self.target = target
        self.check_id = check_id
        self.device = device
        # One of the target's dtypes, for a per-dtype check of a target with dtypes=; else None.
        self.dtype = dtype
        self.time_budget_s = time_budget_s
        # --conformance-strict: a failed (or unverified) recommended check fails its test too.
        self.strict = strict
        # A baseline entry whose reason is still TODO: the test fails until someone writes the reason.
        self.todo = todo
        self._recorder = recorder
        self._recorded: set[int] = set()

    def __repr__(self) -> str:
        dtype = f", dtype={self.dtype!r}" if self.dtype is not None else ""
        return f"CheckCase({self.target.name!r}, {self.check_id!r}, device={self.device!r}{dtype})"

    def run(self, target: Target | None = None) -> CheckResult:
        """Run the check (memoised per target, device and dtype) and return its result, without judging
        it."""
        target = self.target if target is None else target
        dtype = self.dtype if self.dtype in target.options.dtype_names else None
        with compiler_cache.recompilations_undone():
            result = target.session(self.device, self.time_budget_s, dtype).result(self.check_id)
        # The plugin runs the check in the test's setup (an internal error is a pytest error), and
        # the test body runs it again (memoised): record each target's result once.
        if self._recorder is not None and id(target) not in self._recorded:
            self._recorded.add(id(target))
            self._recorder(target, result)
        return result

    def __call__(self, target: Target | None = None) -> CheckResult:
        """Run the check and turn its result into the test's outcome: a failed required check fails
        the test, and so does one that could not be verified; a failed (or unverified) recommended
        check passes with a :class:`ConformanceWarning`; an internal error of torchcontract is a
        test error (raised in the test's setup by the plugin)."""
        import pytest

        result = self.run(target)
        if self.todo is not None:
            pytest.fail(f"{self.todo}\n{result.label} {result.status}: {result.message}", pytrace=False)
        if result.status == "skipped":
            pytest.skip(result.message)
        if result.status == "error":
            pytest.fail(result.message, pytrace=False)
        recommended = result.severity == "recommended"
        if result.status in ("failed", "unverified") and recommended and not self.strict:
            warnings.warn(
                ConformanceWarning(f"{result.label} (recommended): {result.message}"),
                stacklevel=2,
            )
            return result
        if result.status == "unverified":
            pytest.fail(f"{result.label} could not be verified:\n{result.message}", pytrace=False)
        if result.status in ("failed", "xfailed"):
            lead = " (recommended; fails under --conformance-strict)" if recommended else ""
            raise ExpectedCheckFailure(f"{result.label} failed{lead}:\n{result.message}", pytrace=False)
        return result


class StaleExpectedFailure:
    """The ``check`` argument of the test generated for an expected failure that names no check."""

    def __init__(self, target: Target, check_id: str, source: str | None = None) -> None:
        self.target = target
        self.check_id = check_id
        self.source = source  # the baseline file that declares it, if it does

    def __repr__(self) -> str:
        return f"StaleExpectedFailure({self.target.name!r}, {self.check_id!r})"

    def __call__(self, target: Target | None = None) -> None:
        import pytest

        lead = f"baseline {self.source}: " if self.source else ""
        pytest.fail(lead + self.target.stale_message(self.check_id), pytrace=False)
