"""The import graph of ``src/torchcontract``: the layers import one way, and the suite never imports its
reference implementation.

Every import that runs counts: at module level and inside functions (lazy), read from the source with
``ast``. An import under ``if TYPE_CHECKING:`` does not: it runs only in the type checker, names a type
for an annotation and loads nothing, so it neither orders the layers' loading nor closes a cycle (it is
how a lower layer's annotations name a higher layer's type, as ``_report.verdict`` names the baseline
plan's). Each module has a rank (``RANKS``, lowest first: the layers of README's
"Development"); a module imports only modules of its rank or below, the graph has no cycle, and the
one arrow upwards is the registry's loading of the built-in checks on first use.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "torchcontract"
CONFORMANCE = "torchcontract.conformance"

# Module (or package: every module in it) -> rank, lowest first. The longest matching name decides.
RANKS = {
    # leaves of the package: no import of the project
    "torchcontract": 0,
    "torchcontract._kinds": 0,
    "torchcontract._files": 0,
    "torchcontract.protocols": 0,
    # the reference implementation: the protocols and the leaves only
    "torchcontract.reference_impl": 1,
    # the suite, lowest first
    "torchcontract.conformance._runtime": 2,  # the object boundary: calls, processes
    "torchcontract.conformance._values": 3,  # what the object returned
    "torchcontract.conformance._core": 4,  # the engine's package (imports nothing)
    "torchcontract.conformance._core.errors": 4,
    "torchcontract.conformance._core.arguments": 4,
    "torchcontract.conformance._results": 4,
    # what results mean and how they are shown, for both front-ends (a report renders itself)
    "torchcontract.conformance._report": 4,
    "torchcontract.conformance._core.dtypes": 5,
    "torchcontract.conformance._core.options": 6,
    "torchcontract.conformance._core.registry": 6,
    "torchcontract.conformance._core.context": 7,
    "torchcontract.conformance._core.process_group": 7,
    "torchcontract.conformance._core.isolation": 7,
    "torchcontract.conformance.checks": 8,
    "torchcontract.conformance._core.session": 9,
    "torchcontract.conformance._core.target": 10,
    "torchcontract.conformance._targets": 11,
    # the front-ends
    "torchcontract.conformance._check_distributed": 12,
    "torchcontract.conformance._parametrize": 12,
    "torchcontract.conformance._pytest_shared": 12,
    "torchcontract.conformance.plugin": 13,
    "torchcontract.conformance.cli": 13,
    "torchcontract.conformance": 13,  # the public names, imported on first use
    "torchcontract.__main__": 14,
}
# The registry loads the built-in checks on first use (any way into it sees them), the one arrow up.
SANCTIONED = {("torchcontract.conformance._core.registry", "torchcontract.conformance.checks")}
# The one layer of the suite that imports the reference implementation: the report's targets.
REFERENCE_USERS = ("torchcontract.conformance._targets",)
# What checks import of the engine: the check-author API, the registry's decorator, and the process
# group that the distributed clauses run a loader on.
ENGINE_FOR_CHECKS = {
    "torchcontract.conformance._core.context",
    "torchcontract.conformance._core.registry",
    "torchcontract.conformance._core.process_group",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted((SRC / PACKAGE).rglob("*.py"))}


def _imported(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The project's modules that ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            node.body = []  # annotations only: see the module's docstring
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # ``from package import module`` imports the module; ``from module import name``, the module.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                yield target


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imported(name, path, modules)) for name, path in modules.items()}


def _rank(name: str) -> int:
    matches = [prefix for prefix in RANKS if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} has no rank: add it to RANKS in {__file__} (and README's layout table)"
    return RANKS[max(matches, key=len)]


def test_every_module_has_a_rank_and_every_rank_a_module() -> None:
    modules = _modules()
    for name in modules:
        _rank(name)
    stale = [
        prefix for prefix in RANKS if not any(m == prefix or m.startswith(prefix + ".") for m in modules)
    ]
    assert not stale, f"RANKS names modules that do not exist: {stale}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{source} ({_rank(source)}) imports {target} ({_rank(target)})"
        for source, targets in _graph().items()
        for target in sorted(targets)
        if _rank(target) > _rank(source) and (source, target) not in SANCTIONED
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    for source, target in SANCTIONED:
        assert target in graph[source], f"the sanctioned import {source} -> {target} is gone: remove it"
        graph[source].discard(target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_only_the_report_targets_import_the_reference_implementation() -> None:
    users = sorted(
        source
        for source, targets in _graph().items()
        if source.startswith(CONFORMANCE)
        and any(target.startswith("torchcontract.reference_impl") for target in targets)
    )
    assert users, "the report's targets no longer use the reference implementation: update this test"
    assert all(user.startswith(REFERENCE_USERS) for user in users), users


def test_checks_import_only_the_check_author_api_of_the_engine() -> None:
    found = {
        (source, target)
        for source, targets in _graph().items()
        if source.startswith("torchcontract.conformance.checks")
        for target in targets
        if target.startswith("torchcontract.conformance._core") and target not in ENGINE_FOR_CHECKS
    }
    assert not found, sorted(found)


def test_the_protocols_import_nothing_of_the_project() -> None:
    graph = _graph()
    for source, targets in graph.items():
        if source.startswith("torchcontract.protocols"):
            assert all(target.startswith("torchcontract.protocols") for target in targets), (source, targets)


@pytest.mark.parametrize(
    "code",
    [
        "import torchcontract.conformance",
        "import torchcontract.conformance as c; c.check; c.CHECKS['map_dataset.len_is_non_negative_int']",
        "import torchcontract.conformance.checks",
        (
            "from torchcontract.conformance import check; from torchcontract.protocols import MapDataset; "
            "assert check([1, 2, 3], MapDataset).passed"
        ),
    ],
)
def test_the_suite_imports_no_reference_implementation(code: str) -> None:
    loaded = "sorted(m for m in sys.modules if m.startswith('torchcontract.reference_impl'))"
    script = f"{code}\nimport sys\nprint({loaded})"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
