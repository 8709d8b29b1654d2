"""What a message quotes of an exception: where the object raised it (a frame of the object's code, never
one of torchcontract's own: a built-in's exception, raised in C code that torchcontract called, has no
frame of its own), and its text without terminal escape sequences."""

from __future__ import annotations

import inspect
import os
from typing import Any

import torchcontract.conformance
from torchcontract.conformance import check
from torchcontract.protocols import CollateFn

SUITE = os.path.dirname(torchcontract.conformance.__file__)


def adding_collate(samples: list[Any]) -> Any:
    """Sums its samples: on str samples, the built-in sum raises TypeError, called from this line."""
    return sum(samples)


def _failures(collate: Any) -> list[str]:
    report = check(collate, CollateFn, example_inputs=["a", "b"])
    failed = [result.message for result in report.results if result.status == "failed"]
    assert failed, str(report)
    return failed


def test_a_builtin_that_raises_names_no_file_of_torchcontract() -> None:
    for message in _failures(sum):
        assert message.startswith("collate(samples) raised TypeError: unsupported operand type(s) for +: ")
        assert SUITE not in message
        assert ".py:" not in message


def test_the_objects_own_code_is_named_where_it_raised() -> None:
    line = inspect.getsourcelines(adding_collate)[1] + 2
    for message in _failures(adding_collate):
        assert f"({__file__}:{line});" in message
        assert SUITE not in message


def colourful_collate(samples: list[Any]) -> Any:
    """Raises with a message in colour, as some libraries' errors are (torch.load's weights-only one)."""
    raise ValueError(
        "\x1b[1mbatch refused\x1b[0m: \x1b[31mno\x1b[0m samples \x1b]8;;http://x\x07here\x1b]8;;\x07"
    )


def test_a_message_holds_no_terminal_escape_sequences() -> None:
    for message in _failures(colourful_collate):
        assert "\x1b" not in message
        assert "raised ValueError: batch refused: no samples here (" in message
