"""Linear, ReLU, Sequential, the loss and SGD: shapes, errors, gradients, and parity with torch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from torchcontract.reference_impl import (
    SGD,
    Linear,
    Parameter,
    ReLU,
    Sequential,
    softmax_cross_entropy,
)

from ..conftest import NO_TORCH_REASON

# -- Linear: construction ----------------------------------------------------------------------------


def test_linear_init_distribution_like_torch() -> None:
    layer = Linear(1000, 1000, rng=np.random.default_rng(0))
    bound = 1 / math.sqrt(1000)
    w, b = layer.weight.data, layer.bias.data  # type: ignore[union-attr]
    assert w.shape == (1000, 1000)
    assert b.shape == (1000,)
    assert w.dtype == b.dtype == np.float32
    assert np.abs(w).max() <= np.float32(bound)
    assert np.abs(b).max() <= np.float32(bound)
    assert np.abs(w).max() > 0.999 * bound  # spans the whole interval
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert abs(float(w.mean())) < 1e-3 * bound * 10
    assert b.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_linear_rng_makes_init_reproducible_and_none_gives_fresh_draws() -> None:
    a = Linear(5, 4, rng=np.random.default_rng(7))
    b = Linear(5, 4, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)  # type: ignore[union-attr]
    assert not np.array_equal(Linear(5, 4).weight.data, Linear(5, 4).weight.data)


def test_linear_zero_fan_in_has_zero_bias_and_zero_output() -> None:
    layer = Linear(0, 3)
    assert layer.weight.data.shape == (3, 0)
    np.testing.assert_array_equal(layer.bias.data, 0)  # type: ignore[union-attr]
    np.testing.assert_array_equal(layer(np.zeros((2, 0), np.float32)), np.zeros((2, 3)))


def test_linear_without_bias_and_float64() -> None:
    layer = Linear(3, 2, bias=False, dtype=np.float64)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert layer(np.ones((1, 3))).dtype == np.float64


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((-1, 2), {}, ValueError),
        ((2.0, 2), {}, TypeError),
        ((True, 2), {}, TypeError),
        ((2, 2), {"dtype": np.float16}, TypeError),
        ((2, 2), {"dtype": np.int32}, TypeError),
    ],
)
def test_linear_rejects_bad_construction(args: tuple[Any, ...], kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        Linear(*args, **kwargs)


# -- Linear: forward and backward -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (4, 5), (0, 5), (2, 3, 5), (2, 0, 5), (1, 2, 3, 5)])
def test_linear_shapes(shape: tuple[int, ...]) -> None:
    layer = Linear(5, 3, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y = layer(x)
    assert y.shape == (*shape[:-1], 3)
    assert y.dtype == np.float32
    expected = x.astype(np.float64) @ layer.weight.data.T.astype(np.float64) + layer.bias.data  # type: ignore[union-attr]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    grad_input = layer.backward(np.ones_like(y))
    assert grad_input.shape == x.shape
    assert grad_input.dtype == np.float32
    assert layer.weight.grad is not None
    assert layer.weight.grad.shape == (3, 5)


def test_linear_rejects_wrong_last_dim_and_scalars() -> None:
    layer = Linear(5, 3)
    with pytest.raises(ValueError, match=r"\(\*, 5\), got \(2, 4\)"):
        layer(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(\*, 5\)"):
        layer(np.ones((), np.float32))


def test_linear_rejects_dtype_mismatch_without_promotion() -> None:
    layer = Linear(5, 3)
    with pytest.raises(TypeError, match="dtype float32, got float64"):
        layer(np.ones((2, 5)))
    with pytest.raises(TypeError, match="dtype float32, got int64"):
        layer(np.ones((2, 5), np.int64))
    with pytest.raises(TypeError, match="NumPy array, got list"):
        layer([[1.0] * 5])  # type: ignore[arg-type]


def test_linear_backward_checks() -> None:
    layer = Linear(5, 3)
    with pytest.raises(RuntimeError, match="preceding forward"):
        layer.backward(np.ones((2, 3), np.float32))
    layer(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"shape \(2, 3\), got \(3, 3\)"):
        layer.backward(np.ones((3, 3), np.float32))
    with pytest.raises(TypeError, match="float64"):
        layer.backward(np.ones((2, 3)))


def test_linear_backward_accumulates() -> None:
    rng = np.random.default_rng(0)
    layer = Linear(4, 3, rng=rng)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    g = rng.standard_normal((6, 3)).astype(np.float32)
    layer(x)
    layer.backward(g)
    once_w, once_b = layer.weight.grad.copy(), layer.bias.grad.copy()  # type: ignore[union-attr]
    grad_w = layer.weight.grad
    layer.backward(g)
    assert layer.weight.grad is grad_w  # in place
    np.testing.assert_allclose(layer.weight.grad, 2 * once_w, rtol=1e-6)
    np.testing.assert_allclose(layer.bias.grad, 2 * once_b, rtol=1e-6)  # type: ignore[union-attr]
    np.testing.assert_allclose(once_w, g.T @ x, rtol=1e-5)
    np.testing.assert_allclose(once_b, g.sum(axis=0), rtol=1e-5)


def test_linear_gradients_match_finite_differences_float64() -> None:
    rng = np.random.default_rng(3)
    layer = Linear(3, 2, dtype=np.float64, rng=rng)
    x = rng.standard_normal((4, 3))
    coefficients = rng.standard_normal((4, 2))

    def objective(inputs: np.ndarray) -> float:
        return float(np.sum(layer.forward(inputs) * coefficients))

    objective(x)
    grad_input = layer.backward(coefficients)
    eps = 1e-6
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (objective(x + step) - objective(x - step)) / (2 * eps)
    np.testing.assert_allclose(grad_input, numeric, rtol=1e-6, atol=1e-8)


# -- ReLU and Sequential ----------------------------------------------------------------------------


def test_relu_forward_backward() -> None:
    relu = ReLU()
    x = np.array([[-1.0, 0.0, 2.0]], np.float32)
    np.testing.assert_array_equal(relu(x), [[0, 0, 2]])
    assert relu(x).dtype == np.float32
    np.testing.assert_array_equal(relu.backward(np.array([[5.0, 5.0, 5.0]], np.float32)), [[0, 0, 5]])
    with pytest.raises(ValueError, match="shape"):
        relu.backward(np.ones((2, 2), np.float32))
    with pytest.raises(RuntimeError, match="preceding forward"):
        ReLU().backward(x)
    with pytest.raises(TypeError):
        relu([1.0])  # type: ignore[arg-type]


def test_sequential_indexing_len_iteration() -> None:
    a, b, c = Linear(2, 3), ReLU(), Linear(3, 1)
    model = Sequential(a, b, c)
    assert len(model) == 3
    assert list(model) == [a, b, c]
    assert model[0] is a
    assert model[-1] is c
    assert model[np.int64(1)] is b
    head = model[:2]
    assert isinstance(head, Sequential)
    assert list(head) == [a, b]
    assert [n for n, _ in head.named_parameters()] == ["0.weight", "0.bias"]
    assert list(model[::-1]) == [c, b, a]
    with pytest.raises(IndexError):
        model[3]
    with pytest.raises(IndexError):
        model[-4]
    with pytest.raises(TypeError):
        model["0"]  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="position 1"):
        Sequential(a, "relu")  # type: ignore[arg-type]
    empty = Sequential()
    x = np.ones((2, 2), np.float32)
    assert empty(x) is x
    assert len(empty) == 0


def test_sequential_applies_a_repeated_module_each_time() -> None:
    double = Linear(1, 1, bias=False)
    double.weight.data[...] = 2
    model = Sequential(double, double)
    np.testing.assert_array_equal(model(np.ones((1, 1), np.float32)), [[4]])
    assert len(model) == 2


# -- parity with torch ------------------------------------------------------------------------------


def _torch_linear(torch: Any, layer: Linear) -> Any:
    theirs = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(layer.weight.data))
        if layer.bias is not None:
            theirs.bias.copy_(torch.from_numpy(layer.bias.data))
    return theirs


@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 5), (0, 5), (5,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(shape: tuple[int, ...], bias: bool) -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    rng = np.random.default_rng(0)
    ours = Linear(5, 4, bias=bias, rng=rng)
    theirs = _torch_linear(torch, ours)
    x = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal((*shape[:-1], 4)).astype(np.float32) for _ in range(2)]
    tx = torch.from_numpy(x).requires_grad_(True)
    torch.testing.assert_close(torch.from_numpy(ours(x)), theirs(tx).detach())
    # Two backward passes: torch accumulates into .grad, and so must we.
    for g in grads:
        grad_input = ours.backward(g)
        tx.grad = None
        theirs(tx).backward(torch.from_numpy(g))
        torch.testing.assert_close(torch.from_numpy(grad_input), tx.grad)
        torch.testing.assert_close(torch.from_numpy(ours.weight.grad), theirs.weight.grad)
        if bias:
            torch.testing.assert_close(torch.from_numpy(ours.bias.grad), theirs.bias.grad)


def test_sequential_matches_torch() -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    rng = np.random.default_rng(1)
    ours = Sequential(Linear(784, 128, rng=rng), ReLU(), Linear(128, 10, rng=rng))
    theirs = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.random((32, 784), dtype=np.float32)
    targets = rng.integers(0, 10, 32)
    tx = torch.from_numpy(x).requires_grad_(True)
    logits = ours(x)
    tlogits = theirs(tx)
    torch.testing.assert_close(torch.from_numpy(logits), tlogits.detach())
    loss, grad = softmax_cross_entropy(logits, targets)
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(targets))
    assert loss == pytest.approx(tloss.item(), rel=1e-5)
    tloss.backward()
    torch.testing.assert_close(torch.from_numpy(ours.backward(grad)), tx.grad)
    for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert name == tname
        torch.testing.assert_close(torch.from_numpy(p.grad), tp.grad, msg=name)


# -- loss and SGD -----------------------------------------------------------------------------------


def test_cross_entropy_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((5, 4)) * 3
    targets = rng.integers(0, 4, 5)
    _, grad = softmax_cross_entropy(logits, targets)
    eps = 1e-6
    numeric = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        step = np.zeros_like(logits)
        step[index] = eps
        up, _ = softmax_cross_entropy(logits + step, targets)
        down, _ = softmax_cross_entropy(logits - step, targets)
        numeric[index] = (up - down) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_cross_entropy_is_stable_and_exact_on_known_values() -> None:
    loss, grad = softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, 0.0]]), np.array([0, 1]))
    assert loss == pytest.approx(math.log(2) / 2)
    np.testing.assert_allclose(grad, [[0, 0], [0.25, -0.25]], atol=1e-12)
    _, grad32 = softmax_cross_entropy(np.zeros((1, 3), np.float32), np.array([0]))
    assert grad32.dtype == np.float32


@pytest.mark.parametrize(
    ("logits", "targets", "error"),
    [
        (np.zeros((2, 3)), np.array([0, 3]), ValueError),
        (np.zeros((2, 3)), np.array([0, -1]), ValueError),
        (np.zeros((2, 3)), np.array([0]), ValueError),
        (np.zeros((0, 3)), np.zeros(0, np.int64), ValueError),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), TypeError),
        (np.zeros((2, 3), np.int64), np.array([0, 1]), TypeError),
        (np.zeros(3), np.array([0]), TypeError),
        ([[0.0]], np.array([0]), TypeError),
    ],
)
def test_cross_entropy_rejects_bad_input(logits: Any, targets: Any, error: type) -> None:
    with pytest.raises(error):
        softmax_cross_entropy(logits, targets)


def test_sgd_step_and_zero_grad() -> None:
    p = Parameter(np.array([1.0, 2.0], np.float32))
    q = Parameter(np.array([5.0], np.float32))
    data = p.data
    p.grad = np.array([1.0, -1.0], np.float32)
    optimizer = SGD([p, q], lr=0.5)
    optimizer.step()
    assert p.data is data  # updated in place
    np.testing.assert_array_equal(p.data, [0.5, 2.5])
    np.testing.assert_array_equal(q.data, [5.0])  # no gradient, no step
    assert p.data.dtype == np.float32
    optimizer.zero_grad()
    assert p.grad is None
    for lr in (-1.0, float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match="lr"):
            SGD([p], lr=lr)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SGD([p.data], lr=0.1)  # type: ignore[list-item]
