"""The examples whose real output the docs show: failure messages of the FAQ and the how-to pages, and the
quick start's runs. ``tools/generated_docs.py`` renders each into its ``<!-- generated: example NAME -->``
block, so that a message the docs quote is the message the code gives.

Each object here has one realistic bug (or one documented design, undeclared), and each example runs
the one clause it concerns (its prerequisites run too, unreported).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


# The Python and torch of the docs' examples (noxfile.py's DEFAULT_PYTHON and its torch with torchvision):
# an example whose text quotes their own words (an error message, which changes between releases) is
# rendered, and checked, with them; elsewhere its test skips, saying so.
DOCS_PYTHON = "python==3.11"
TORCH = "torch==2.14"


@dataclasses.dataclass(frozen=True)
class Example:
    """``run()`` returns the text to show; ``needs``: the modules it imports besides torchcontract,
    and ``DOCS_PYTHON`` if its text depends on the version of Python."""

    run: Callable[[], str]
    needs: tuple[str, ...] = ()


EXAMPLES: dict[str, Example] = {}


def example(name: str, *, needs: tuple[str, ...] = ()) -> Callable[[Callable[[], str]], Callable[[], str]]:
    def register(function: Callable[[], str]) -> Callable[[], str]:
        if name in EXAMPLES:
            raise ValueError(f"two examples are called {name!r}")
        EXAMPLES[name] = Example(function, needs)
        return function

    return register


def clause(
    obj: object, protocol_name: str, check_id: str, time_budget_s: float = 30.0, **arguments: Any
) -> str:
    """The result of one clause on ``obj``, as the pytest plugin shows a failure: the id and status,
    then the message."""
    from torchcontract import protocols
    from torchcontract.conformance import Target

    target = Target(obj, getattr(protocols, protocol_name), **arguments)
    report = target.run("cpu", time_budget_s, select=lambda spec: spec.check_id == check_id)
    (result,) = [result for result in report.results if result.check_id == check_id]
    severity = "" if result.severity == "required" else " (recommended)"
    return f"{result.label}{severity} {result.status}:\n{result.message}"


# ----------------------------------------------------------------------------------------------------
# map-style datasets


class WrapsIndex:
    """``ds[i % len(ds)]``: ``ds[len(ds)]`` is ``ds[0]`` again."""

    def __init__(self, n: int = 10) -> None:
        self.values = [float(i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> float:
        return self.values[index % len(self.values)]


@example("faq-index-past-end")
def _index_past_end() -> str:
    return clause(WrapsIndex(), "MapDataset", "map_dataset.index_past_end_raises_index_error")


class CountsHeaderLine:
    """``__len__`` counts the header line of its CSV file: one more than the rows it holds."""

    def __init__(self) -> None:
        self.lines = ["x,y", *(f"{i},{i * i}" for i in range(10))]
        self.rows = [tuple(map(float, line.split(","))) for line in self.lines[1:]]

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> tuple[float, ...]:
        return self.rows[index]


@example("faq-len-too-long")
def _len_too_long() -> str:
    return clause(CountsHeaderLine(), "MapDataset", "map_dataset.getitem_in_range_succeeds")


class NoisyImages:
    """Random augmentation (noise), not declared ``deterministic=False``."""

    def __init__(self, n: int = 10) -> None:
        self.images = np.zeros((n, 4), dtype=np.float32)
        self.rng = np.random.default_rng(0)  # seeded, so that the message quoted is the same on every run

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.images[index] + self.rng.normal(size=4).astype(np.float32)


@example("faq-random-augmentation")
def _random_augmentation() -> str:
    return clause(NoisyImages(), "MapDataset", "map_dataset.getitem_is_deterministic")


class ReturnsViews:
    """Returns rows of one array: views into the dataset's storage, as ``TensorDataset`` does."""

    def __init__(self, n: int = 10) -> None:
        self.data = np.arange(n * 3, dtype=np.float32).reshape(n, 3)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.data[index]


@example("faq-views")
def _views() -> str:
    return clause(ReturnsViews(), "MapDataset", "map_dataset.samples_are_independent_copies")


class Sentences:
    """Token lists of different lengths: ``default_collate`` cannot stack them; a padding collate can."""

    def __init__(self) -> None:
        self.sentences = [list(range(1, 2 + i % 4)) for i in range(10)]

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> Any:
        import torch

        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return torch.tensor(self.sentences[index])


def pad_collate(samples: list[Any]) -> Any:
    """Pads a batch of 1-d tensors to the longest with 0."""
    from torch.nn.utils.rnn import pad_sequence

    return pad_sequence(samples, batch_first=True)


@example("faq-samples-collate", needs=(TORCH,))
def _samples_collate() -> str:
    return clause(Sentences(), "MapDataset", "map_dataset.samples_collate")


class AugmentsWithItsOwnGenerator:
    """Random augmentation from a generator made in ``__init__``: every DataLoader worker gets a copy."""

    def __init__(self, n: int = 16) -> None:
        self.n = n
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> float:
        if not -self.n <= index < self.n:
            raise IndexError(index)
        return float(index + self.rng.random())


@example("faq-worker-randomness", needs=(TORCH,))
def _worker_randomness() -> str:
    return clause(
        AugmentsWithItsOwnGenerator(),
        "MapDataset",
        "map_dataset.workers_draw_independent_randomness",
        deterministic=False,
    )


MAIN_SCRIPT = """
from torchcontract.conformance import check
from torchcontract.protocols import MapDataset


class Squares:
    def __len__(self):
        return 10

    def __getitem__(self, index):
        if not -10 <= index < 10:
            raise IndexError(index)
        return index * index


report = check(Squares(), MapDataset)
print(next(r for r in report.results if r.check_id == "map_dataset.spawn_workers_yield_same_samples").message)
"""


@example("faq-main-script", needs=(TORCH,))
def _main_script() -> str:
    message = _run([sys.executable, "-c", MAIN_SCRIPT], REPO_ROOT).strip()
    return f"map_dataset.spawn_workers_yield_same_samples skipped:\n{message}"


class HangsAtTheEnd:
    """``ds[9]`` waits forever (a lock never released, a network read without a timeout)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> int:
        if not -10 <= index < 10:
            raise IndexError(index)
        if index % 10 == 9:
            import threading

            threading.Event().wait(5.0)  # gives up after 5 s, long after the check has
        return index


@example("faq-hang", needs=(TORCH,))
def _hang() -> str:
    from torchcontract.conformance import check
    from torchcontract.protocols import MapDataset

    report = check(HangsAtTheEnd(), MapDataset, time_budget_s=0.5)
    lines = str(report).splitlines()
    # The report's first lines: the hung call, then the checks it left unverified.
    return "\n".join([*lines[:9], "  ..."])


# ----------------------------------------------------------------------------------------------------
# iterable datasets


class LinesOfAFile:
    """A stream that is its own iterator: the second pass is empty."""

    def __init__(self) -> None:
        self.lines = [f"line {i}" for i in range(10)]
        self.position = 0

    def __iter__(self) -> LinesOfAFile:
        return self

    def __next__(self) -> str:
        if self.position == len(self.lines):
            raise StopIteration
        self.position += 1
        return self.lines[self.position - 1]


@example("faq-iter-returns-self")
def _iter_returns_self() -> str:
    return clause(LinesOfAFile(), "IterableDataset", "iterable_dataset.new_iter_starts_new_pass")


if importlib.util.find_spec("torch") is not None:
    from torch.utils.data import IterableDataset as _TorchIterableDataset

    class UnshardedStream(_TorchIterableDataset[int]):
        """A stream that does not shard itself across DataLoader workers: each worker yields it all."""

        def __iter__(self) -> Iterator[int]:
            return iter(range(32))


@example("faq-unsharded-stream", needs=(TORCH,))
def _unsharded_stream() -> str:
    return clause(UnshardedStream(), "IterableDataset", "iterable_dataset.workers_yield_each_item_once")


class Endless:
    """A stream that never ends (synthetic data), not declared ``infinite=True``."""

    def __iter__(self) -> Iterator[int]:
        index = 0
        while True:
            yield index
            index += 1


@example("faq-endless-stream")
def _endless_stream() -> str:
    message = clause(Endless(), "IterableDataset", "iterable_dataset.iteration_ends", time_budget_s=0.5)
    # How many items fit in the budget depends on the machine: the docs show the count as N.
    return re.sub(r"yielded \d+ items", "yielded N items", message)


# ----------------------------------------------------------------------------------------------------
# samplers


class FilteredSampler:
    """Yields the indices that pass a filter, but ``__len__`` counts the whole data source."""

    def __init__(self, lengths: list[int]) -> None:
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter([i for i, length in enumerate(self.lengths) if length <= 5])


@example("faq-sampler-len")
def _sampler_len() -> str:
    lengths = [3, 8, 1, 5, 9, 2, 7, 4, 6, 5]
    return clause(FilteredSampler(lengths), "Sampler", "sampler.len_matches_count", data_source_len=10)


class ClassBalancedSampler:
    """Draws the minority class (indices 0 and 1) four times each per pass: oversampling by design."""

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n + 6

    def __iter__(self) -> Iterator[int]:
        return iter([*range(self.n), 0, 1, 0, 1, 0, 1])


@example("faq-oversampling")
def _oversampling() -> str:
    return clause(ClassBalancedSampler(), "Sampler", "sampler.each_index_once", data_source_len=10)


class EpochSeededSampler:
    """A seeded shuffle whose seed advances with every pass (its epoch): a new order each epoch."""

    def __init__(self, n: int = 12) -> None:
        self.n = n
        self.epoch = {"count": 0}  # shared by its copies, as a sampler reading the trainer's epoch is

    def __deepcopy__(self, memo: dict[int, Any]) -> EpochSeededSampler:
        copy = EpochSeededSampler(self.n)
        copy.epoch = self.epoch
        return copy

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        seed = 1234 + self.epoch["count"]
        self.epoch["count"] += 1
        return iter(np.random.default_rng(seed).permutation(self.n).tolist())


@example("faq-reshuffles-each-pass")
def _reshuffles_each_pass() -> str:
    return clause(EpochSeededSampler(), "Sampler", "sampler.same_state_same_order", data_source_len=12)


class EvalShard:
    """Evaluation sharding as torch's examples do it: ``range(rank, n, world_size)``, no padding."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def eval_shards(rank: int, world_size: int) -> EvalShard:
    return EvalShard(10, rank, world_size)


@example("faq-uneven-shards")
def _uneven_shards() -> str:
    return clause(
        eval_shards(0, 3),
        "Sampler",
        "sampler.shards_have_equal_length",
        world_size=3,
        shards=eval_shards,
        data_source_len=10,
    )


class PaddedShard:
    """Pads the indices to a multiple of world_size * 4 (a per-rank batch of 4) by repeating the first
    ones, then deals them round-robin: 10 indices over 2 ranks become 16, 6 of them repeats."""

    def __init__(self, rank: int, world_size: int) -> None:
        multiple = world_size * 4
        padded = -(-10 // multiple) * multiple
        self.indices = [i % 10 for i in range(padded)][rank::world_size]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def padded_shards(rank: int, world_size: int) -> PaddedShard:
    return PaddedShard(rank, world_size)


@example("faq-max-padding")
def _max_padding() -> str:
    return clause(
        padded_shards(0, 2),
        "Sampler",
        "sampler.shards_cover_dataset",
        world_size=2,
        shards=padded_shards,
        data_source_len=10,
    )


class OneBasedSampler:
    """Yields 1, ..., n for a data source of n samples: off by one."""

    def __init__(self, data_source: list[float]) -> None:
        self.data_source = data_source

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, len(self.data_source) + 1))


class BatchesOfIndices:
    """A sampler that exposes nothing about its data source."""

    def __iter__(self) -> Iterator[int]:
        return iter(range(10))


@example("faq-index-out-of-range")
def _index_out_of_range() -> str:
    return clause(OneBasedSampler([0.0] * 10), "Sampler", "sampler.yields_indices_in_range")


@example("faq-data-source-len")
def _data_source_len() -> str:
    return clause(BatchesOfIndices(), "Sampler", "sampler.yields_indices_in_range")


# ----------------------------------------------------------------------------------------------------
# loaders


class ResumingLoader:
    """After a ``break``, the next ``iter(loader)`` resumes the abandoned epoch instead of starting anew."""

    def __init__(self) -> None:
        self.batches = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        self.position = 0

    def __iter__(self) -> Iterator[list[int]]:
        while self.position < len(self.batches):
            self.position += 1
            yield self.batches[self.position - 1]
        self.position = 0


@example("faq-resumes-epoch")
def _resumes_epoch() -> str:
    return clause(ResumingLoader(), "Loader", "loader.each_iter_is_new_epoch")


class WrappingLoader:
    """A loader that wraps a list of samples in batches of 4 and exposes ``dataset`` and ``batch_size``,
    but no ``drop_last``."""

    def __init__(self) -> None:
        self.dataset = [float(i) for i in range(10)]
        self.batch_size = 4

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[list[float]]:
        for start in range(0, len(self.dataset), self.batch_size):
            yield self.dataset[start : start + self.batch_size]


class UnorderedLoader(WrappingLoader):
    """The same loader with its collate function as an attribute: nothing says whether it loads its
    dataset in order."""

    def __init__(self) -> None:
        super().__init__()
        self.collate_fn = list


@example("howto-ordered-skip")
def _ordered_skip() -> str:
    return clause(UnorderedLoader(), "Loader", "loader.batches_match_collate")


@example("faq-loader-coverage-skip")
def _loader_coverage_skip() -> str:
    return clause(WrappingLoader(), "Loader", "loader.batches_cover_dataset")


# ----------------------------------------------------------------------------------------------------
# collate functions

TOKEN_SAMPLES = [(np.arange(1, 2 + i % 3), i % 2) for i in range(4)]


def pad_to_dict(samples: list[tuple[np.ndarray[Any, Any], int]]) -> dict[str, np.ndarray[Any, Any]]:
    """The usual padding collate: (tokens, label) tuples in, a dict of padded arrays out."""
    longest = max(len(tokens) for tokens, _ in samples)
    tokens = np.zeros((len(samples), longest), dtype=np.int64)
    for row, (sample, _) in enumerate(samples):
        tokens[row, : len(sample)] = sample
    return {
        "tokens": tokens,
        "lengths": np.array([len(sample) for sample, _ in samples]),
        "labels": np.array([label for _, label in samples]),
    }


@example("faq-transforms-samples")
def _transforms_samples() -> str:
    return clause(
        pad_to_dict, "CollateFn", "collate_fn.batch_mirrors_sample_structure", example_inputs=TOKEN_SAMPLES
    )


def make_vocabulary_collate(vocabulary: dict[str, int]) -> Callable[[list[str]], list[list[int]]]:
    def collate(samples: list[str]) -> list[list[int]]:
        return [[vocabulary[word] for word in sample.split()] for sample in samples]

    return collate


@example("faq-collate-pickle", needs=(DOCS_PYTHON,))  # pickle words its error per version
def _collate_pickle() -> str:
    collate = make_vocabulary_collate({"a": 1, "b": 2})
    return clause(
        collate, "CollateFn", "collate_fn.pickle_round_trip", example_inputs=["a b", "b", "a a", "b a"]
    )


# ----------------------------------------------------------------------------------------------------
# modules (torch)


def _torch_modules() -> dict[str, Any]:
    """The module classes, defined on first use: this file imports without torch."""
    import torch
    from torch import nn

    class StackedMLP(nn.Module):
        """Hidden layers kept in a plain list: not registered, so not moved by .to() nor saved."""

        def __init__(self) -> None:
            super().__init__()
            self.layers = [nn.Linear(8, 8), nn.Linear(8, 8)]
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x).relu()
            return self.head(x)

    class DropoutAlways(nn.Module):
        """``F.dropout`` without ``training=self.training``: dropout stays on in eval mode."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(nn.functional.dropout(x, p=0.5))

    class WithAuxiliaryHead(nn.Module):
        """An auxiliary head that is used in some training steps only, not in this forward."""

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(8, 8)
            self.aux_head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    class Standardise(nn.Module):
        """A fitted mean kept in a plain tensor attribute: not in the state dict, lost on loading."""

        def __init__(self) -> None:
            super().__init__()
            self.mean = torch.zeros(8)
            self.fc = nn.Linear(8, 2)

        def fit(self, x: torch.Tensor) -> Standardise:
            self.mean = x.mean(0)
            return self

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x - self.mean)

    class StandardiseInBuffer(Standardise):
        """The fitted mean in a non-persistent buffer: a deep copy keeps it, a fresh instance does not."""

        def __init__(self) -> None:
            nn.Module.__init__(self)
            self.register_buffer("mean", torch.zeros(8), persistent=False)
            self.fc = nn.Linear(8, 2)

    return {
        "StackedMLP": StackedMLP,
        "DropoutAlways": DropoutAlways,
        "WithAuxiliaryHead": WithAuxiliaryHead,
        "Standardise": Standardise,
        "StandardiseInBuffer": StandardiseInBuffer,
    }


def _inputs() -> tuple[Any, ...]:
    import torch

    return (torch.randn(4, 8, generator=torch.Generator().manual_seed(0)),)


def _seeded() -> None:
    import torch

    torch.manual_seed(0)


@example("faq-plain-list-layers", needs=(TORCH,))
def _plain_list_layers() -> str:
    _seeded()
    model = _torch_modules()["StackedMLP"]()
    return clause(model, "Module", "module.to_device", example_inputs=_inputs())


@example("faq-dropout-in-eval", needs=(TORCH,))
def _dropout_in_eval() -> str:
    _seeded()
    model = _torch_modules()["DropoutAlways"]()
    return clause(model, "Module", "callable_module.eval_is_deterministic", example_inputs=_inputs())


@example("faq-unused-parameters", needs=(TORCH,))
def _unused_parameters() -> str:
    _seeded()
    model = _torch_modules()["WithAuxiliaryHead"]()
    return clause(model, "Module", "module.backward_reaches_parameters", example_inputs=_inputs())


@example("howto-eval-only", needs=(TORCH,))
def _eval_only() -> str:
    import torch
    from torch import nn

    _seeded()
    # One sample: BatchNorm cannot take batch statistics of it in train mode.
    return clause(
        nn.BatchNorm1d(8), "Module", "module.train_forward_runs", example_inputs=(torch.ones(1, 8),)
    )


@example("faq-fitted-state", needs=(TORCH,))
def _fitted_state() -> str:
    import torch

    _seeded()
    model = _torch_modules()["Standardise"]().fit(torch.full((16, 8), 3.0))
    return clause(model, "Module", "module.state_dict_round_trip", example_inputs=_inputs())


@example("howto-factory", needs=(TORCH,))
def _factory() -> str:
    import torch

    _seeded()
    classes = _torch_modules()
    model = classes["StandardiseInBuffer"]().fit(torch.full((16, 8), 3.0))
    return clause(
        model,
        "Module",
        "module.state_dict_round_trip",
        example_inputs=_inputs(),
        factory=classes["StandardiseInBuffer"],
    )


# ----------------------------------------------------------------------------------------------------
# Target arguments


@example("faq-stale-expected-failure")
def _stale_expected_failure() -> str:
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset

    target = Target(
        ReturnsViews(),
        MapDataset,
        name="features",
        expected_failures={"map_dataset.samples_are_independant_copies": "rows are views, by design"},
    )
    return "\n".join(target.stale_message(stale) for stale in target.stale_expected_failures)


# ----------------------------------------------------------------------------------------------------
# the quick start's runs

QUICKSTART = REPO_ROOT / "examples" / "quickstart"


def _run(command: list[str], cwd: Path) -> str:
    """The output of ``command``, with what differs between machines and runs taken out: pytest's
    header (versions, paths, plugins), the repository's path, and durations."""
    environment = {**os.environ, "COLUMNS": "80", "PYTHONDONTWRITEBYTECODE": "1"}
    # pytest widens its short summary to whole messages when it sees a CI system (CI or BUILD_NUMBER
    # set, _pytest.compat.running_on_ci): the pages show what a person's terminal shows, everywhere.
    for name in ("PYTEST_ADDOPTS", "CI", "BUILD_NUMBER"):
        environment.pop(name, None)
    run = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=environment, check=False)
    text = run.stdout + run.stderr
    text = text.replace(str(cwd) + os.sep, "").replace(str(REPO_ROOT) + os.sep, "")
    text = re.sub(r"(?s)^=+ test session starts =+\n.*?\n(collected [^\n]*)\n", r"\1\n", text)
    return re.sub(
        r"^=+ (.*) in \d+\.\d+s =+$", lambda m: f" {m.group(1)} in N.NNs ".center(80, "="), text, flags=re.M
    )


@example("quickstart-script", needs=(TORCH,))
def _quickstart_script() -> str:
    return _run([sys.executable, "check_squares.py"], QUICKSTART)


@example("quickstart-pytest-empty", needs=(TORCH,))
def _quickstart_pytest_empty() -> str:
    command = [sys.executable, "-m", "pytest", "test_squares.py", "-p", "no:cacheprovider", "-k", "getitems"]
    return _run(command, QUICKSTART)


@example("quickstart-pytest", needs=(TORCH,))
def _quickstart_pytest() -> str:
    return _run([sys.executable, "-m", "pytest", "test_squares.py", "-p", "no:cacheprovider"], QUICKSTART)
