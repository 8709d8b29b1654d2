"""Every torchvision classification builder (``torchvision.models.list_models(module=models)``), with
``weights=None`` and 10 classes on small inputs, checked as a ``Module`` in eval mode and in train mode.

Each model is built inside its test under a fixed seed (the largest has 632 million parameters: building
them all at collection would hold them all at once); the target's ``factory`` builds a fresh one.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock, and the large models may overlap
    fcntl = None  # type: ignore[assignment]

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")

from torchvision import models  # noqa: E402

from torchcontract.conformance import DEFAULT_TIME_BUDGET_S, Target, check  # noqa: E402
from torchcontract.protocols import Module  # noqa: E402

from ._support import finding, is_fast, judge  # noqa: E402

CLASSES = 10
# The smallest square input each builder takes (32 x 32 unless listed): alexnet's pooling needs 63
# pixels, inception_v3's auxiliary classifier (on in train mode) 299, maxvit's 7 x 7 partitions 224.
SIZES = {"alexnet": 64, "inception_v3": 299, "maxvit_t": 224}
# Builders that take the input size as an argument (their position embeddings or partitions follow it).
SIZE_ARGUMENT = {"vit_": "image_size", "maxvit_": "input_size"}
# The fast slice: a few small classifiers of different kinds (residual, depthwise, with a namedtuple
# output in train mode, without batch norm; module_db has the transformer layers).
FAST = ("resnet18", "mobilenet_v3_small", "googlenet", "squeezenet1_1")


# The builders of over 100 million parameters. Their tests take one lock, shared by pytest-xdist's
# workers (a file beside the workers' temporary folders), so that two of them never hold their copies in
# memory at once (a check holds up to three: vit_h_14's are 2.5 GB each; pytest-xdist's xdist_group
# does not group them under pytest 9); their checks run isolated, in a child
# process whose memory goes back to the system when it ends (and where running out of it fails a check
# instead of ending the run); and each check gets a longer time budget: a float64 forward of
# efficientnet_v2_l takes 10 to 20 s in a check's thread on 2 loaded cores.
LARGE = frozenset(
    {
        "convnext_large", "efficientnet_v2_l", "regnet_x_32gf", "regnet_y_32gf", "regnet_y_128gf",
        "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
        "vit_h_14", "vit_l_16", "vit_l_32", "wide_resnet101_2",
    }
)  # fmt: skip
LARGE_TIME_BUDGET_S = 120.0


def _size(name: str) -> int:
    # vit_h_14's 14-pixel patches need a multiple of 14.
    return 28 if name == "vit_h_14" else SIZES.get(name, 32)


def _build(name: str) -> Any:
    """``models.get_model(name, weights=None, num_classes=10)`` for the small input size."""
    kwargs: dict[str, Any] = {"num_classes": CLASSES}
    for prefix, argument in SIZE_ARGUMENT.items():
        if name.startswith(prefix):
            size = _size(name)
            kwargs[argument] = size if argument == "image_size" else (size, size)
    with warnings.catch_warnings():
        # googlenet and inception_v3 warn that their default initialisation will change.
        warnings.simplefilter("ignore", FutureWarning)
        return models.get_model(name, weights=None, **kwargs)


def _declarations(name: str) -> dict[str, str]:
    if name.startswith("regnet_"):
        return finding(
            "regnet-meta-device", "module.builds_on_meta_device", "module.loads_on_meta_device_with_assign"
        )
    return {}


NAMES = [name for name in models.list_models(module=models) if not is_fast() or name in FAST]


@contextlib.contextmanager
def _one_large_model_at_a_time(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hold the large models' lock for ``name``'s test (a no-op for a smaller model, or where there is
    no fcntl)."""
    if name not in LARGE or fcntl is None:
        yield
        return
    # Each xdist worker's base temporary folder is popen-gw<N> in one folder the run shares.
    shared = tmp_path_factory.getbasetemp().parent
    with (shared / "torchvision-large-models.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_torchvision_classifier(
    name: str, mode: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with _one_large_model_at_a_time(name, tmp_path_factory):
        _check_classifier(name, mode, request)


def _check_classifier(name: str, mode: str, request: pytest.FixtureRequest) -> None:
    factory = functools.partial(_build, name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = factory()
        images = torch.randn(2, 3, _size(name), _size(name))
    model.train(mode == "train")
    target = Target(
        model,
        Module,
        name=f"torchvision.{name}({mode})",
        example_inputs=(images,),
        factory=factory,
        expected_failures=_declarations(name),
        isolate=name in LARGE,
    )
    budget = LARGE_TIME_BUDGET_S if name in LARGE else DEFAULT_TIME_BUDGET_S
    judge(request.node, check(target, time_budget_s=budget))
