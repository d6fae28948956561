import math

import numpy as np
import pytest
import torch
from torch import nn

from fmlearn import MLP, odeint, sample, time_grid

A = torch.tensor([[-0.5, -2.0], [2.0, -0.5]], dtype=torch.float64)  # rotation at angular speed 2, decay 0.5
X0 = torch.tensor([[1.0, 0.0], [0.3, -0.7], [-1.2, 0.4]], dtype=torch.float64)
ORDERS = {"euler": 1, "midpoint": 2, "rk4": 4}
EVALS = {"euler": 1, "midpoint": 2, "rk4": 4}


def linear(x, t):
    return x @ A.T


def exact(x0, t):
    """x(t) = expm(t A) x0 via torch.linalg.matrix_exp."""
    return x0 @ torch.linalg.matrix_exp(t * A).T


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_observed_order(method):
    """Observed order (slope of log error vs log h over 8..64 steps) vs the theoretical 1 / 2 / 4, within 0.3."""
    steps = [8, 16, 32, 64]
    errs = [float((odeint(linear, X0, steps=n, method=method).x - exact(X0, 1.0)).abs().max()) for n in steps]
    slope = np.polyfit(np.log([1 / n for n in steps]), np.log(errs), 1)[0]
    assert abs(slope - ORDERS[method]) < 0.3, (slope, errs)


def test_time_dependent_rhs_order():
    """dx/dt = cos(t) x has x(1) = exp(sin 1) x0: rk4's observed order on a time-dependent field is ~4."""
    x0 = torch.ones(1, 1, dtype=torch.float64)
    steps = [4, 8, 16, 32]
    errs = [abs(float(odeint(lambda x, t: math.cos(t) * x, x0, steps=n, method="rk4").x) - math.exp(math.sin(1)))
            for n in steps]
    slope = np.polyfit(np.log([1 / n for n in steps]), np.log(errs), 1)[0]
    assert abs(slope - 4) < 0.3, (slope, errs)


@pytest.mark.parametrize("method", sorted(ORDERS))
@pytest.mark.parametrize("steps", [1, 5, 13])
def test_nfe_counts_evaluations(method, steps):
    """nfe vs a counter inside the velocity function (steps x 1 / 2 / 4)."""
    calls = []

    def counted(x, t):
        calls.append(t)
        return linear(x, t)

    sol = odeint(counted, X0, steps=steps, method=method)
    assert sol.nfe == len(calls) == steps * EVALS[method]


def test_velocity_gets_python_float_times():
    """The velocity receives t as a Python float at the stage times (midpoint: t and t + h/2)."""
    seen = []
    odeint(lambda x, t: (seen.append(t), x)[1], X0, steps=2, method="midpoint")
    assert all(type(t) is float for t in seen)
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.75])


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_trajectory(method):
    """trajectory has shape (steps + 1, batch, dim), starts at x0, ends at x, and each row is the state at times[i]
    (vs separate solves over the first i steps of the same grid)."""
    steps = 6
    sol = odeint(linear, X0, steps=steps, method=method, return_trajectory=True)
    assert sol.trajectory.shape == (steps + 1, *X0.shape)
    assert torch.equal(sol.trajectory[0], X0) and torch.equal(sol.trajectory[-1], sol.x)
    torch.testing.assert_close(sol.times, torch.linspace(0, 1, steps + 1, dtype=torch.float64))
    for i in (2, 4):
        part = odeint(linear, X0, times=sol.times[:i + 1], method=method).x
        torch.testing.assert_close(sol.trajectory[i], part)


def test_no_trajectory_by_default():
    """Without return_trajectory the solution carries no trajectory."""
    assert odeint(linear, X0, steps=3).trajectory is None


def test_round_trip_backwards():
    """A decreasing grid 1 -> 0 inverts the forward map: forward then backward with rk4 returns x0 (error < 1e-6)."""
    fwd = odeint(linear, X0, steps=50, method="rk4").x
    back = odeint(linear, fwd, times=torch.linspace(1, 0, 51), method="rk4").x
    torch.testing.assert_close(back, X0, rtol=0, atol=1e-6)
    # and the backward solve alone matches expm(-A) applied to the end point
    torch.testing.assert_close(back, exact(fwd, -1.0), rtol=0, atol=1e-6)


def test_nonuniform_grid():
    """A non-uniform increasing grid reaches the exact solution (rk4 on a fine geometric-ish grid)."""
    times = torch.linspace(0, 1, 41, dtype=torch.float64) ** 2
    sol = odeint(linear, X0, times=times, method="rk4")
    torch.testing.assert_close(sol.x, exact(X0, 1.0), rtol=0, atol=1e-5)
    assert sol.nfe == 4 * 40


def test_time_grid():
    """time_grid(n, t0, t1) vs numpy.linspace in float64."""
    g = time_grid(8, 0.2, 0.9)
    assert g.dtype == torch.float64
    np.testing.assert_allclose(g.numpy(), np.linspace(0.2, 0.9, 9))


def test_gradients_flow():
    """Gradients through odeint vs d x(1) / d x0 = expm(A) (rk4 with 100 steps: discretisation error < 1e-7)."""
    x0 = X0.clone().requires_grad_(True)
    x1 = odeint(linear, x0, steps=100, method="rk4").x
    (g,) = torch.autograd.grad(x1[:, 0].sum(), x0)
    want = torch.linalg.matrix_exp(A)[0].expand_as(g)
    torch.testing.assert_close(g, want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="heun", steps=4), "method must be one of"),
    (dict(steps=0), "steps"),
    (dict(steps=-2), "steps"),
    (dict(steps=4, times=[0.0, 1.0]), "exactly one of steps"),
    (dict(), "exactly one of steps"),
    (dict(times=[0.0, 0.5, 0.3, 1.0]), "strictly increasing or strictly decreasing"),
    (dict(times=[0.0, 0.5, 0.5, 1.0]), "strictly increasing or strictly decreasing"),
    (dict(times=[0.5]), "at least 2 time points"),
    (dict(times=[0.0, float("nan"), 1.0]), "times must be finite"),
])
def test_bad_input(kwargs, match):
    """Unknown method, bad steps, steps and times both / neither, non-monotone or single-point grid: ValueError."""
    with pytest.raises(ValueError, match=match):
        odeint(linear, X0, **kwargs)


def test_x0_not_tensor():
    """A non-tensor x0 raises TypeError naming x0 (odeint and sample)."""
    with pytest.raises(TypeError, match="x0"):
        odeint(linear, [[0.0, 1.0]], steps=2)
    with pytest.raises(TypeError, match="x0"):
        sample(MLP(2, hidden=4), [[0.0, 1.0]], steps=2)


class ModeRecorder(nn.Module):
    """A velocity model that records whether it was in training mode and whether grad was on when called."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.seen = []

    def forward(self, x, t, **cond):
        self.seen.append((self.training, torch.is_grad_enabled(), x.device.type, dict(cond)))
        return self.lin(x)


@pytest.mark.parametrize("training", [True, False])
def test_sample_restores_training_flag(training):
    """sample runs the model in eval mode without gradients and leaves its training flag as it found it."""
    model = ModeRecorder()
    model.train(training)
    out = sample(model, torch.randn(5, 2), steps=3, method="midpoint")
    assert model.training is training
    assert {s[:2] for s in model.seen} == {(False, False)}
    assert out.nfe == len(model.seen) == 6


class BufferOnly(nn.Module):
    """A velocity model with a buffer but no parameters (e.g. a fixed field wrapped as a Module)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(-1.0))
        self.modes = []

    def forward(self, x, t):
        self.modes.append(self.training)
        return self.scale * x


def test_sample_parameter_free_module_in_eval_mode():
    """sample's documented eval mode also holds for an nn.Module without parameters (vs model.training seen inside)."""
    model = BufferOnly().train()
    sample(model, torch.randn(4, 2), steps=2)
    assert model.modes == [False, False]
    assert model.training


def test_sample_restores_training_flag_on_error():
    """Even when the model raises, sample restores the training flag."""
    class Boom(ModeRecorder):
        def forward(self, x, t, **cond):
            raise RuntimeError("boom")

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        sample(model, torch.randn(5, 2), steps=2)
    assert model.training


def test_sample_passes_conditioning():
    """Conditioning kwargs reach the model unchanged."""
    model = ModeRecorder()
    sample(model, torch.randn(5, 2), steps=1, label=3)
    assert model.seen[0][3] == {"label": 3}


def test_sample_moves_x0_to_model_device():
    """x0 on the CPU is moved to the model's device ('meta' here, a device other than the CPU without CUDA)."""
    model = MLP(2, hidden=8, depth=1).to("meta")
    out = sample(model, torch.randn(5, 2), steps=2, method="rk4", return_trajectory=True)
    assert out.x.device.type == "meta" and out.trajectory.device.type == "meta"
    assert out.x.shape == (5, 2)


def test_sample_equals_odeint_with_model():
    """sample(model, x0) equals odeint of model(x, t) under no_grad (same grid, same method)."""
    torch.manual_seed(0)
    model = MLP(2, hidden=16, depth=2).eval()
    x0 = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = odeint(model, x0, steps=7, method="rk4").x
    torch.testing.assert_close(sample(model, x0, steps=7, method="rk4").x, ref)
    times = torch.tensor([0.0, 0.1, 0.5, 1.0])
    with torch.no_grad():
        ref_t = odeint(model, x0, times=times, method="midpoint").x
    torch.testing.assert_close(sample(model, x0, times=times, method="midpoint").x, ref_t)


def test_sample_with_plain_function():
    """A plain function (no parameters) works as a model: sample of dx/dt = A x vs expm(A) x0."""
    out = sample(linear, X0, steps=100, method="rk4")
    torch.testing.assert_close(out.x, exact(X0, 1.0), rtol=0, atol=1e-8)


@pytest.mark.cuda
def test_sample_moves_x0_to_cuda():
    """x0 on the CPU is moved to a CUDA model's device and the result stays there."""
    model = MLP(2, hidden=8, depth=1).cuda()
    out = sample(model, torch.randn(5, 2), steps=2)
    assert out.x.device.type == "cuda"
