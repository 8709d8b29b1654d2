"""The snapshot that restores a dataset after each check (checks/_preserve.py) costs the same whatever
the dataset's size: a list dataset of a million items took 12 s to check against 2 s for a thousand, a
visit per item in each check's snapshot. Structural tests (what is captured), never timed."""

from __future__ import annotations

from torchcontract.conformance.checks._preserve import DATA_ARRAY_BYTES, Restorer

BIG = DATA_ARRAY_BYTES // 8 + 1  # more items than 1 MiB of references


def test_a_big_list_of_a_dataset_is_data_the_snapshot_does_not_copy() -> None:
    data = [float(i) for i in range(BIG)]
    restorer = Restorer(data, max_array_bytes=DATA_ARRAY_BYTES)
    data.append(1.0)
    restorer.restore()
    assert len(data) == BIG + 1  # not captured: data the checks only read, like a big array
    assert not restorer.problems


def test_a_big_dict_and_set_of_a_dataset_are_data_too() -> None:
    class Indexed:
        def __init__(self) -> None:
            self.labels = {f"file{i}.png": i % 10 for i in range(BIG)}
            self.seen = set(range(BIG))
            self.cache: dict[int, int] = {}

    ds = Indexed()
    restorer = Restorer(ds, max_array_bytes=DATA_ARRAY_BYTES)
    ds.labels["extra"] = 1
    ds.seen.add(-1)
    ds.cache[0] = 0
    restorer.restore()
    assert "extra" in ds.labels
    assert -1 in ds.seen
    assert ds.cache == {}  # the small cache beside the data is still restored


def test_a_module_big_list_is_still_restored() -> None:
    class Module:
        def __init__(self) -> None:
            self.history = [0.0] * BIG

    module = Module()
    restorer = Restorer(module)  # no max_array_bytes: a module's containers are its state
    module.history.append(1.0)
    restorer.restore()
    assert len(module.history) == BIG


def test_a_small_list_of_numbers_is_restored_without_visiting_its_items() -> None:
    data = [1.0, 2.0, "a", None, 3]
    restorer = Restorer(data, max_array_bytes=DATA_ARRAY_BYTES)
    data[0] = 9.0
    data.append(4)
    restorer.restore()
    assert data == [1.0, 2.0, "a", None, 3]


def test_mutable_items_beside_numbers_are_still_restored() -> None:
    sample = {"x": 1}
    data = [1.0, sample, (2.0, [3])]
    restorer = Restorer(data, max_array_bytes=DATA_ARRAY_BYTES)
    sample["x"] = 2
    data[2][1].append(4)
    restorer.restore()
    assert sample == {"x": 1}
    assert data[2][1] == [3]
    assert data[1] is sample


def test_a_dict_whose_value_was_replaced_is_restored() -> None:
    first, second = [1], [2]
    cache = {"a": first, "b": second}
    restorer = Restorer(cache, max_array_bytes=DATA_ARRAY_BYTES)
    cache["a"] = [9]
    restorer.restore()
    assert cache["a"] is first
    assert cache["b"] is second
