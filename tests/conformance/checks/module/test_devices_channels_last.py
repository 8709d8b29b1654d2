"""module.channels_last_matches_contiguous: 4-D inputs in channels_last, 5-D ones in channels_last_3d; a
module that reads raw memory computes something else there; no image input is a skip with its reason; a
deep network's rounding in another order of summation is judged against the module in float64, and is
undecided (unverified) for a module without a float64 result."""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import Report, Target

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON),
    pytest.mark.clause("module.channels_last_matches_contiguous"),
]

CHANNELS_LAST = "module.channels_last_matches_contiguous"

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import Module

    class ReadsRawMemory(nn.Module):
        """Flattens by the storage order (as a custom kernel taking data_ptr() would read it)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Linear(27, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.conv(x)
            raw = torch.as_strided(features, (features.size(0), 27), (27, 1))
            return self.head(raw)

    class DeepStack(nn.Module):
        """Ten 64-channel convolutions: wide enough that oneDNN takes another path for channels-last,
        deep enough that its rounding in float32 passes assert_close's tolerances."""

        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, padding=1)]
            for _ in range(10):
                conv = nn.Conv2d(64, 64, 3, padding=1)
                nn.init.normal_(conv.weight, std=0.1)
                layers += [conv, nn.ReLU()]
            self.layers = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    class OffInChannelsLast(DeepStack):
        """The same network, a thousandth off wherever its input is laid out channels-last (a custom
        kernel with a layout-dependent mistake)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.layers(x)
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                out = out * 1.001
            return out

    class Float32Only(nn.Module):
        """Wraps a network that runs in float32 only (as torchvision's RAFT: a grid it makes in float32
        meets the features in grid_sample), so that no float64 result sizes its rounding."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dtype != torch.float32:
                raise RuntimeError(f"expected scalar type Float but found {x.dtype}")
            return self.inner(x)


def _run(module: Any, *inputs: Any, **options: Any) -> Any:
    target = Target(module, Module, example_inputs=inputs, **options)
    report: Report = target.run("cpu", 30.0, select=lambda c: c.check_id == CHANNELS_LAST)
    return next(r for r in report.results if r.check_id == CHANNELS_LAST)


def _seeded(build: Any) -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def test_a_module_reading_raw_memory_differs() -> None:
    result = _run(_seeded(ReadsRawMemory), torch.linspace(-1.0, 1.0, 100).reshape(2, 2, 5, 5))
    assert result.status == "failed", result
    assert "differs from m(*inputs)" in result.message
    assert "inputs[0] in channels_last" in result.message


def test_the_target_tolerance_is_named_when_given() -> None:
    result = _run(
        _seeded(ReadsRawMemory),
        torch.linspace(-1.0, 1.0, 100).reshape(2, 2, 5, 5),
        parity_tolerance=(0.0, 1e-9),
    )
    assert "the target's parity_tolerance (rtol=0.0, atol=1e-09)" in result.message


def test_a_volume_is_checked_in_channels_last_3d() -> None:
    module = _seeded(lambda: nn.Sequential(nn.Conv3d(2, 3, 3), nn.ReLU()))
    result = _run(module, torch.linspace(-1.0, 1.0, 2 * 2 * 4 * 4 * 4).reshape(2, 2, 4, 4, 4))
    assert result.status == "passed", result


def test_no_image_input_is_a_skip_with_its_reason() -> None:
    result = _run(_seeded(lambda: nn.Linear(3, 2)), torch.ones(4, 3))
    assert result.status == "skipped"
    assert "no example input is a 4-D or 5-D floating-point tensor" in result.message


def test_the_user_module_keeps_its_layout() -> None:
    module = _seeded(lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(27, 2)))
    assert _run(module, torch.ones(2, 2, 5, 5)).status == "passed"
    assert module[0].weight.is_contiguous()


# A deep network: the kernels of the two layouts add in another order, and the float32 rounding a deep
# stack grows passes assert_close's tolerances. Judged against the module in float64, that rounding
# passes (with a note) and a real difference, however small beside the outputs, still fails.


def _image() -> Any:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_the_rounding_of_a_deep_network_in_channels_last_passes_with_a_note() -> None:
    with torch.no_grad():
        plain = _seeded(DeepStack).eval()(_image())
        laid_out = (
            _seeded(DeepStack)
            .eval()
            .to(memory_format=torch.channels_last)(_image().contiguous(memory_format=torch.channels_last))
        )
    # The case this test is about: the two layouts differ beyond assert_close's float32 tolerances.
    assert not torch.allclose(plain, laid_out, rtol=1.3e-6, atol=1e-5)
    result = _run(_seeded(DeepStack), _image())
    assert result.status == "passed", result
    assert "rounding in another order of summation" in result.message


def test_a_real_difference_in_channels_last_still_fails_naming_the_float64_errors() -> None:
    result = _run(_seeded(OffInChannelsLast), _image())
    assert result.status == "failed", result
    assert "from the module's float64 result" in result.message


# Without a float64 result (a module that runs in float32 only), a difference the size of rounding beside
# the outputs is undecided, not failed; one the size of a mistake still fails.


def test_rounding_without_a_float64_result_is_unverified_not_failed() -> None:
    result = _run(_seeded(lambda: Float32Only(DeepStack())), _image())
    assert result.status == "unverified", result
    assert "the module gives no float64 result to tell rounding from the layout by" in result.message
    assert "give parity_tolerance=(rtol, atol) to decide" in result.message


def test_a_real_difference_without_a_float64_result_still_fails() -> None:
    result = _run(_seeded(lambda: Float32Only(OffInChannelsLast())), _image())
    assert result.status == "failed", result
