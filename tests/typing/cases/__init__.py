"""Typing cases, in the style of typeshed's ``test_cases``: mypy must accept them exactly as written.

- Code that must be accepted is plain code; ``assert_type`` pins a type where it matters.
- Code that must be rejected carries ``# type: ignore[<code>]`` with mypy's specific error code. mypy
  runs with ``--strict --warn-unused-ignores --enable-error-code ignore-without-code``, so an expected
  error that disappears fails the test just like an unexpected one.
- A file that imports an optional dependency starts with a comment ``# requires: torch`` (a
  comma-separated list of modules); where one is missing, its test is skipped with that reason. An
  import that is neither the standard library, ``typing_extensions``, ``numpy``, ``torchcontract`` nor
  a ``# requires:`` module fails ``test_optional_imports_are_declared``.
- The verdict table: module-level one-line assignments ``ok_<what>: <Protocol>[...] = <expr>`` (accepted)
  and ``bad_<what>: <Protocol>[...] = <expr>  # type: ignore[assignment]`` (rejected). They are executed
  when the module is imported, so ``test_runtime_agrees`` can compare ``isinstance`` with mypy's
  verdict: keep those expressions cheap and valid at run time; put code that only type-checks (calls
  that would fail) inside functions.
- Plain classes shared between files live in ``_classes.py``; it must type-check cleanly too.

Adding a topic is dropping a file here: ``test_cases.py`` finds it (``reference_impl.py``, for the
reference implementation's classes, is the next one).
"""
