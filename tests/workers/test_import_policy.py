"""What runs when a main script is imported, as the spawn clauses judge it before a fresh interpreter
re-imports the script (``_runtime.fresh.main_script.unsafe_statement``): judged as Python runs it, so a
guarded script is not refused for code that only runs when called, nor accepted for code that runs
at its definition."""

from __future__ import annotations

import ast
import textwrap

import pytest

from torchcontract.conformance._runtime.fresh.main_script import unsafe_statement

GUARD = "\nif __name__ == '__main__':\n    main()\n"


def _first_run(source: str) -> int | None:
    """The line of the first statement that runs code when the source is imported, or None."""
    found = unsafe_statement(ast.parse(textwrap.dedent(source)).body)
    return None if found is None else found.lineno


@pytest.mark.parametrize(
    "source",
    [
        'FACTORIES = {"six": lambda: DS(6)}',  # a lambda's body runs when it is called
        "MAKE = lambda n: DS(n)",
        "def build(n):\n    return DS(n)",  # a function's body too
        "@dataclass(frozen=True)\nclass Config:\n    size: int = 6",  # a decorator that only wraps
        "class DS:\n    size = 6\n\n    def __getitem__(self, i):\n        return make(i)",
        "PICKS = [i * 2 for i in (0, 1, 2)]",  # a comprehension that calls nothing
    ],
)
def test_code_that_runs_only_when_called_leaves_a_guarded_script_importable(source: str) -> None:
    assert _first_run(source + GUARD) is None


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("DATASETS = [DS(i) for i in range(3)]", 1),  # a comprehension runs at import
        ("MAKE = lambda n=DS(6): n", 1),  # a lambda's default value runs at its definition
        ("def build(ds=DS(6)):\n    return ds", 1),  # so does a function's
        ("@register('six')\ndef build():\n    return 6", 2),  # and a decorator
        ("class Trainer(Base, metaclass=make_meta()):\n    pass", 1),  # and a class's keywords
        ("class DS:\n    cache = load_everything()", 2),  # and a class body
    ],
)
def test_code_that_runs_at_import_is_found_wherever_it_is(source: str, line: int) -> None:
    assert _first_run(source + GUARD) == line
