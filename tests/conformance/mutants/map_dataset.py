"""Map-style datasets, each with one bug (plain Python and NumPy)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from torchcontract.protocols import MapDataset

from ..correct import BatchedPoints, Points
from . import Mutant

Sample = tuple[np.ndarray[Any, Any], Any]

# -- __len__ ------------------------------------------------------------------------------------------


class LenIsFloat(Points):
    def __len__(self) -> int:
        return self.features.size / self.features.shape[1]  # type: ignore[return-value]  # true division


class LenIsMinusOneUntilLoaded(Points):
    def __len__(self) -> int:
        cached: int | None = getattr(self, "_cached_length", None)
        return cached if cached is not None else -1  # "unknown yet": the length is never cached


class LenNotImplemented(Points):
    def __len__(self) -> int:
        raise NotImplementedError("subclasses report their length")


class LenOneTooLong(Points):
    def __len__(self) -> int:
        return len(self.features) + 1  # counts the header line of the CSV it was read from


class LenOneTooShort(Points):
    def __len__(self) -> int:
        return len(self.features) - 1

    def __getitem__(self, index: int) -> Sample:
        return self.features[index].copy(), self.labels[index]  # bounds left to NumPy's own


# -- __getitem__ -------------------------------------------------------------------------------------


class LabelsOneShort(Points):
    def __init__(self) -> None:
        super().__init__()
        self.labels = self.labels[:-1]  # the label file lost its last line


class HangsAtLastIndex(Points):
    def __getitem__(self, index: int) -> Sample:
        if index == len(self) - 1:
            threading.Event().wait()  # a read from a stalled network share: never returns
        return super().__getitem__(index)


class WrapsIndexModuloLen(Points):
    def __getitem__(self, index: int) -> Sample:
        index = index % len(self)  # "so that any index works": IndexError never comes
        return self.features[index].copy(), self.labels[index]


class DictBackedRaisesKeyError(Points):
    def __init__(self) -> None:
        super().__init__()
        self.samples = {i: (self.features[i].copy(), self.labels[i]) for i in range(len(self.features))}

    def __getitem__(self, index: int) -> Sample:
        features, label = self.samples[index]  # KeyError past the end
        return features.copy(), label


class AugmentsWithoutDeclaring(Points):
    def __getitem__(self, index: int) -> Sample:
        features, label = super().__getitem__(index)
        return features + np.random.normal(size=3).astype(np.float32), label  # not declared random


class IterDropsLabels(Points):
    def __iter__(self) -> Any:
        return iter(self.features)  # rows only: iteration and indexing disagree


class IterStopsOneEarly(Points):
    def __iter__(self) -> Any:
        for i in range(len(self) - 1):
            yield self[i]


class IterRepeatsForever(Points):
    def __iter__(self) -> Any:
        while True:  # "one epoch per call to iter()" was meant; the loop never breaks
            for i in range(len(self)):
                yield self[i]


# -- pickling -----------------------------------------------------------------------------------------


class HoldsLambdaTransform(Points):
    def __init__(self) -> None:
        super().__init__()
        self.transform = lambda features: features / 255  # cannot be pickled

    def __getitem__(self, index: int) -> Sample:
        features, label = super().__getitem__(index)
        return self.transform(features), label


class HoldsThreadingLock(Points):
    def __init__(self) -> None:
        super().__init__()
        self._cache_lock = threading.Lock()  # cannot be pickled
        self._cache: dict[int, Sample] = {}

    def __getitem__(self, index: int) -> Sample:
        with self._cache_lock:
            if index not in self._cache:
                self._cache[index] = super().__getitem__(index)
            features, label = self._cache[index]
        return features.copy(), label


class GetstateDropsNormalisation(Points):
    def __init__(self) -> None:
        super().__init__()
        self.mean = self.features.mean(axis=0)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        del state["mean"]  # "recomputed in the worker", but __setstate__ never does
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self.mean = np.zeros(3, dtype=np.float32)

    def __getitem__(self, index: int) -> Sample:
        features, label = super().__getitem__(index)
        return features - self.mean, label


# -- structure ----------------------------------------------------------------------------------------


class PaddingSampleIsFloat64(Points):
    def __init__(self) -> None:
        super().__init__()
        self.rows = [*self.features[:-1], np.zeros(3)]  # np.zeros is float64: the padding row differs

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        return self.rows[index].copy(), self.labels[index]


class UnlabelledSamplesHaveNoneLabel(Points):
    def __getitem__(self, index: int) -> Sample:
        features, label = super().__getitem__(index)
        return features, (label if index % len(self) < 5 else None)  # semi-supervised: second half unlabelled


# -- __getitems__ -------------------------------------------------------------------------------------


class GetitemsReturnsCollatedBatch(BatchedPoints):
    def __getitems__(self, indices: list[int]) -> Any:
        rows = self.features[np.asarray(indices)]
        return rows, np.asarray([self.labels[i] for i in indices])  # a batch, not a list of samples


class GetitemsSortsIndices(BatchedPoints):
    def __getitems__(self, indices: list[int]) -> list[Sample]:
        return [self[i] for i in sorted(indices)]  # sorted "for sequential reads": order lost


class GetitemsDeduplicatesIndices(BatchedPoints):
    def __getitems__(self, indices: list[int]) -> list[Sample]:
        return [self[i] for i in dict.fromkeys(indices)]  # "read each record once": repeats lost


# -- recommended clauses ------------------------------------------------------------------------------


class ReadsRecordsByByteOffset(Points):
    def __init__(self) -> None:
        super().__init__()
        self.buffer = self.features.tobytes()

    def __getitem__(self, index: int) -> Sample:
        if index >= len(self):
            raise IndexError(index)
        record = np.frombuffer(self.buffer, dtype=np.float32, count=3, offset=index * 12)
        return record.copy(), self.labels[index]  # a negative offset raises ValueError


class ReturnsViewIntoStorage(Points):
    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        return self.features[index], self.labels[index]  # a view: no .copy()


class DecodesIntoOneBuffer(Points):
    """Decodes every sample into one preallocated buffer and returns it: ``ds[0] is ds[1]``."""

    def __init__(self, n: int = 10) -> None:
        super().__init__(n)
        self._buf = np.empty(3, dtype=np.float32)

    def __getitem__(self, index: int) -> Any:
        index = self._check_index(index)
        self._buf[:] = self.features[index]  # no allocation per sample: the same array every time
        return self._buf


class RejectsNumpyIntegerIndex(Points):
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int):
            return super().__getitem__(index)
        return [super().__getitem__(i) for i in index]  # "a list of indices": np.int64 is not iterable


class SampleCarriesLambda(Points):
    def __getitem__(self, index: int) -> Any:
        features, label = super().__getitem__(index)
        return {"features": features, "label": label, "augment": lambda x: x}  # a per-sample transform


class OffsetsInAList(Points):
    def __init__(self) -> None:
        super().__init__()
        # The byte offset of every record of a large file, as a list of ints: a million objects.
        self.offsets = list(range(1_100_000))


def _mutant(name: str, violates: str, bug: str, factory: Any, **fields: Any) -> Mutant:
    return Mutant(name, MapDataset, f"map_dataset.{violates}", bug, factory, **fields)


MUTANTS = [
    _mutant("len_is_float", "len_is_non_negative_int", "__len__ uses true division", LenIsFloat,
            message_contains=("len(ds) raised TypeError", "10.0")),
    _mutant("len_is_minus_one", "len_is_non_negative_int", "__len__ returns -1 for 'unknown'",
            LenIsMinusOneUntilLoaded, message_contains=("len(ds) raised ValueError", "-1")),
    _mutant("len_raises", "len_is_non_negative_int", "__len__ raises NotImplementedError",
            LenNotImplemented, message_contains=("NotImplementedError",)),
    _mutant("len_one_too_long", "getitem_in_range_succeeds", "__len__ counts a header line",
            LenOneTooLong, message_contains=("ds[10] raised IndexError",)),
    _mutant("labels_one_short", "getitem_in_range_succeeds", "the label list lost its last entry",
            LabelsOneShort, message_contains=("ds[9]",)),
    _mutant("getitem_hangs_at_last_index", "getitem_in_range_succeeds", "ds[9] never returns",
            HangsAtLastIndex, kwargs={"time_budget_s": 0.5}, hangs=True,
            message_contains=("ds[9] did not return within the time budget of 0.5 s",)),
    _mutant("len_one_too_short", "index_past_end_raises_index_error", "__len__ is one short",
            LenOneTooShort, message_contains=("ds[9] returned", "len(ds) == 9")),
    _mutant("getitem_wraps_index", "index_past_end_raises_index_error", "ds[i % len(ds)]",
            WrapsIndexModuloLen, message_contains=("ds[10] returned", "expected IndexError")),
    _mutant("dict_backed_raises_key_error", "index_past_end_raises_index_error",
            "samples in a dict: KeyError past the end", DictBackedRaisesKeyError,
            message_contains=("ds[10] raised KeyError",)),
    _mutant("undeclared_random_augmentation", "getitem_is_deterministic",
            "random noise without deterministic=False", AugmentsWithoutDeclaring,
            message_contains=("ds[0] == ds[0]", "deterministic=False")),
    _mutant("iter_drops_labels", "iteration_matches_indexing", "__iter__ yields feature rows only",
            IterDropsLabels, message_contains=("item 0 of iter(ds) differs from ds[0]",)),
    _mutant("iter_stops_one_early", "iteration_matches_indexing", "__iter__ yields len - 1 items",
            IterStopsOneEarly, message_contains=("stopped after 9 items but len(ds) == 10",)),
    _mutant("iter_repeats_forever", "iteration_matches_indexing", "__iter__ never stops",
            IterRepeatsForever, message_contains=("yielded more than len(ds) == 10 items",)),
    _mutant("holds_lambda", "pickle_round_trip", "a lambda transform cannot be pickled",
            HoldsLambdaTransform, message_contains=("pickle.dumps(ds) raised", "lambda")),
    _mutant("holds_threading_lock", "pickle_round_trip", "a threading.Lock cannot be pickled",
            HoldsThreadingLock, message_contains=("pickle.dumps(ds) raised TypeError", "lock")),
    _mutant("getstate_drops_normalisation", "pickle_round_trip",
            "__getstate__ drops state that __setstate__ does not rebuild", GetstateDropsNormalisation,
            message_contains=("pickle.loads(pickle.dumps(ds))[0] == ds[0]",)),
    _mutant("padding_sample_is_float64", "samples_share_structure", "the padding row is float64",
            PaddingSampleIsFloat64, message_contains=("ds[9]", "float64", "float32")),
    _mutant("unlabelled_samples_have_none_label", "samples_share_structure",
            "label None for unlabelled samples", UnlabelledSamplesHaveNoneLabel,
            message_contains=("ds[5]", "NoneType")),
    _mutant("getitems_returns_collated_batch", "getitems_matches_getitem",
            "__getitems__ returns a collated (features, labels) batch", GetitemsReturnsCollatedBatch,
            message_contains=("returned 2 samples; expected 9",)),
    _mutant("getitems_sorts_indices", "getitems_matches_getitem", "__getitems__ sorts the indices",
            GetitemsSortsIndices, message_contains=("ds.__getitems__([7, 6, 5", "differs from ds[7]")),
    _mutant("getitems_deduplicates_indices", "getitems_matches_getitem",
            "__getitems__ drops repeated indices", GetitemsDeduplicatesIndices,
            message_contains=("returned 8 samples; expected 9",)),
    _mutant("negative_index_raises_value_error", "negative_index_mirrors_python",
            "a negative byte offset raises ValueError", ReadsRecordsByByteOffset,
            message_contains=("ds[-1] raised ValueError",)),
    _mutant("returns_view_into_storage", "samples_are_independent_copies", "returns a NumPy view",
            ReturnsViewIntoStorage, message_contains=("ds[9] changed too",)),
    _mutant("decodes_into_one_buffer", "samples_survive_later_fetches",
            "returns one preallocated buffer for every index", DecodesIntoOneBuffer,
            message_contains=("ds[0] changed after ds[", "they are one object", "would hold sample")),
    _mutant("rejects_numpy_integer_index", "accepts_numpy_integer_index",
            "non-int indices are taken for a list of indices", RejectsNumpyIntegerIndex,
            message_contains=("ds[np.int64(9)] raised TypeError",)),
    _mutant("offsets_in_a_list", "holds_few_python_objects", "a million record offsets in a list",
            OffsetsInAList, message_contains=("more than 1,000,000 Python objects", "ds.offsets")),
    _mutant("sample_carries_lambda", "samples_cross_process_boundary", "each sample carries a lambda",
            SampleCarriesLambda,
            message_contains=("ds[0]['augment'] could not be pickled", "pytorch#142884")),
]  # fmt: skip
