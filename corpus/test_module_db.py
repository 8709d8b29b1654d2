"""torch's module_db: every ``ModuleInfo`` of ``torch.testing._internal.common_modules``, every
``ModuleInput`` its ``module_inputs_func`` gives (CPU, float32, training), checked as a ``Module``.

Each input is one object, checked twice: as it is, and with the dtype matrix ``dtypes=(float32,
float64)``. The module is built from the input's ``constructor_input`` under a fixed seed; the target's
``factory`` rebuilds it from the same arguments on the current default device (so that
``module.builds_on_meta_device`` builds it on meta, as a user's factory would). Expected failures come
from torch's deviations table or from a classified reason (``_support.py``), nothing else.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
common_modules = pytest.importorskip(
    "torch.testing._internal.common_modules", reason="module_db needs expecttest (pip install expecttest)"
)

from torchcontract.conformance import Target, check  # noqa: E402
from torchcontract.protocols import Module  # noqa: E402

from ._support import finding, invalid_input, is_fast, judge  # noqa: E402

DTYPES = (torch.float32, torch.float64)
NON_CONTIGUOUS = "callable_module.accepts_non_contiguous_inputs"
CALL_RETURNS = "callable_module.call_returns"
GRADCHECK = "module.gradients_match_finite_differences"
FRACTIONAL_MAX_POOL = ("nn.FractionalMaxPool2d", "nn.FractionalMaxPool3d")

# The fast slice: one or two ModuleInfos of each family (a torch.nn.modules file), each with its first
# input and its first declared one, so that CI also sees every kind of declaration still hold.
FAST = (
    "nn.AdaptiveAvgPool2d",  # pooling
    "nn.FractionalMaxPool2d",
    "nn.BatchNorm2d",  # batchnorm
    "nn.GELU",  # activation
    "nn.MultiheadAttention",
    "nn.Conv2d",  # conv
    "nn.ConvTranspose1d",
    "nn.CrossEntropyLoss",  # loss
    "nn.CTCLoss",
    "nn.Linear",  # linear
    "nn.LocalResponseNorm",  # normalization
    "nn.LayerNorm",
    "nn.InstanceNorm1d",  # instancenorm
    "nn.TransformerEncoderLayer",  # transformer
    "nn.Embedding",  # sparse
    "nn.LSTM",  # rnn
    "nn.GRUCell",
    "nn.ReflectionPad2d",  # padding
)


@dataclass(frozen=True)
class Rebuild:
    """``module_cls(*args, **kwargs)`` from a ModuleInput's constructor arguments, on the current
    default device: tensors and modules among them are copied there, and a ``device=`` argument
    follows it (module_db gives the device it generated the inputs for)."""

    module_cls: type[Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        device = torch.get_default_device()
        args = [_on(device, value) for value in self.args]
        kwargs = {
            name: device if name == "device" and value is not None else _on(device, value)
            for name, value in self.kwargs.items()
        }
        return self.module_cls(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{self.module_cls.__name__}(*constructor_input)"


def _on(device: Any, value: Any) -> Any:
    copied = copy.deepcopy(value)
    if isinstance(copied, (torch.Tensor, torch.nn.Module)):
        return copied.to(device)
    return copied


@dataclass(frozen=True)
class ModuleDbCase:
    """One ModuleInput of a ModuleInfo."""

    info: Any
    index: int
    module_input: Any

    @property
    def name(self) -> str:
        desc = self.module_input.desc
        return f"{self.info.name}#{self.index}" + (f":{desc}" if desc else "")

    def declared(self, *, dtype_matrix: bool = False, gradcheck: bool = False) -> dict[str, str]:
        return _declarations(self.info, self.module_input, dtype_matrix=dtype_matrix, gradcheck=gradcheck)

    def target(self, **options: Any) -> Target:
        constructor = self.module_input.constructor_input
        kwargs = dict(constructor.kwargs)
        if "dtypes" in options:
            kwargs = _valid_as_is(self.info, self.module_input, kwargs)
        factory = Rebuild(self.info.module_cls, tuple(constructor.args), kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = factory()
        forward = self.module_input.forward_input
        return Target(
            module,
            Module,
            name=self.name + (" dtypes" if "dtypes" in options else ""),
            example_inputs=tuple(forward.args),
            example_kwargs=dict(forward.kwargs),
            factory=factory,
            expected_failures=self.declared(
                dtype_matrix="dtypes" in options, gradcheck="gradcheck" in options
            ),
            **options,
        )


def _declarations(
    info: Any, module_input: Any, *, dtype_matrix: bool, gradcheck: bool = False
) -> dict[str, str]:
    """The classified expected failures of one input (none for most); ``dtype_matrix``: of the target
    with ``dtypes=``, whose per-dtype clauses call ``copy.deepcopy(m).to(dtype)``, not m; ``gradcheck``:
    of the target with ``gradcheck=True``."""
    args = module_input.forward_input.args
    if gradcheck and info.name == "nn.CTCLoss":
        return finding("ctc-loss-gradient-of-logits", GRADCHECK)
    if info.name == "nn.CTCLoss" and args[1].dim() == 1 and args[1].dtype == torch.int64:
        return finding("ctc-loss-non-contiguous-targets", NON_CONTIGUOUS)
    if info.name == "nn.LocalResponseNorm" and args[0].dim() == 5:
        return finding("local-response-norm-non-contiguous-5d", NON_CONTIGUOUS)
    if info.name in FRACTIONAL_MAX_POOL and not dtype_matrix:
        # The matrix target is built valid (_valid_as_is).
        samples = module_input.constructor_input.kwargs.get("_random_samples")
        if samples is not None and samples.dtype != args[0].dtype:
            return invalid_input(
                f"module_db builds {info.name} with _random_samples in {samples.dtype} whatever the "
                f"dtype of its input ({args[0].dtype} here), and F.fractional_max_pool raises 'Expect "
                "_random_samples to have the same dtype as input'",
                CALL_RETURNS,
            )
    return {}


def _valid_as_is(info: Any, module_input: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments of the dtype-matrix target: module_db's, with FractionalMaxPool's
    ``_random_samples`` in the dtype of its input. In each dtype of the matrix the conversion of the
    module and the inputs makes them agree, but the clauses that the other clauses depend on are decided
    on the module as it is first, where module_db's input raises (declared on the plain target)."""
    samples = kwargs.get("_random_samples")
    if info.name in FRACTIONAL_MAX_POOL and samples is not None:
        kwargs["_random_samples"] = samples.to(module_input.forward_input.args[0].dtype)
    return kwargs


@functools.cache
def _inputs(info: Any) -> tuple[Any, ...]:
    """The info's inputs, generated under a fixed seed: the same in every run and every worker."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return tuple(
            info.module_inputs_func(
                info, device="cpu", dtype=torch.float32, requires_grad=False, training=True
            )
        )


def _cases() -> list[ModuleDbCase]:
    cases = []
    for info in common_modules.module_db:
        inputs = [ModuleDbCase(info, index, each) for index, each in enumerate(_inputs(info))]
        if is_fast():
            if info.name not in FAST:
                continue
            declared = [case for case in inputs if case.declared()]
            inputs = [inputs[0], *declared[:1]] if declared and declared[0] is not inputs[0] else inputs[:1]
        cases += inputs
    return cases


CASES = _cases()


def _ids(case: ModuleDbCase) -> str:
    return case.name


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_module_db(case: ModuleDbCase, request: pytest.FixtureRequest) -> None:
    judge(request.node, check(case.target()))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_module_db_dtype_matrix(case: ModuleDbCase, request: pytest.FixtureRequest) -> None:
    judge(request.node, check(case.target(dtypes=DTYPES)))


# gradcheck=True on each ModuleInfo's first input (the clause is opt-in, and costs a few forward and
# backward passes in float64 per input): autograd's gradients of torch's own modules against finite
# differences, as torch's own test_grad and test_gradgrad check them (test/test_modules.py).
FIRST_INPUTS = [case for case in CASES if case.index == 0]


@pytest.mark.parametrize("case", FIRST_INPUTS, ids=_ids)
def test_module_db_gradcheck(case: ModuleDbCase, request: pytest.FixtureRequest) -> None:
    judge(request.node, check(case.target(gradcheck=True)))
