"""Collate functions, each with one bug (plain Python and NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchcontract.protocols import CollateFn

from ..correct import LabelledImage, numpy_collate
from . import Mutant


def _points(n: int = 4) -> list[tuple[np.ndarray[Any, Any], int]]:
    return [(np.full(3, i, dtype=np.float32), i % 2) for i in range(n)]


def pad_to_static_batch(samples: list[Any]) -> Any:
    """Pads every batch to 8 rows (for a compiled, static-shape model): the padding looks like data."""
    features, labels = numpy_collate(samples)
    missing = 8 - len(samples)
    return np.pad(features, ((0, missing), (0, 0))), np.pad(labels, (0, missing))


def pair_for_mixup(samples: list[Any]) -> Any:
    """Mixup needs pairs, so an odd sample out is dropped."""
    return numpy_collate(samples[: len(samples) // 2 * 2]) if len(samples) > 1 else numpy_collate(samples)


def keeps_known_keys(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Collates the keys the author knew about; 'mask' is silently lost."""
    return {key: numpy_collate([s[key] for s in samples]) for key in ("image", "label")}


def drops_weight_field(samples: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Written for (x, y) samples; the (x, y, weight) samples lose their weight."""
    xs, ys = zip(*[(s[0], s[1]) for s in samples], strict=True)
    return np.stack(xs), np.asarray(ys)


def keeps_only_annotated_samples(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A detection collate that keeps the samples whole, and drops the images without boxes."""
    return [sample for sample in samples if len(sample["boxes"])]


def _detection_samples() -> list[dict[str, Any]]:
    boxes = [np.zeros((2, 4)), np.zeros((0, 4)), np.zeros((1, 4)), np.zeros((3, 4))]  # image 1: no boxes
    return [{"image": np.zeros((3, 8, 8), dtype=np.float32), "boxes": b} for b in boxes]


def namedtuple_to_plain_tuple(samples: list[LabelledImage]) -> tuple[Any, ...]:
    """Returns a plain tuple: batch.image and batch.label no longer work."""
    return tuple(numpy_collate(list(field)) for field in zip(*samples, strict=True))


def vocabulary_collate() -> Any:
    """A collate built inside a function, closing over its vocabulary: a local function does not pickle,
    so a DataLoader worker started with spawn or forkserver cannot receive it."""
    vocabulary = {"cat": 0, "dog": 1}

    def collate(samples: list[tuple[np.ndarray[Any, Any], str]]) -> Any:
        return np.stack([s[0] for s in samples]), np.asarray([vocabulary[s[1]] for s in samples])

    return collate


def _mutant(name: str, violates: str, bug: str, factory: Any, inputs: Any, **fields: Any) -> Mutant:
    kwargs = {"example_inputs": inputs}
    return Mutant(name, CollateFn, f"collate_fn.{violates}", bug, lambda: factory, kwargs, **fields)


MUTANTS = [
    _mutant("pads_to_static_batch", "batch_has_one_row_per_sample", "pads every batch to 8 rows",
            pad_to_static_batch, _points(), message_contains=("holds 8 samples", "given 4")),
    _mutant("drops_odd_sample_out", "batch_has_one_row_per_sample", "drops a sample to make pairs",
            pair_for_mixup, _points(), message_contains=("collate(samples[:3]) holds 2 samples",)),
    _mutant("drops_unannotated_samples", "batch_has_one_row_per_sample",
            "an unbatched collate filters out images without boxes", keeps_only_annotated_samples,
            _detection_samples(), message_contains=("collate(samples) holds 3 samples", "given 4")),
    _mutant("loses_dict_key", "batch_mirrors_sample_structure", "drops the 'mask' key",
            keeps_known_keys,
            [{"image": np.zeros(3), "label": i, "mask": np.ones(3, dtype=bool)} for i in range(4)],
            message_contains=("'mask'",)),
    _mutant("drops_tuple_field", "batch_mirrors_sample_structure", "drops the weight field",
            drops_weight_field, [(np.zeros(3), i, 0.5) for i in range(4)],
            message_contains=("2 fields but each sample has 3",)),
    _mutant("namedtuple_to_plain_tuple", "batch_mirrors_sample_structure",
            "returns a plain tuple for namedtuple samples", namedtuple_to_plain_tuple,
            [LabelledImage(np.zeros((2, 2)), i) for i in range(4)],
            message_contains=("LabelledImage",)),
    _mutant("local_function_does_not_pickle", "pickle_round_trip", "a collate defined inside a function",
            vocabulary_collate(), [(np.zeros(3), "cat"), (np.ones(3), "dog")],
            message_contains=("pickle.dumps(collate) raised", "module level")),
]  # fmt: skip
