"""torch's documented deviations from the clauses: one table, read by the report's targets and the tests.

Each row is a torch class (or construction) that violates a clause by design, with the reason, used as
its expected-failure reason. SPEC.md writes the same rows as the **Deviation.** paragraph of each clause
and README.md as its table of deviations; ``tests/engine/test_spec_sync.py`` checks that the three agree,
and the correct-object corpus checks that each row still fails as declared (an xpass fails the test).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEVIATIONS", "Deviation", "expected_failures"]


@dataclass(frozen=True)
class Deviation:
    """``targets`` violate ``check_id`` by design, because of ``reason``; ``source`` is the torch code."""

    key: str
    targets: tuple[str, ...]
    check_id: str
    reason: str
    source: str


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        key="views",
        targets=("TensorDataset", "Subset", "ConcatDataset", "StackDataset"),
        check_id="map_dataset.samples_are_independent_copies",
        reason=(
            "TensorDataset.__getitem__ returns views (tensor[index]) by design, and so do Subset, "
            "ConcatDataset and StackDataset over it: in-place changes to a sample reach the dataset"
        ),
        source="utils/data/dataset.py, TensorDataset.__getitem__",
    ),
    Deviation(
        key="concat_negative_index",
        targets=("ConcatDataset",),
        check_id="map_dataset.negative_index_mirrors_python",
        reason="ConcatDataset raises ValueError, not IndexError, for ds[-len(ds) - 1]",
        source="utils/data/dataset.py, ConcatDataset.__getitem__",
    ),
    Deviation(
        key="in_place",
        targets=("nn.ReLU(inplace=True)", "nn.Hardtanh(inplace=True)"),
        check_id="callable_module.call_preserves_inputs",
        reason="inplace=True modules modify their input on purpose",
        source="nn/modules/activation.py, ReLU.forward (F.relu(input, inplace=self.inplace))",
    ),
    Deviation(
        key="non_leaf_weight",
        targets=("nn.utils.weight_norm", "nn.utils.spectral_norm", "nn.utils.prune"),
        check_id="module.deepcopy_is_independent",
        reason=(
            "nn.utils.weight_norm holds a non-leaf weight from the moment it is applied (WeightNorm.apply "
            "computes it), nn.utils.spectral_norm once the module has been called, and a module pruned "
            "with nn.utils.prune from the moment it is pruned (weight = weight_orig * weight_mask); "
            "Tensor.__deepcopy__ refuses a non-leaf tensor (pytorch#28594): use nn.utils.parametrizations, "
            "or prune.remove before copying"
        ),
        source=(
            "nn/utils/weight_norm.py, WeightNorm.apply; nn/utils/spectral_norm.py, SpectralNorm.__call__; "
            "nn/utils/prune.py, BasePruningMethod.apply; _tensor.py, Tensor.__deepcopy__"
        ),
    ),
    Deviation(
        key="parametrized_pickle",
        targets=("nn.utils.parametrize", "nn.utils.parametrizations.weight_norm"),
        check_id="module.pickle_round_trip",
        reason=(
            "torch refuses to pickle a parametrized module ('Serialization of parametrized modules is only "
            "supported through state_dict()'): its state_dict is what is saved"
        ),
        source="nn/utils/parametrize.py, _inject_new_class (the injected class's __getstate__ raises)",
    ),
    Deviation(
        key="numpy_indices",
        targets=("SubsetRandomSampler",),
        check_id="sampler.yields_python_ints",
        reason=(
            "SubsetRandomSampler yields whatever its indices hold: NumPy integers for an array, 0-d "
            "tensors for a tensor"
        ),
        source="utils/data/sampler.py, SubsetRandomSampler.__iter__",
    ),
    Deviation(
        key="pil_images",
        targets=("torchvision dataset without a transform",),
        check_id="map_dataset.samples_collate",
        reason=(
            "a torchvision dataset without a transform returns PIL images, which default_collate does "
            "not take: it is meant to be given transform=ToTensor() (or a collate_fn)"
        ),
        source=(
            "torchvision/datasets/mnist.py, MNIST.__getitem__ (Image.fromarray); "
            "utils/data/_utils/collate.py, collate"
        ),
    ),
)


def expected_failures(*keys: str) -> dict[str, str]:
    """``{check_id: reason}`` of the named rows, for a target's ``expected_failures``."""
    unknown = sorted(set(keys) - {deviation.key for deviation in DEVIATIONS})
    if unknown:
        raise KeyError(f"no deviation named {', '.join(unknown)}")
    return {deviation.check_id: deviation.reason for deviation in DEVIATIONS if deviation.key in keys}
