import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torch import nn

import fmlearn
from fmlearn import MLP, odeint, sample, time_grid
from fmlearn import adaptive
from fmlearn.spaces import EUCLIDEAN


def dopri5(velocity, x0, t0=0.0, t1=1.0, **kwargs):
    """odeint's adaptive method from t0 to t1, as these tests call it."""
    return odeint(velocity, x0, method="dopri5", times=[t0, t1], **kwargs)

A = torch.tensor([[-0.5, -2.0], [2.0, -0.5]], dtype=torch.float64)  # rotation at angular speed 2, decay 0.5
X0 = torch.tensor([[1.0, 0.0], [0.3, -0.7], [-1.2, 0.4]], dtype=torch.float64)
ORDERS = {"euler": 1, "heun": 2, "midpoint": 2, "rk4": 4}
EVALS = {"euler": 1, "heun": 2, "midpoint": 2, "rk4": 4}


def linear(x, t):
    return x @ A.T


def exact(x0, t):
    """x(t) = expm(t A) x0 via torch.linalg.matrix_exp."""
    return x0 @ torch.linalg.matrix_exp(t * A).T


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_observed_order(method):
    """Observed order (slope of log error vs log h over 8..64 steps) vs the theoretical 1 / 2 / 2 / 4, within 0.3."""
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
    """nfe vs a counter inside the velocity function (steps x 1 / 2 / 2 / 4)."""
    calls = []

    def counted(x, t):
        calls.append(t)
        return linear(x, t)

    sol = odeint(counted, X0, steps=steps, method=method)
    assert sol.nfe == len(calls) == steps * EVALS[method]


@pytest.mark.parametrize("method, stage_times", [("midpoint", [0.0, 0.25, 0.5, 0.75]), ("heun", [0.0, 0.5, 0.5, 1.0])])
def test_velocity_gets_python_float_times(method, stage_times):
    """The velocity receives t as a Python float at the stage times (midpoint: t and t + h/2; heun: t and t + h)."""
    seen = []
    odeint(lambda x, t: (seen.append(t), x)[1], X0, steps=2, method=method)
    assert all(type(t) is float for t in seen)
    assert seen == pytest.approx(stage_times)


def test_heun_step_by_hand():
    """One heun step vs the trapezoid written out: x + h/2 (u(x, t) + u(x + h u(x, t), t + h)) on dx/dt = t x^2."""
    x0 = torch.tensor([[0.5], [-1.0]], dtype=torch.float64)
    t, h = 0.2, 0.3
    k1 = t * x0**2
    k2 = (t + h) * (x0 + h * k1) ** 2
    got = odeint(lambda x, s: s * x**2, x0, times=torch.tensor([t, t + h], dtype=torch.float64), method="heun").x
    torch.testing.assert_close(got, x0 + h / 2 * (k1 + k2), rtol=1e-15, atol=0)


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


GRID_FRACTIONS = {  # the fraction of the way from t0 to t1 at s = i / steps, written with numpy
    ("uniform", 2.0): lambda s: s,
    ("cosine", 2.0): lambda s: 0.5 - 0.5 * np.cos(np.pi * s),
    ("power", 2.0): lambda s: 1 - (1 - s) ** 2,
    ("power", 3.5): lambda s: 1 - (1 - s) ** 3.5,
    ("power", 0.5): lambda s: 1 - np.sqrt(1 - s),
}


@pytest.mark.parametrize("kind, power", sorted(GRID_FRACTIONS))
@pytest.mark.parametrize("steps, t0, t1", [(1, 0.0, 1.0), (10, 0.0, 1.0), (7, 0.2, 0.9), (12, 1.0, 0.0)])
def test_time_grid_kinds(kind, power, steps, t0, t1):
    """Each kind vs its formula in numpy: float64, endpoints exactly t0 and t1, strictly monotone."""
    g = time_grid(steps, t0, t1, kind=kind, power=power)
    assert g.dtype == torch.float64 and g.shape == (steps + 1,)
    assert float(g[0]) == t0 and float(g[-1]) == t1
    w = GRID_FRACTIONS[kind, power](np.arange(steps + 1) / steps)
    np.testing.assert_allclose(g.numpy(), t0 + (t1 - t0) * w, rtol=1e-14, atol=1e-15)
    d = np.diff(g.numpy()) * np.sign(t1 - t0)
    assert (d > 0).all()


def test_time_grid_kinds_are_denser_where_documented():
    """cosine: the end steps are the smallest; power 2: steps shrink towards t1 (vs the uniform step 1/n)."""
    d_cos = np.diff(time_grid(10, kind="cosine").numpy())
    d_pow = np.diff(time_grid(10, kind="power").numpy())
    assert d_cos[0] == pytest.approx(d_cos.min()) and d_cos[-1] == pytest.approx(d_cos.min()) and d_cos[5] > 0.1
    assert (np.diff(d_pow) < 0).all() and d_pow[-1] < 0.1 < d_pow[0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="log"), r"kind must be one of \('uniform', 'cosine', 'power'\), got 'log'"),
    (dict(kind="power", power=0.0), "power must be a positive finite number, got 0.0"),
    (dict(kind="power", power=-1.0), "power must be a positive finite number"),
    (dict(kind="power", power=float("nan")), "power must be a positive finite number"),
    (dict(t0=0.5, t1=0.5), "t1 must differ from t0"),
    (dict(t1=float("inf")), "t1 must be a finite number"),
])
def test_time_grid_bad_input(kwargs, match):
    """An unknown kind (the message lists the valid ones), a power <= 0 or NaN, t0 == t1: ValueError."""
    with pytest.raises(ValueError, match=match):
        time_grid(4, **kwargs)


def test_gradients_flow():
    """Gradients through odeint vs d x(1) / d x0 = expm(A) (rk4 with 100 steps: discretisation error < 1e-7)."""
    x0 = X0.clone().requires_grad_(True)
    x1 = odeint(linear, x0, steps=100, method="rk4").x
    (g,) = torch.autograd.grad(x1[:, 0].sum(), x0)
    want = torch.linalg.matrix_exp(A)[0].expand_as(g)
    torch.testing.assert_close(g, want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="heum", steps=4), "method must be one of"),
    (dict(method="dopri5", steps=4), "method='dopri5' chooses its own steps"),
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


# --- The adaptive Dormand-Prince 5(4) solver ---------------------------------------------------------------------

def _order_conditions(b):
    """The Runge-Kutta order conditions up to order 5 for weights b, one per rooted tree (Hairer, Norsett & Wanner,
    Solving ODEs I, Table II.2.2), in exact fractions: {order: [sum - 1 / gamma(tree), ...]}."""
    c, s = adaptive.C, len(adaptive.C)
    a = [list(row) + [Fraction(0)] * (s - len(row)) for row in adaptive.A]

    def A(v):
        return [sum(a[i][j] * v[j] for j in range(s)) for i in range(s)]

    def dot(v):
        return sum(bi * vi for bi, vi in zip(b, v))

    def pw(k):
        return [ci**k for ci in c]

    def mul(*vs):
        return [math.prod(x) for x in zip(*vs)]

    ac = A(c)
    return {
        1: [sum(b) - 1],
        2: [dot(c) - Fraction(1, 2)],
        3: [dot(pw(2)) - Fraction(1, 3), dot(ac) - Fraction(1, 6)],
        4: [dot(pw(3)) - Fraction(1, 4), dot(mul(c, ac)) - Fraction(1, 8), dot(A(pw(2))) - Fraction(1, 12),
            dot(A(ac)) - Fraction(1, 24)],
        5: [dot(pw(4)) - Fraction(1, 5), dot(mul(pw(2), ac)) - Fraction(1, 10), dot(mul(ac, ac)) - Fraction(1, 20),
            dot(mul(c, A(pw(2)))) - Fraction(1, 15), dot(mul(c, A(ac))) - Fraction(1, 30),
            dot(A(pw(3))) - Fraction(1, 20), dot(A(mul(c, ac))) - Fraction(1, 40), dot(A(A(pw(2)))) - Fraction(1, 60),
            dot(A(A(ac))) - Fraction(1, 120)],
    }


def test_dopri5_tableau_order_conditions():
    """The tableau, in exact fractions, meets the order conditions: rows sum to c, the 5th-order weights satisfy all
    17 conditions up to order 5, the embedded weights those up to order 4 but not all of order 5 (so e = O(h^5))."""
    for row, c in zip(adaptive.A, adaptive.C):
        assert sum(row) == c
    assert all(v == 0 for vs in _order_conditions(adaptive.B5).values() for v in vs)
    embedded = _order_conditions(adaptive.B4)
    assert all(v == 0 for k in (1, 2, 3, 4) for v in embedded[k])
    assert any(v != 0 for v in embedded[5])
    assert adaptive.B5[:6] == adaptive.A[6] and adaptive.B5[6] == 0  # FSAL: the last stage is at x_new


def test_dopri5_local_error_orders():
    """One step of dx/dt = cos(t) x from t = 0.3 vs the exact exp(sin(t + h) - sin t): the kept solution's local
    error shrinks like h^6, the error estimate like h^5 (slopes within 0.3), and the last stage is u(x_new, t + h)."""
    x0 = torch.ones(1, 1, dtype=torch.float64)

    def u(x, t):
        return math.cos(t) * x

    t, hs = 0.3, [0.4, 0.2, 0.1, 0.05]
    local, estimate = [], []
    for h in hs:
        x_new, k_last, e = adaptive._step(u, EUCLIDEAN.step, x0, t, h, t + h, u(x0, t))
        torch.testing.assert_close(k_last, u(x_new, t + h), rtol=1e-15, atol=0)
        local.append(abs(float(x_new) - math.exp(math.sin(t + h) - math.sin(t))))
        estimate.append(abs(float(e)))
    assert abs(np.polyfit(np.log(hs), np.log(local), 1)[0] - 6) < 0.3, local
    assert abs(np.polyfit(np.log(hs), np.log(estimate), 1)[0] - 5) < 0.3, estimate


VDP_MU = 1.0
VDP_X0 = torch.tensor([[2.0, 0.0], [0.5, -1.0], [-1.5, 2.0], [0.1, 0.1], [-3.0, -0.5]], dtype=torch.float64)


def van_der_pol(x, t):
    """p' = q, q' = mu (1 - p^2) q - p, for a batch of shape (batch, 2)."""
    p, q = x[:, 0], x[:, 1]
    return torch.stack([q, VDP_MU * (1 - p**2) * q - p], dim=1)


def _vdp_numpy(x, t):
    return np.stack([x[:, 1], VDP_MU * (1 - x[:, 0] ** 2) * x[:, 1] - x[:, 0]], axis=1)


def _dopri5_by_hand(f, x0, t0, t1, h, rtol, atol):
    """The documented algorithm written out in numpy for t0 < t1, without FSAL: 5th- and 4th-order solutions from
    the seven stages, err = RMS of (x5 - x4) / (atol + rtol max(|x|, |x5|)), accept when err <= 1,
    h <- h clamp(0.9 err^(-1/5), 0.2, 10), the last step cut to end at t1. Returns (x, accepted times, rejections)."""
    a = [[float(v) for v in row] for row in adaptive.A]
    c = [float(v) for v in adaptive.C]
    b5, b4 = (np.array([float(v) for v in b]) for b in (adaptive.B5, adaptive.B4))
    t, x, times, rejected = t0, x0, [t0], 0
    while t < t1:
        h = min(h, t1 - t)
        k = []
        for i in range(7):
            k.append(f(x + h * sum(a[i][j] * k[j] for j in range(i)), t + c[i] * h))
        x5, x4 = (x + h * np.tensordot(b, np.stack(k), 1) for b in (b5, b4))
        err = np.sqrt(np.mean(((x5 - x4) / (atol + rtol * np.maximum(np.abs(x), np.abs(x5)))) ** 2))
        if err <= 1:
            t, x = t + h, x5
            times.append(t)
        else:
            rejected += 1
        h *= np.clip(0.9 * err ** -0.2, 0.2, 10)
    return x, times, rejected


@pytest.mark.parametrize("first_step, tol", [(0.5, 1e-6), (1e-3, 1e-4)])
def test_adaptive_steps_vs_the_algorithm_by_hand(first_step, tol):
    """The accepted times, the number of rejections and the end point agree with the documented algorithm written
    out in numpy (Van der Pol over [0, 2], a given first step; the first, too large, is rejected)."""
    x_ref, times_ref, rejected_ref = _dopri5_by_hand(_vdp_numpy, VDP_X0.numpy(), 0.0, 2.0, first_step, tol, tol)
    sol = dopri5(van_der_pol, VDP_X0, 0.0, 2.0, rtol=tol, atol=tol, first_step=first_step)
    assert sol.rejected_steps == rejected_ref and (rejected_ref > 0 or first_step != 0.5)
    # err divides a difference of nearly equal numbers by the tolerance, so roundoff shows at the 1e-12 level
    np.testing.assert_allclose(sol.times.numpy(), times_ref, rtol=1e-9, atol=0)
    np.testing.assert_allclose(sol.x.numpy(), x_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", ["van der pol", "small x0, constant velocity", "zero x0"])
def test_initial_step_vs_hairers_heuristic_by_hand(case):
    """The automatic first step vs Hairer, Norsett & Wanner's starting step (Sec. II.4) written out in numpy,
    in cases where each of its branches decides: h1, 100 h0, and the 1e-6 floor."""
    f, x0 = {"van der pol": (_vdp_numpy, VDP_X0.numpy()),
             "small x0, constant velocity": (lambda x, t: np.ones_like(x), np.full((3, 2), 1e-3)),
             "zero x0": (lambda x, t: x @ A.numpy().T, np.zeros((3, 2)))}[case]
    rtol = atol = 1e-6
    scale = atol + rtol * np.abs(x0)

    def rms(v):
        return np.sqrt(np.mean(v**2))

    f0 = f(x0, 0.0)
    d0, d1 = rms(x0 / scale), rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    d2 = rms((f(x0 + h0 * f0, h0) - f0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 5)
    def u(x, t):
        return torch.from_numpy(f(x.numpy(), t))

    x0_t = torch.from_numpy(x0)
    got = adaptive._initial_step(u, EUCLIDEAN.step, x0_t, 0.0, u(x0_t, 0.0), 1.0, 1.0, rtol, atol)
    assert got == pytest.approx(min(100 * h0, h1), rel=1e-12)


def test_adaptive_vs_scipy_van_der_pol():
    """Van der Pol (mu = 1) over [0, 3] for 5 initial conditions vs scipy's DOP853 at rtol 1e-10, atol 1e-12, solved
    one by one: at rtol = atol = 1e-3, 1e-5, 1e-7 the error stays below 30 x tol, and each 100x tighter tolerance
    cuts the error by more than 30x and takes more steps."""
    ref = np.stack([solve_ivp(lambda t, y: [y[1], VDP_MU * (1 - y[0] ** 2) * y[1] - y[0]], (0.0, 3.0), y0,
                              method="DOP853", rtol=1e-10, atol=1e-12).y[:, -1] for y0 in VDP_X0.numpy()])
    errs, steps = [], []
    for tol in (1e-3, 1e-5, 1e-7):
        sol = dopri5(van_der_pol, VDP_X0, 0.0, 3.0, rtol=tol, atol=tol)
        errs.append(np.abs(sol.x.numpy() - ref).max())
        steps.append(sol.accepted_steps)
        assert errs[-1] < 30 * tol, (tol, errs)
    assert errs[0] > 30 * errs[1] > 900 * errs[2], errs
    assert steps[0] < steps[1] < steps[2], steps


def test_adaptive_linear_vs_matrix_exp():
    """dx/dt = A x at rtol = atol = 1e-8 vs expm(A) x0: the end point and every trajectory row (at its accepted
    time) within 1e-7."""
    sol = dopri5(linear, X0, rtol=1e-8, atol=1e-8, return_trajectory=True)
    torch.testing.assert_close(sol.x, exact(X0, 1.0), rtol=0, atol=1e-7)
    assert sol.trajectory.shape == (len(sol.times), *X0.shape) and torch.equal(sol.trajectory[-1], sol.x)
    for t, row in zip(sol.times.tolist(), sol.trajectory):
        torch.testing.assert_close(row, exact(X0, t), rtol=0, atol=1e-7)


def test_adaptive_tighter_rtol_more_steps_smaller_error():
    """rtol = 1e-3, 1e-5, 1e-7 (atol 1e-12) on dx/dt = A x: the steps increase and the error vs expm(A) x0
    decreases, each error below 10 x rtol."""
    errs, steps = [], []
    for rtol in (1e-3, 1e-5, 1e-7):
        sol = dopri5(linear, X0, rtol=rtol, atol=1e-12)
        errs.append(float((sol.x - exact(X0, 1.0)).abs().max()))
        steps.append(sol.accepted_steps)
        assert errs[-1] < 10 * rtol, (rtol, errs)
    assert errs[0] > errs[1] > errs[2], errs
    assert steps[0] < steps[1] < steps[2], steps


@pytest.mark.parametrize("first_step, rtol", [(None, 1e-6), (None, 1e-3), (0.9, 1e-8)])
def test_adaptive_nfe_counts_evaluations(first_step, rtol):
    """nfe vs a counter inside the velocity function; it also equals 1 + 6 per attempted step (+ 1 for the
    automatic first step). A first step of 0.9 at rtol 1e-8 is rejected, so rejected steps are counted too.
    Every call gets a Python float within [t0, t1]."""
    calls = []

    def counted(x, t):
        calls.append(t)
        return van_der_pol(x, t)

    sol = dopri5(counted, VDP_X0, 0.0, 2.0, rtol=rtol, atol=rtol, first_step=first_step)
    assert sol.nfe == len(calls) == 1 + (first_step is None) + 6 * (sol.accepted_steps + sol.rejected_steps)
    assert sol.accepted_steps == len(sol.times) - 1
    if first_step is not None:
        assert sol.rejected_steps > 0
    assert all(type(t) is float and 0.0 <= t <= 2.0 for t in calls)


@pytest.mark.parametrize("t0, t1", [(0.0, 1e-3), (1.0, 1.0 - 1e-3)])
def test_adaptive_stays_inside_the_interval(t0, t1):
    """On an interval shorter than the heuristic's trial step 0.01 d0 / d1, the velocity is still only evaluated at
    times between t0 and t1 (a velocity field may be undefined beyond [0, 1]); the result vs expm((t1 - t0) A) x0."""
    seen = []
    sol = dopri5(lambda x, t: (seen.append(t), linear(x, t))[1], X0, t0, t1)
    assert min(t0, t1) <= min(seen) and max(seen) <= max(t0, t1)
    torch.testing.assert_close(sol.x, exact(X0, t1 - t0), rtol=0, atol=1e-9)


def test_adaptive_times():
    """times: float64 on the CPU, strictly increasing from exactly t0 to exactly t1; a given first step that is
    accepted is the first step taken."""
    sol = dopri5(linear, X0, 0.1, 1.7, rtol=1e-4, atol=1e-4, first_step=0.01)
    assert sol.times.dtype == torch.float64 and sol.times.device.type == "cpu"
    assert float(sol.times[0]) == 0.1 and float(sol.times[-1]) == 1.7
    assert bool((sol.times.diff() > 0).all())
    assert float(sol.times[1]) == pytest.approx(0.11, abs=1e-15)
    assert sol.trajectory is None


def test_adaptive_first_step_beyond_the_interval():
    """A constant velocity is integrated exactly in one step; a first step of 5 is cut to the interval [0, 1]:
    x0 + c, times [0, 1], nfe 1 + 6, nothing rejected."""
    c = torch.tensor([[0.5, -2.0]], dtype=torch.float64)
    sol = dopri5(lambda x, t: c.expand_as(x), X0, first_step=5.0)
    torch.testing.assert_close(sol.x, X0 + c, rtol=1e-15, atol=1e-15)
    assert sol.times.tolist() == [0.0, 1.0] and sol.nfe == 7 and sol.rejected_steps == 0


def test_adaptive_backwards_inverts_forwards():
    """Integrating Van der Pol 1 -> 0 after 0 -> 1 returns x0 (rtol = atol = 1e-9; within 1e-6, as the backward flow
    expands what the forward flow contracted); on dx/dt = A x the backward solve alone matches expm(-A) applied to
    its start, and its times decrease from 1 to 0."""
    fwd = dopri5(van_der_pol, VDP_X0, 0.0, 1.0, rtol=1e-9, atol=1e-9).x
    back = dopri5(van_der_pol, fwd, 1.0, 0.0, rtol=1e-9, atol=1e-9).x
    torch.testing.assert_close(back, VDP_X0, rtol=0, atol=1e-6)
    sol = dopri5(linear, X0, 1.0, 0.0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(sol.x, exact(X0, -1.0), rtol=0, atol=1e-7)
    assert float(sol.times[0]) == 1.0 and float(sol.times[-1]) == 0.0 and bool((sol.times.diff() < 0).all())


def test_adaptive_any_shape():
    """Images of shape (batch, 1, 8, 8) under dx/dt = cos(t) w x (w per pixel) vs the closed form
    x0 exp(w sin t); the same data flattened to (batch, 64) takes the same steps (one error norm over all entries)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(1, 8, 8, generator=g, dtype=torch.float64)
    sol = dopri5(lambda x, t: math.cos(t) * w * x, x0, rtol=1e-7, atol=1e-9)
    assert sol.x.shape == x0.shape
    torch.testing.assert_close(sol.x, x0 * torch.exp(w * math.sin(1.0)), rtol=1e-5, atol=1e-7)
    flat = dopri5(lambda x, t: math.cos(t) * w.reshape(1, 64) * x, x0.reshape(3, 64), rtol=1e-7, atol=1e-9)
    assert flat.times.tolist() == pytest.approx(sol.times.tolist(), rel=1e-12)
    torch.testing.assert_close(flat.x.reshape(x0.shape), sol.x)


def test_adaptive_float32():
    """float32 data at rtol = atol = 1e-5 vs expm(A) x0 in float64: the result stays float32, error < 1e-4."""
    sol = dopri5(lambda x, t: x @ A.T.float(), X0.float(), rtol=1e-5, atol=1e-5)
    assert sol.x.dtype == torch.float32
    torch.testing.assert_close(sol.x.double(), exact(X0, 1.0), rtol=0, atol=1e-4)


def test_adaptive_gradients_flow():
    """Gradients through odeint_adaptive vs d x(1) / d x0 = expm(A) (rtol = atol = 1e-9)."""
    x0 = X0.clone().requires_grad_(True)
    x1 = dopri5(linear, x0, rtol=1e-9, atol=1e-9).x
    (g,) = torch.autograd.grad(x1[:, 0].sum(), x0)
    torch.testing.assert_close(g, torch.linalg.matrix_exp(A)[0].expand_as(g), rtol=0, atol=1e-7)


def test_adaptive_max_steps_exceeded():
    """A tolerance that needs more than max_steps steps raises RuntimeError naming max_steps."""
    with pytest.raises(RuntimeError, match=r"max_steps=3 steps \(3 accepted, 0 rejected\)"):
        dopri5(linear, X0, rtol=1e-10, atol=1e-10, first_step=1e-3, max_steps=3)


def test_adaptive_nonfinite_velocity():
    """A velocity that turns NaN after t = 0.5 makes every step there fail: RuntimeError instead of a NaN result
    (each attempt shrinks the step until it reaches the rounding level of t)."""
    def u(x, t):
        return x * float("nan") if t > 0.5 else -x

    with pytest.raises(RuntimeError, match="not finite"):
        dopri5(u, X0)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(rtol=0.0), ValueError, "rtol must be a positive finite number, got 0.0"),
    (dict(rtol=-1e-3), ValueError, "rtol must be a positive finite number"),
    (dict(rtol=float("nan")), ValueError, "rtol must be a positive finite number, got nan"),
    (dict(atol=0.0), ValueError, "atol must be a positive finite number"),
    (dict(atol=-1e-6), ValueError, "atol must be a positive finite number"),
    (dict(atol=float("nan")), ValueError, "atol must be a positive finite number"),
    (dict(t0=0.5, t1=0.5), ValueError, "times must be strictly increasing or strictly decreasing"),
    (dict(t1=float("inf")), ValueError, "times must be finite"),
    (dict(first_step=0.0), ValueError, "first_step must be a positive finite number"),
    (dict(first_step=-0.1), ValueError, "first_step must be a positive finite number"),
    (dict(max_steps=0), ValueError, "max_steps"),
    (dict(rtol="1e-3"), TypeError, "rtol must be a real number, got str"),
    (dict(x0=[[1.0, 0.0]]), TypeError, "x0 must be a tensor"),
    (dict(x0=torch.ones(2, 2, dtype=torch.long)), TypeError, "x0 must be a floating tensor"),
])
def test_adaptive_bad_input(kwargs, exc, match):
    """Tolerances <= 0 or NaN, t0 == t1, a first step <= 0, max_steps < 1, a non-tensor x0: errors naming them."""
    x0 = kwargs.pop("x0", X0)
    with pytest.raises(exc, match=match):
        dopri5(linear, x0, **kwargs)


def test_sample_dopri5_equals_odeint_adaptive():
    """sample(model, x0, method="dopri5") equals odeint_adaptive of model(x, t) on [0, 1] under no_grad, with the
    given tolerances, in eval mode, leaving the training flag as it found it."""
    torch.manual_seed(0)
    model = MLP(2, hidden=16, depth=2).double().train()
    x0 = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        ref = dopri5(model, x0, 0.0, 1.0, rtol=1e-7, atol=1e-8)
    model.train()
    got = sample(model, x0, method="dopri5", rtol=1e-7, atol=1e-8, return_trajectory=True)
    assert model.training
    torch.testing.assert_close(got.x, ref.x, rtol=0, atol=0)
    assert torch.equal(got.times, ref.times) and got.nfe == ref.nfe and got.trajectory.shape[0] == len(ref.times)
    recorder = ModeRecorder()
    sample(recorder, torch.randn(5, 2), method="dopri5")
    assert {s[:2] for s in recorder.seen} == {(False, False)}


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="dopri5", steps=10), "method='dopri5' chooses its own steps"),
    (dict(method="dopri5", times=[0.0, 0.5, 1.0]), r"times of method='dopri5' must be \(t0, t1\)"),
    (dict(method="rk4", rtol=1e-3), "rtol, atol and first_step control method='dopri5', not method='rk4'"),
    (dict(method="rk45"), r"method must be one of \['euler', 'heun', 'midpoint', 'rk4', 'dopri5'\], got 'rk45'"),
])
def test_sample_bad_method_arguments(kwargs, match):
    """A fixed grid with dopri5, tolerances with a fixed-step method, an unknown method: ValueError."""
    with pytest.raises(ValueError, match=match):
        sample(linear, X0, **kwargs)


def test_exported_names():
    """The solver names are re-exported at the package top level; the adaptive method has no second entry point."""
    assert not hasattr(fmlearn, "odeint_adaptive") and fmlearn.odeint is fmlearn.solvers.odeint
    assert fmlearn.time_grid is time_grid and fmlearn.sample is sample


def test_dopri5_error_norm_is_the_largest_leaf_rms():
    """A tuple state's error norm is the mixed norm, max over leaves of each leaf's RMS: a (1,) leaf beside
    10,000 entries counts in full. dx/dt = 0 on the big leaf, da/dt = cos(50 t) on the small one: a(1) =
    sin(50)/50 to 7e-8 at rtol = atol = 1e-6 (measured; the pooled RMS of earlier versions, which divides the
    small leaf's error by 100, gave 3.9e-5 in a third of the evaluations)."""
    assert float(adaptive._rms((torch.zeros(1000), torch.full((1,), 2.0)))) == 2.0
    assert float(adaptive._rms((torch.ones(4, dtype=torch.float64), torch.zeros(3)))) == 1.0

    def field(state, t):
        return torch.zeros_like(state[0]), torch.full_like(state[1], math.cos(50 * t))

    sol = odeint(field, (torch.zeros(10_000, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)),
                 method="dopri5", rtol=1e-6, atol=1e-6)
    assert abs(float(sol.x[1]) - math.sin(50.0) / 50) < 1e-6
