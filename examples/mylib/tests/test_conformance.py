"""mylib's objects against the contracts of PyTorch's data model: one test per (object, check).

Each Target says what the checks cannot find out by themselves (the inputs of a model, the collate a
dataset is loaded with) and declares the designs that look like bugs (random augmentation, a collate
that turns samples into a dict). Known failures with their reasons are in conformance-baseline.toml;
the settings are in pyproject.toml's [tool.pytest.ini_options].
"""

import torch
from mylib.collate import pad_collate
from mylib.data import NoisyImages, Sequences, ShardedStream
from mylib.loader import SequenceLoader
from mylib.models import BagOfTokens
from mylib.sampling import LengthGroupedBatchSampler

from torchcontract.conformance import Target, parametrize_with_checks
from torchcontract.protocols import CollateFn, IterableDataset, Loader, MapDataset, Module, Sampler

SEQUENCES = Sequences(n=64, seed=0)
BATCH = pad_collate([SEQUENCES[i] for i in range(4)])


@parametrize_with_checks(
    [
        # Variable-length samples: declare the padding collate they are loaded with.
        Target(SEQUENCES, MapDataset, name="sequences", collate_fn=pad_collate),
        # Random augmentation: the clauses that compare two calls compare what stays deterministic.
        Target(NoisyImages(), MapDataset, name="images", deterministic=False),
        Target(ShardedStream(), IterableDataset, name="stream"),
        # A batch sampler over lengths: its data source is the dataset those lengths describe.
        Target(
            LengthGroupedBatchSampler(SEQUENCES.lengths(), batch_size=8),
            Sampler,
            name="sampler",
            data_source_len=len(SEQUENCES),
        ),
        # (tokens, label) tuples in, a dict of padded tensors out: a collate that restructures samples.
        Target(
            pad_collate,
            CollateFn,
            name="collate",
            example_inputs=[SEQUENCES[i] for i in range(6)],
            transforms_samples=True,
        ),
        # Batches grouped by length: not in the dataset's order.
        Target(SequenceLoader(SEQUENCES, batch_size=8), Loader, name="loader", ordered=False),
        Target(
            BagOfTokens(),
            Module,
            name="model",
            example_inputs=(BATCH["tokens"], BATCH["lengths"]),
            factory=lambda: BagOfTokens(),
            dtypes=(torch.float32, torch.float64),
        ),
    ]
)
def test_conformance(target, check):
    check(target)
