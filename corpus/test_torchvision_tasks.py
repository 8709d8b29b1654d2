"""torchvision's models beyond classification, with ``weights=None`` and small inputs, in eval and train
mode: semantic segmentation, video classification, optical flow, the quantizable classifiers (in float,
``quantize=False``) and object detection (images with their targets, which training needs). Every
failure is a finding of thirdparty/FINDINGS.md or a false verdict."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
pytest.importorskip("torchvision", reason="torchvision is not installed")

from torchvision.models import detection, optical_flow, quantization, segmentation, video  # noqa: E402

from torchcontract.conformance import Target, check  # noqa: E402
from torchcontract.protocols import Module  # noqa: E402

from ._support import finding, is_fast, judge  # noqa: E402


def _images(*shape: int) -> Callable[[], tuple[Any, ...]]:
    return lambda: (torch.randn(*shape),)


def _detection_batch(count: int = 1, keypoints: bool = False) -> Callable[[], tuple[Any, ...]]:
    """``(images, targets)``: training takes both; in eval mode the targets are not used."""

    def batch() -> tuple[Any, ...]:
        targets = []
        for _ in range(count):
            target = {
                "boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0], [30.0, 30.0, 100.0, 110.0]]),
                "labels": torch.tensor([1, 2]),
            }
            if keypoints:
                target["labels"] = torch.tensor([1, 1])
                target["keypoints"] = torch.cat([torch.rand(2, 17, 2) * 50 + 30, torch.ones(2, 17, 1)], -1)
            targets.append(target)
        return [torch.rand(3, 128, 128) for _ in range(count)], targets

    return batch


SMALL_DETECTION = {"weights": None, "weights_backbone": None, "min_size": 128, "max_size": 128}


@dataclass(frozen=True)
class _Model:
    builder: Callable[..., Any]
    kwargs: dict[str, Any]  # the builder's
    inputs: Callable[[], tuple[Any, ...]]
    keywords: dict[str, Any] = field(default_factory=dict)  # the example keyword arguments
    declarations: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


SEGMENTATION = {"weights": None, "weights_backbone": None, "num_classes": 3}
QUANTIZABLE = {"weights": None, "quantize": False, "num_classes": 10}
MODELS: dict[str, _Model] = {
    "lraspp_mobilenet_v3_large": _Model(
        segmentation.lraspp_mobilenet_v3_large, SEGMENTATION, _images(2, 3, 64, 64)
    ),
    "deeplabv3_mobilenet_v3_large": _Model(
        segmentation.deeplabv3_mobilenet_v3_large, SEGMENTATION, _images(2, 3, 64, 64)
    ),
    "fcn_resnet50(aux_loss)": _Model(
        segmentation.fcn_resnet50, {**SEGMENTATION, "aux_loss": True}, _images(2, 3, 64, 64)
    ),
    "r3d_18": _Model(video.r3d_18, {"weights": None, "num_classes": 5}, _images(2, 3, 8, 32, 32)),
    "r2plus1d_18": _Model(video.r2plus1d_18, {"weights": None, "num_classes": 5}, _images(2, 3, 8, 32, 32)),
    "swin3d_t": _Model(video.swin3d_t, {"weights": None, "num_classes": 5}, _images(2, 3, 4, 64, 64)),
    # RAFT runs in float32 only, so no float64 result sizes the rounding of its channels-last layout: the
    # tolerance decides it, as the clause's message says.
    "raft_small": _Model(
        optical_flow.raft_small,
        {"weights": None},
        lambda: (torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)),
        keywords={"num_flow_updates": 2},
        declarations=finding("raft-float32-only", "module.to_dtype"),
        options={"parity_tolerance": (1e-4, 1e-4)},
    ),
    "quantization.resnet18": _Model(quantization.resnet18, QUANTIZABLE, _images(2, 3, 32, 32)),
    "quantization.mobilenet_v3_large": _Model(
        quantization.mobilenet_v3_large, QUANTIZABLE, _images(2, 3, 32, 32)
    ),
    "quantization.googlenet": _Model(
        quantization.googlenet,
        {**QUANTIZABLE, "aux_logits": False, "init_weights": True},
        _images(2, 3, 32, 32),
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": _Model(
        detection.fasterrcnn_mobilenet_v3_large_320_fpn,
        {**SMALL_DETECTION, "num_classes": 3},
        _detection_batch(),
    ),
    # Two images: its extra blocks reduce a 320 input to 1x1, where BatchNorm needs a batch of two.
    "ssdlite320_mobilenet_v3_large": _Model(
        detection.ssdlite320_mobilenet_v3_large,
        {"weights": None, "weights_backbone": None, "num_classes": 3},
        _detection_batch(2),
    ),
    "keypointrcnn_resnet50_fpn": _Model(
        detection.keypointrcnn_resnet50_fpn,
        {**SMALL_DETECTION, "num_classes": 2},
        _detection_batch(keypoints=True),
        declarations=finding("keypointrcnn-float64-keypoints", "module.to_dtype"),
    ),
}

FAST = ("lraspp_mobilenet_v3_large", "raft_small")
NAMES = [name for name in MODELS if not is_fast() or name in FAST]


def _build(builder: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet's initialisation, torchvision's deprecations
        return builder(**kwargs)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_torchvision_task_model(name: str, mode: str, request: pytest.FixtureRequest) -> None:
    model_of = MODELS[name]
    factory = functools.partial(_build, model_of.builder, model_of.kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = factory()
        example = model_of.inputs()
    model.train(mode == "train")
    target = Target(
        model,
        Module,
        name=f"torchvision.{name}({mode})",
        example_inputs=example,
        example_kwargs=model_of.keywords or None,
        factory=factory,
        expected_failures=model_of.declarations,
        **model_of.options,
    )
    judge(request.node, check(target, time_budget_s=300))
