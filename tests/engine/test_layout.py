"""The src layout: only the installed package is importable, and importing it registers each check once;
the package's namespace and version."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["conformance", "protocols", "reference_impl"])
def test_the_repository_top_level_is_not_a_package(name: str) -> None:
    # Before the src layout, `import conformance.checks.map_dataset` from the repository registered
    # every check a second time and raised.
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "ModuleNotFoundError" in done.stderr


def test_importing_a_check_module_directly_registers_nothing_twice() -> None:
    script = (
        "import torchcontract.conformance.checks.sampler, torchcontract.conformance as c; "
        "print(len(c.CHECKS))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    from torchcontract.conformance import CHECKS

    assert int(done.stdout) == len(CHECKS)


def _pyproject_version() -> str:
    # The [project] table's version, the single source of the version (a regex: Python 3.10 has no tomllib).
    match = re.search(r'(?m)^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert match, "no version in pyproject.toml"
    return match[1]


def test_version_is_the_distribution_version() -> None:
    import torchcontract

    assert torchcontract.__version__ == _pyproject_version()
    assert "__version__" in dir(torchcontract)


def test_version_is_read_on_first_use() -> None:
    # importlib.metadata takes tens of milliseconds to import: `import torchcontract` must not pay it.
    script = (
        "import sys, torchcontract; "
        "print('importlib.metadata' in sys.modules, torchcontract.__version__, 'numpy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", _pyproject_version(), "False"]


def test_version_without_distribution_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    # A source tree that was never installed has no metadata to read: a version that sorts first.
    import importlib.metadata

    import torchcontract

    def not_found(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    assert torchcontract.__version__ == _pyproject_version()  # read now: monkeypatch puts it back after
    monkeypatch.setattr(importlib.metadata, "version", not_found)
    monkeypatch.delitem(vars(torchcontract), "__version__")
    assert torchcontract.__version__ == "0+unknown"


def test_a_missing_attribute_of_the_package_is_an_attribute_error() -> None:
    import torchcontract
    import torchcontract.conformance

    for module in (torchcontract, torchcontract.conformance):
        with pytest.raises(AttributeError, match="has no attribute 'chekc'"):
            getattr(module, "chekc")  # noqa: B009
    with pytest.raises(ImportError, match="cannot import name 'chekc'"):
        exec("from torchcontract.conformance import chekc", {})


def test_dir_shows_the_public_names() -> None:
    import torchcontract
    import torchcontract.conformance

    assert dir(torchcontract.conformance) == sorted(torchcontract.conformance.__all__)
    private = [name for name in dir(torchcontract) if name.startswith("_") and not name.endswith("__")]
    assert not private, private
    namespace: dict[str, object] = {}
    exec("from torchcontract.conformance import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(torchcontract.conformance.__all__)
