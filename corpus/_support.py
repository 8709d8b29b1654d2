"""What the corpus's test files share: the slice being run, the classified declarations, and the verdict.

Every expected failure of the corpus has a class, the first word of its reason, so that a run's summary
counts failures by class (``_summary.py``):

- ``DEVIATION <key>``: torch's documented deviation, a row of
  ``torchcontract.conformance._targets.deviations``;
- ``FINDING <key>``: a genuine torch (or torchvision) bug, written up with a reproducer in
  ``thirdparty/FINDINGS.md`` (``FINDINGS`` below names each one's section);
- ``INVALID INPUT``: a module_db input that is invalid for the call it describes (it raises as it is),
  with what makes it so;
- ``DECLARED``: a library's documented design that a clause does not allow, with the documentation it
  follows (as ``thirdparty/FINDINGS.md``'s "Declared, not findings" table).

Any other failure, error, unverified or xpassed result is a false verdict (or a new finding) to look at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from torchcontract.conformance import Report
from torchcontract.conformance._targets.deviations import DEVIATIONS

__all__ = [
    "FINDINGS",
    "declared",
    "deviation",
    "finding",
    "invalid_input",
    "is_fast",
    "judge",
    "record",
    "unexpected_results",
]

# "fast" (the CI slice) or "full"; set by conftest.py from --corpus-slice before the test files are
# imported (their targets are chosen at import).
SLICE = "full"


def is_fast() -> bool:
    """Whether this run is the fast slice."""
    return SLICE == "fast"


# The genuine bugs the corpus found, by key: the title of their section in thirdparty/FINDINGS.md.
FINDINGS: dict[str, str] = {
    "ctc-loss-non-contiguous-targets": (
        "torch 2.14.1: nn.CTCLoss (F.ctc_loss) on the CPU computes another loss for non-contiguous 1-D "
        "(concatenated) int64 targets"
    ),
    "local-response-norm-non-contiguous-5d": (
        "torch 2.14.1: F.local_response_norm (nn.LocalResponseNorm) raises on a non-contiguous 5-D input"
    ),
    "ctc-loss-gradient-of-logits": (
        "torch 2.14.1: nn.CTCLoss's backward gives the gradient with respect to the logits before a "
        "log_softmax, not with respect to its log_probs argument"
    ),
    "regnet-meta-device": ("torchvision 0.29.1: the RegNet builders cannot build under torch.device('meta')"),
    "weight-norm-double-backward": (
        "torch 2.14.1: the double backward of torch._weight_norm is wrong with respect to v"
    ),
    "orthogonal-meta-device": (
        "torch 2.14.1: parametrizations.orthogonal on a square weight cannot be built on the meta device"
    ),
    "skip-init-default-device": "torch 2.14.1: nn.utils.skip_init ignores the default device",
    "scriptmodule-deepcopy-non-leaf": (
        "torch 2.14.1: copy.deepcopy of a TorchScript module gives parameters that are not leaves"
    ),
    "qat-not-picklable": (
        "torch 2.14.1: a model prepared with torch.ao.quantization.prepare_qat cannot be pickled"
    ),
    "raft-float32-only": "torchvision 0.29.1: RAFT runs in float32 only",
    "keypointrcnn-float64-keypoints": "torchvision 0.29.1: Keypoint R-CNN rejects float64 keypoints",
}


def deviation(*keys: str) -> dict[str, str]:
    """``{check_id: reason}`` of the named rows of torch's deviations table, each reason tagged with its
    class (``DEVIATION <key>: ...``)."""
    known = {row.key: row for row in DEVIATIONS}
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise KeyError(f"no deviation named {', '.join(unknown)}")
    return {known[key].check_id: f"DEVIATION {key}: {known[key].reason}" for key in keys}


def finding(key: str, *check_ids: str) -> dict[str, str]:
    """``{check_id: reason}`` declaring the finding ``key`` (a section of thirdparty/FINDINGS.md) as the
    reason ``check_ids`` fail."""
    if key not in FINDINGS:
        raise KeyError(f"no finding named {key}")
    return {check_id: f"FINDING {key}: {FINDINGS[key]} (thirdparty/FINDINGS.md)" for check_id in check_ids}


def invalid_input(why: str, *check_ids: str) -> dict[str, str]:
    """``{check_id: reason}`` for a module_db input that is itself invalid for the call: ``why`` says
    what makes it so."""
    return {check_id: f"INVALID INPUT: {why}" for check_id in check_ids}


def declared(documentation: str, *check_ids: str) -> dict[str, str]:
    """``{check_id: reason}`` for a documented design: ``documentation`` says what is documented, and
    where."""
    return {check_id: f"DECLARED: {documentation}" for check_id in check_ids}


# What a corpus test tolerates: a pass, a skip (the clause does not apply), a declared failure.
_EXPECTED = ("passed", "skipped", "xfailed")


def unexpected_results(report: Report) -> list[str]:
    """One line per result that is neither a pass, a skip nor a declared failure (a failure of a
    recommended clause included: in the corpus every failure is declared or is a false verdict), and
    per stale expected failure."""
    lines = [
        f"{result.label} {result.status} ({result.severity}): {_first_line(result.message)}"
        for result in report.results
        if result.status not in _EXPECTED
    ]
    lines += [f"stale expected failure {check_id!r}" for check_id in report.stale_expected_failures]
    return lines


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


# The user property a corpus test records its report under (conftest.py reads it from the test's
# report, also on pytest-xdist's controller).
PROPERTY = "corpus_report"


def record(node: Any, report: Report) -> None:
    """Attach ``report``'s results to the test ``node`` for the run's summary."""
    node.user_properties.append((PROPERTY, json.dumps(_rows(report.target, report.results))))


def _rows(target: str, results: Iterable[Any]) -> list[dict[str, str]]:
    return [
        {
            "target": target,
            "check": result.label,
            "severity": result.severity,
            "status": result.status,
            "message": _first_line(result.message),
        }
        for result in results
    ]


def rows_of_plugin_test(properties: Mapping[str, str]) -> list[dict[str, str]]:
    """The one result of a test generated by ``parametrize_with_checks``, from its user properties."""
    check = properties["check_id"] + (f"[{properties['dtype']}]" if "dtype" in properties else "")
    return [
        {
            "target": properties["target"],
            "check": check,
            "severity": properties["severity"],
            "status": properties.get("status", "error"),
            "message": properties.get("message", ""),
        }
    ]


def judge(node: Any, report: Report) -> None:
    """Record ``report`` for the summary, and fail the test ``node`` with every unexpected result."""
    import pytest

    record(node, report)
    unexpected = unexpected_results(report)
    if unexpected:
        pytest.fail(
            f"{report.target} ({report.protocol}): {len(unexpected)} unexpected result(s)\n  "
            + "\n  ".join(unexpected),
            pytrace=False,
        )
