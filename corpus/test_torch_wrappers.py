"""torch's own module wrappers and transforms, each around a small module, in eval and train mode:
parametrizations (new and old style), pruning, torch.fx, TorchScript, torch.compile, stochastic weight
averaging, DataParallel on the CPU, quantization (QAT, static, dynamic), lazy modules inside them, and
``skip_init``. Known-correct objects: every failure is torch's documented design (``DEVIATION``,
``DECLARED``) or a bug written up in thirdparty/FINDINGS.md (``FINDING``), or it is a false verdict."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from torch import nn  # noqa: E402
from torch.nn.utils import parametrizations, parametrize, prune  # noqa: E402

from torchcontract.conformance import Target, check  # noqa: E402
from torchcontract.protocols import Module  # noqa: E402

from ._support import declared, deviation, finding, is_fast, judge  # noqa: E402

META = ("module.builds_on_meta_device", "module.loads_on_meta_device_with_assign")
PICKLE = "module.pickle_round_trip"
TO_DTYPE = "module.to_dtype"

PARAMETRIZED = deviation("parametrized_pickle")
NON_LEAF = deviation("non_leaf_weight")
SCRIPTED = {
    **finding("scriptmodule-deepcopy-non-leaf", "module.backward_reaches_parameters"),
    **declared(
        "a TorchScript module is saved with torch.jit.save; pickling it raises ('Tried to serialize object "
        "... which does not have a __getstate__ method defined', torch/jit/_script.py)",
        PICKLE,
    ),
}
QUANTIZED_FLOAT32 = declared(
    "eager-mode quantization computes in float32 only: quantize_per_tensor and the fused fake-quantize "
    "refuse float64 ('Quantize only works on Float Tensor'; torch/ao/quantization/fake_quantize.py, "
    "FusedMovingAvgObsFakeQuantize)",
    TO_DTYPE,
)
QUANTIZED_META = declared(
    "an eager-mode quantized module packs its weights when it is built (quantized::linear_prepack, "
    "torch/ao/nn/quantized/modules/linear.py), an op without a meta kernel, and reads scales with .item()",
    *META,
)


class _Symmetric(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.triu() + weight.triu(1).mT


class _Halved(nn.Module):
    """A parametrization with a right inverse: the stored tensor is half the weight."""

    def forward(self, stored: torch.Tensor) -> torch.Tensor:
        return 2 * stored

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / 2


class _QuantStubbed(nn.Module):
    """The eager-mode quantization layout: QuantStub, float modules, DeQuantStub."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.fc1, self.relu, self.fc2 = nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))


def _pruned(method: Callable[..., Any], *, removed: bool = False) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        module = nn.Linear(4, 3)
        method(module, "weight", amount=0.5)
        if removed:
            prune.remove(module, "weight")
        return module

    return build


def _qat() -> nn.Module:
    model = _QuantStubbed().train()
    model.qconfig = torch.ao.quantization.get_default_qat_qconfig("x86")
    return torch.ao.quantization.prepare_qat(model)


def _static_quantized() -> nn.Module:
    model = _QuantStubbed().eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(model)
    prepared(torch.randn(16, 4, generator=torch.Generator().manual_seed(2)))  # calibration
    return torch.ao.quantization.convert(prepared)


def _skip_init() -> nn.Module:
    module = nn.utils.skip_init(nn.Linear, 4, 3)
    nn.init.normal_(module.weight)
    nn.init.zeros_(module.bias)
    return module


def _inputs() -> torch.Tensor:
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(1))


# name -> (factory, declarations, options)
TARGETS: dict[str, tuple[Callable[[], nn.Module], dict[str, str], dict[str, Any]]] = {
    "parametrizations.weight_norm": (lambda: parametrizations.weight_norm(nn.Linear(4, 3)), PARAMETRIZED, {}),
    "parametrizations.weight_norm(gradcheck)": (
        lambda: parametrizations.weight_norm(nn.Linear(4, 3)),
        {
            **PARAMETRIZED,
            **finding("weight-norm-double-backward", "module.gradients_match_finite_differences"),
        },
        {"gradcheck": True},
    ),
    "parametrizations.spectral_norm": (
        lambda: parametrizations.spectral_norm(nn.Linear(4, 3)),
        PARAMETRIZED,
        {},
    ),
    "parametrizations.orthogonal": (
        lambda: parametrizations.orthogonal(nn.Linear(4, 4)),
        {**PARAMETRIZED, **finding("orthogonal-meta-device", *META)},
        {},
    ),
    "parametrize(symmetric)": (
        lambda: parametrize.register_parametrization(nn.Linear(4, 4), "weight", _Symmetric()),
        PARAMETRIZED,
        {},
    ),
    "parametrize(right_inverse)": (
        lambda: parametrize.register_parametrization(nn.Linear(4, 3), "weight", _Halved()),
        PARAMETRIZED,
        {},
    ),
    "nn.utils.weight_norm": (lambda: nn.utils.weight_norm(nn.Linear(4, 3)), NON_LEAF, {}),
    "nn.utils.spectral_norm": (lambda: nn.utils.spectral_norm(nn.Linear(4, 3)), {}, {}),
    "prune.l1_unstructured": (_pruned(prune.l1_unstructured), NON_LEAF, {}),
    "prune.random_unstructured": (_pruned(prune.random_unstructured), NON_LEAF, {}),
    "prune.l1_unstructured, removed": (_pruned(prune.l1_unstructured, removed=True), {}, {}),
    "fx.symbolic_trace": (lambda: torch.fx.symbolic_trace(_mlp()), {}, {}),
    "jit.script": (lambda: torch.jit.script(_mlp()), SCRIPTED, {}),
    "jit.trace": (lambda: torch.jit.trace(_mlp().eval(), (_inputs(),)), SCRIPTED, {}),
    "compile(eager)": (lambda: torch.compile(_mlp(), backend="eager"), {}, {}),
    "swa_utils.AveragedModel": (lambda: torch.optim.swa_utils.AveragedModel(_mlp()), {}, {}),
    "swa_utils.AveragedModel(use_buffers)": (
        lambda: torch.optim.swa_utils.AveragedModel(_mlp(), use_buffers=True),
        {},
        {},
    ),
    "swa_utils.AveragedModel(ema)": (
        lambda: torch.optim.swa_utils.AveragedModel(
            _mlp(), multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9)
        ),
        declared(
            "get_ema_multi_avg_fn returns a local function, kept as the model's multi_avg_fn "
            "(torch/optim/swa_utils.py): an averaged model is saved by its state_dict",
            PICKLE,
        ),
        {},
    ),
    "DataParallel": (lambda: nn.DataParallel(_mlp()), {}, {}),
    "DataParallel(LazyLinear)": (lambda: nn.DataParallel(nn.Sequential(nn.LazyLinear(3), nn.ReLU())), {}, {}),
    "compile(LazyLinear)": (
        lambda: torch.compile(nn.Sequential(nn.LazyLinear(3), nn.ReLU()), backend="eager"),
        {},
        {},
    ),
    "AveragedModel(LazyLinear)": (
        lambda: torch.optim.swa_utils.AveragedModel(nn.Sequential(nn.LazyLinear(3), nn.ReLU())),
        {},
        {},
    ),
    "ao.quantization.prepare_qat": (
        _qat,
        {**finding("qat-not-picklable", PICKLE), **QUANTIZED_FLOAT32},
        {},
    ),
    "ao.quantization.convert": (_static_quantized, {**QUANTIZED_FLOAT32, **QUANTIZED_META}, {}),
    "ao.quantization.quantize_dynamic": (
        # Every layer quantized (dynamic quantization is for inference: a float layer between two
        # quantized ones would get no gradient, and meets them in float64 after .to()).
        lambda: torch.ao.quantization.quantize_dynamic(
            nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), {nn.Linear}, dtype=torch.qint8
        ),
        QUANTIZED_META,
        {},
    ),
    "nn.utils.skip_init": (_skip_init, finding("skip-init-default-device", *META), {}),
}

# The CI slice: one of each family.
FAST = (
    "parametrizations.weight_norm",
    "prune.l1_unstructured",
    "jit.trace",
    "compile(eager)",
    "DataParallel",
    "ao.quantization.prepare_qat",
)

NAMES = [name for name in TARGETS if not is_fast() or name in FAST]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, still supported
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.ao.quantization's eager mode
@pytest.mark.filterwarnings("ignore::UserWarning")  # quantization observers, lazy modules
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_torch_wrapper(name: str, mode: str, request: pytest.FixtureRequest) -> None:
    build, declarations, options = TARGETS[name]

    def factory() -> nn.Module:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            return build()

    model = factory()
    model.train(mode == "train")
    target = Target(
        model,
        Module,
        name=f"torch.{name}({mode})",
        example_inputs=(_inputs(),),
        factory=factory,
        expected_failures=declarations,
        **options,
    )
    judge(request.node, check(target))
