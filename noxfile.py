"""The test matrix. `nox -l` lists the sessions; `nox -t ci` runs what CI runs.

Interpreters come from pyenv: `.python-version` lists 3.11, 3.10, 3.12 and 3.13 so that the shims
find all four (or set PYENV_VERSION=3.11.7:3.10.13:3.12.1:3.13.0). The package is always installed
non-editable, so the tests see what a user's `pip install` gives.
"""

from __future__ import annotations

import os
import shutil
import sys

import nox

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests", "tests_torch", "tests_numpy1", "report", "docs"]

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DEFAULT_PYTHON = "3.11"
# torch 2.13.0 is a CPU build and has no importable torchvision from PyPI; 2.14.1 comes with 0.29.1.
TORCH_WITH_VISION = ["torch==2.14.1", "torchvision==0.29.1"]
# torchdata's StatefulDataLoader is a correct object of the Stateful tests (skipped where absent), and
# expecttest lets the corpus import torch's module_db (torch.testing._internal.common_modules).
CORPUS_DEPENDENCIES = ["torchdata==0.11.0", "expecttest==0.3.0"]
TORCH_BUILDS = {"2.13.0": ["torch==2.13.0"], "2.14.1": [*TORCH_WITH_VISION, *CORPUS_DEPENDENCIES]}
# The typing cases run under pyright too, at a pinned version: a new release may change its verdicts.
# The [nodejs] extra brings Node.js as a wheel (pyright runs on it; nothing is downloaded at run time).
PYRIGHT = "pyright[nodejs]==1.1.414"
# The documentation's tools, pinned: the build is strict (a warning fails it), and a new release may
# warn where this one did not. mkdocs-material 9.x is in maintenance; its successor reads mkdocs.yml.
DOCS = [
    "mkdocs==1.6.1",
    "mkdocs-material==9.8.2",
    "mkdocstrings==1.0.8",
    "mkdocstrings-python==2.0.11",
    "griffelib==2.4.1",
    "pymdown-extensions==13.1.2",
    "ruff",  # formats the API reference's signatures
]
# Many cores make pytest-xdist worth its start-up; CI has two.
WORKERS = os.environ.get("TORCHCONTRACT_TEST_WORKERS", "auto")


def _pytest(session: nox.Session, *extra: str) -> None:
    session.run("python", "-m", "pytest", "-n", WORKERS, *extra, *session.posargs)


def _discard_venv(session: nox.Session) -> None:
    """Where TORCHCONTRACT_DISCARD_VENVS is set (`.ci/run` sets it), remove the session's venv once it
    has run: a torch venv with CUDA wheels is 5.5 GB, and CI's disk holds one or two, not all six."""
    if os.environ.get("TORCHCONTRACT_DISCARD_VENVS"):
        location = getattr(session.virtualenv, "location", None)
        if location:
            shutil.rmtree(location, ignore_errors=True)


@nox.session(python=PYTHONS, tags=["ci"])
def tests(session: nox.Session) -> None:
    """The suite without torch: protocols, reference implementation, engine on non-torch objects."""
    session.install(".[test]")
    _pytest(session)


@nox.session(python=[DEFAULT_PYTHON], tags=["ci"])
@nox.parametrize("torch", list(TORCH_BUILDS))
def tests_torch(session: nox.Session, torch: str) -> None:
    """The whole suite with a torch build (and torchvision where one exists for it); with 2.14.1 also the
    fast slice of the corpus of torch's own objects (about a minute on 2 cores; the whole corpus is
    `nox -s corpus`)."""
    try:
        session.install(".[test]", *TORCH_BUILDS[torch])
        _pytest(session)
        if torch == "2.14.1":
            _corpus(session, "--corpus-slice=fast")
    finally:
        _discard_venv(session)


def _corpus(session: nox.Session, *extra: str) -> None:
    """pytest over corpus/, its summary (objects, results, failures by class, time) written beside."""
    summary = f"{session.create_tmp()}/corpus-summary.json"
    # The largest torchvision models run one at a time, under a lock (corpus/test_torchvision.py, LARGE).
    # glibc keeps freed buffers below its (growing, up to 32 MB) mmap threshold in its heap: a fixed
    # 1 MB threshold hands every model-sized buffer back when it is freed, so that checking vit_h_14
    # peaks at 10.6 GB instead of growing past 17 GB over its checks.
    session.run(
        "python", "-m", "pytest", "corpus", f"--corpus-summary={summary}", "-n", WORKERS,
        *extra, env={"MALLOC_MMAP_THRESHOLD_": str(1 << 20)},
    )  # fmt: skip


@nox.session(python=DEFAULT_PYTHON, tags=["ci"])
def tests_numpy1(session: nox.Session) -> None:
    """The suite on NumPy 1 (the reference implementation supports NumPy 1.26 and 2)."""
    session.install(".[test]", "numpy==1.26.4")
    session.run("python", "-c", "import numpy; assert numpy.__version__.startswith('1.'), numpy.__version__")
    _pytest(session)


@nox.session(python=DEFAULT_PYTHON, tags=["ci"])
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the installed package (Python 3.10 and 3.13 rules), then the typing cases under
    mypy and pyright (which must be there: its tests fail instead of skipping)."""
    packages = ["-p", "torchcontract.protocols", "-p", "torchcontract.conformance"]
    packages += ["-p", "torchcontract.reference_impl"]
    try:
        session.install(".[test]", PYRIGHT, *TORCH_BUILDS["2.13.0"])
        for version in ("3.10", "3.13"):
            session.run("mypy", "--strict", "--python-version", version, *packages)
        require_pyright = {"TORCHCONTRACT_REQUIRE_PYRIGHT": "1"}
        session.run("python", "-m", "pytest", "tests/typing", *session.posargs, env=require_pyright)
    finally:
        _discard_venv(session)


@nox.session(python=DEFAULT_PYTHON, tags=["ci"])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON, tags=["ci"])
def report(session: nox.Session) -> None:
    """The main job: the conformance report of the reference implementation, torch and torchvision."""
    path = session.posargs[0] if session.posargs else "conformance-report.json"
    try:
        session.install(".", *TORCH_WITH_VISION)
        session.run("torchcontract", "report", "--json", path)
    finally:
        _discard_venv(session)


@nox.session(python=DEFAULT_PYTHON, tags=["ci"])
def docs(session: nox.Session) -> None:
    """The documentation: its generated blocks held to the code, the API reference to the public names,
    the docstrings' and pages' examples run (tests/docs; the blocks rendered with torch are checked by
    tests_torch), then the site built strict and offline into the session's temporary folder.
    `nox -s docs -- --write` rewrites the blocks this session can render instead."""
    session.install(".[test]", *DOCS)
    if "--write" in session.posargs:
        session.run("python", "tools/generated_docs.py", "--write")
        return
    session.run("python", "-m", "pytest", "tests/docs", "-n", "0", *session.posargs)
    site = f"{session.create_tmp()}/site"
    session.run("mkdocs", "build", "--strict", "--site-dir", site, env={"NO_MKDOCS_2_WARNING": "1"})
    session.log(f"the site is in {site}")


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: the reference implementation against torch, and the conformance suite's own cost
    (the "suite" section: its ratios beside their goals), measured in the same run
    (`nox -s bench -- --only suite`)."""
    session.install(".", *TORCH_WITH_VISION)
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def flakes(session: nox.Session) -> None:
    """Opt-in: the mutant and correct-object corpora 20 times, each with other seeds and
    PYTHONHASHSEED; fails if any verdict changes (`nox -s flakes -- --runs 5` for fewer;
    `nox -s flakes -- --contention` with two busy processes per core competing for the CPU)."""
    session.install(".[test]", *TORCH_WITH_VISION)
    session.run("python", "tests/flakes.py", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def corpus(session: nox.Session) -> None:
    """Opt-in: the corpus of torch's own objects (module_db, every torchvision classifier,
    torch.utils.data, torchdata), about an hour on 2 cores; expects no false verdict and no internal
    error (`nox -s corpus -- --corpus-slice=fast` for the slice that tests_torch runs in CI)."""
    session.install(".[test]", *TORCH_BUILDS["2.14.1"])
    session.run(
        "python", "-c", "import torch; assert torch.__version__.startswith('2.14.1'), torch.__version__"
    )
    _corpus(session, *session.posargs)


# The third-party libraries, pinned: a later release must not change the findings silently. Each
# installs beside torch 2.14.1 without replacing it (pip install --dry-run lists no torch).
THIRDPARTY = [
    "datasets==5.2.0",
    "timm==1.0.31",
    "torchdata==0.11.0",
    "skorch==1.4.0",
    "scikit-learn==1.9.1",
    "speechbrain==1.1.2",
    "HyperPyYAML==1.2.3",
    "soundfile==0.14.0",
    "sentencepiece==0.2.3",
    "pytorch-forecasting==1.8.0",
    "lightning==2.6.6",
    "pandas==3.0.6",
    "torchrl==0.14.1",
    "tensordict==0.14.3",
    "lightly==1.6.0",
    "gpytorch==1.15.2",
    "linear_operator==0.6.1",
    "pyro-ppl==1.9.2",
    "peft==0.21.2",
    "transformers==5.24.0",
    "accelerate==1.15.0",
    "torchao==0.18.0",
    # mosaicml-streaming's own runtime needs (its cloud clients are left out, see below).
    "xxhash==3.8.2",
    "zstd==1.5.7.2",
    "python-snappy==0.7.3",
    "brotli==1.2.1",
    "catalogue==2.0.10",
]
# Installed with --no-deps: mosaicml-streaming pins numpy<2.2 and transformers<5 and pulls every cloud
# client (local MDS folders need none of them); torchaudio 2.11.1 is the newest release, built for
# torch 2.11, and speechbrain's data loading only imports it (no kernel runs).
THIRDPARTY_NO_DEPS = ["mosaicml-streaming==0.13.0", "torchaudio==2.11.1"]


@nox.session(python=DEFAULT_PYTHON)
def thirdparty(session: nox.Session) -> None:
    """Opt-in: the suite on real third-party objects (torchvision, HF datasets, torchdata, timm and the
    ten libraries of thirdparty/test_ecosystem.py), at pinned versions."""
    session.install(".[test]", *TORCH_WITH_VISION, *THIRDPARTY)
    session.install("--no-deps", *THIRDPARTY_NO_DEPS)
    session.run(
        "python", "-c", "import torch; assert torch.__version__.startswith('2.14.1'), torch.__version__"
    )
    report = f"{session.create_tmp()}/thirdparty-report.json"
    session.run("python", "-m", "pytest", "thirdparty", f"--conformance-report={report}", *session.posargs)


if __name__ == "__main__":
    sys.exit("run this file with nox: python -m pip install nox && nox -l")
