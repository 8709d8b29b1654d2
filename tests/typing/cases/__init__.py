"""Typing cases, in the style of typeshed's ``test_cases``: mypy and pyright must accept them exactly as
written (``../_harness.py`` says how each is run).

- Code that must be accepted is plain code; ``assert_type`` pins a type where it matters.
- Code that must be rejected carries ``# type: ignore[<code>]`` with mypy's specific error code. mypy
  runs with ``--strict --warn-unused-ignores --enable-error-code ignore-without-code``, and pyright with
  ``reportUnnecessaryTypeIgnoreComment``, so an expected error that disappears fails the test just like
  an unexpected one.
- Where the checkers legitimately disagree, the line names the one that reports the error and says why
  the other does not: ``# type: ignore[<code>]  # mypy only: <why>`` or
  ``# pyright: ignore[<rule>]  # pyright only: <why>``. Such a line is a documented difference (README,
  SPEC.md's limits), never a way to silence a checker.
- A file that imports an optional dependency starts with a comment ``# requires: torch`` (a
  comma-separated list of modules); where one is missing, its test is skipped with that reason. An
  import that is neither the standard library, ``typing_extensions``, ``numpy``, ``torchcontract`` nor
  a ``# requires:`` module fails ``test_optional_imports_are_declared``.
- The verdict table: module-level one-line assignments ``ok_<what>: <Protocol>[...] = <expr>`` (accepted)
  and ``bad_<what>: <Protocol>[...] = <expr>  # type: ignore[assignment]`` (rejected); the name says
  mypy's verdict, and pyright's too unless the line is marked. They are executed when the module is
  imported, so ``test_runtime_agrees`` can compare ``isinstance`` with mypy's verdict: keep those
  expressions cheap and valid at run time; put code that only type-checks (calls that would fail) inside
  functions.
- A value typed as a protocol comes from a function's return (``def int_dataset() -> MapDataset[int]``),
  not from a variable annotated with it: pyright narrows a variable's declared type to the type of the
  value assigned, so ``x: MapDataset[object] = PlainMapDataset()`` is a ``PlainMapDataset`` to it.
- Plain classes shared between files live in ``_classes.py``; it must type-check cleanly too.

Adding a topic is dropping a file here: ``test_cases.py`` finds it (``reference_impl.py``, for the
reference implementation's classes, is the next one).
"""
