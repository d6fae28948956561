"""fmlearn.generators: generators on test functions, Bregman losses, the CondOT jump process, the jump step.

References computed another way: finite differences in t, quadrature of the forward equation on a grid,
Gauss-Hermite quadrature for the Gaussian path's moments, scipy's KS test and matrix exponential,
autograd through a generic Bregman divergence.
"""

import math

import numpy as np
import pytest
import torch
from scipy import linalg, stats

import fmlearn as fm
from fmlearn import generators as G

D64 = torch.float64


def _hermite(t, z, n=60):
    """Nodes and weights of E over x ~ N(t z, (1 - t)^2) (probabilists' Gauss-Hermite, exact for polynomials)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    x = torch.tensor(t * z + (1 - t) * nodes, dtype=D64)
    return x, torch.tensor(weights / weights.sum(), dtype=D64)


# --- the conditional jump process of the CondOT path ----------------------------------------------------------

@pytest.mark.parametrize("t", [0.0, 0.3, 0.7, 0.95])
def test_density_rate_matches_a_finite_difference(t):
    x = torch.linspace(-4, 4, 41, dtype=D64)
    z = torch.full_like(x, 0.8)
    h = 1e-6
    fd = (G.condot_density(x, z, t + h) - G.condot_density(x, z, t - h)) / (2 * h) if t > 0 else \
        (G.condot_density(x, z, t + h) - G.condot_density(x, z, t)) / h
    exact = G.condot_density_rate(x, z, t)
    tol = 1e-5 if t > 0 else 1e-4
    assert float((fd - exact).abs().max() / exact.abs().max()) < tol


@pytest.mark.parametrize("z, t", [(0.0, 0.2), (1.3, 0.5), (-2.5, 0.9)])
def test_jumps_satisfy_the_forward_equation_on_a_grid(z, t):
    """-p lambda + J int p lambda = d/dt p, pointwise on a fine grid (the kernel's density from its bin masses)."""
    edges = torch.linspace(t * z - 12 * (1 - t), t * z + 12 * (1 - t), 40_001, dtype=D64)
    mid, width = (edges[1:] + edges[:-1]) / 2, edges[1] - edges[0]
    zz = torch.full_like(mid, z)
    p, dp = G.condot_density(mid, zz, t), G.condot_density_rate(mid, zz, t)
    lam = G.condot_intensity(mid, zz, t)
    mass = G.condot_kernel_mass(edges, torch.tensor(z, dtype=D64), t)
    assert float(mass.sum()) == pytest.approx(1.0, abs=1e-9)
    outflow = float((p * lam).sum() * width)
    assert outflow == pytest.approx(float(dp.clamp_min(0).sum() * width), rel=1e-6)  # mass conserved
    rhs = -p * lam + mass / width * outflow
    assert float((rhs - dp).abs().max() / dp.abs().max()) < 1e-3


def test_kernel_sampler_draws_the_kernel():
    z, t = torch.full((50_000,), 0.6, dtype=D64), 0.4
    y = G.condot_kernel_sample(z, t, torch.Generator().manual_seed(0))
    edges = torch.linspace(-3, 3, 3001, dtype=D64)
    cdf = torch.cumsum(G.condot_kernel_mass(edges, torch.tensor(0.6, dtype=D64), t), 0)
    ks = stats.kstest(y.numpy(), lambda v: np.interp(v, edges[1:].numpy(), cdf.numpy())).statistic
    assert ks < 0.01


@pytest.mark.parametrize("t_end", [0.5, 0.99])
def test_conditional_jump_process_reproduces_the_gaussian_path(t_end):
    """20,000 particles from N(0, 1), jumps only, 200 steps uniform in log(1 - t): N(t z, (1 - t)^2) at t_end."""
    n, z = 20_000, 1.5
    zz = torch.full((n, 1), z, dtype=D64)
    x0 = torch.randn(n, 1, dtype=D64, generator=torch.Generator().manual_seed(0))
    times = 1 - torch.exp(torch.linspace(0, math.log(1 - t_end), 201, dtype=D64))
    step = G.jump_step(G.ConditionalJumps(zz), generator=torch.Generator().manual_seed(1))
    x = fm.simulate(step, x0, times=times).x[:, 0]
    mean, std = t_end * z, 1 - t_end
    assert float(x.mean()) == pytest.approx(mean, rel=0.03, abs=0.03 * std)
    assert float(x.std()) == pytest.approx(std, rel=0.03)
    assert stats.kstest(((x - mean) / std).numpy(), "norm").statistic < 0.02


def test_without_jumps_the_marginal_stays_the_source():
    """The control: a step that never jumps leaves N(0, 1), which fails the KS check at t = 0.5 (the test above can fail)."""
    x = torch.randn(20_000, dtype=D64, generator=torch.Generator().manual_seed(0))
    assert stats.kstest(((x - 0.75) / 0.5).numpy(), "norm").statistic > 0.1


# --- generators applied to test functions: d/dt E[f] = E[L f] -------------------------------------------------

def _moments_rate(t, z):
    """d/dt E[X] and d/dt E[X^2] for X ~ N(t z, (1 - t)^2)."""
    return z, 2 * t * z * z - 2 * (1 - t)


@pytest.mark.parametrize("t", [0.2, 0.6])
def test_flow_and_diffusion_generators_satisfy_the_forward_equation(t):
    z, g = 1.1, 0.7
    x, w = _hermite(t, z)
    x = x[:, None]
    u = lambda y, s: (z - y) / (1 - s)                                    # noqa: E731  conditional velocity
    score = lambda y: -(y - s_mean) / s_std ** 2                           # noqa: E731
    s_mean, s_std = t * z, 1 - t
    drift = lambda y, s: u(y, s) + 0.5 * g * g * score(y)                  # noqa: E731  same marginals
    for f, want in ((lambda y: y[:, 0], _moments_rate(t, z)[0]), (lambda y: y[:, 0] ** 2, _moments_rate(t, z)[1])):
        flow = float((G.FlowGenerator(u)(f, x, t) * w).sum())
        diff = float((G.DiffusionGenerator(drift, g)(f, x, t) * w).sum())
        assert flow == pytest.approx(want, abs=1e-9)
        assert diff == pytest.approx(want, abs=1e-9)


def test_diffusion_generator_has_the_laplacian_term():
    """L f for f = |x|^2 with zero drift is g^2 d (the Laplacian 2d times g^2 / 2)."""
    x = torch.randn(5, 3, dtype=D64)
    out = G.DiffusionGenerator(lambda y, s: torch.zeros_like(y), 0.5)(lambda y: (y ** 2).sum(1), x, 0.3)
    assert torch.allclose(out, torch.full((5,), 0.25 * 3, dtype=D64))


def test_jump_generator_satisfies_the_forward_equation():
    t, z = 0.4, 0.9
    x, w = _hermite(t, z, n=40)
    proc = G.ConditionalJumps(torch.full((x.numel(), 1), z, dtype=D64))
    L = G.JumpGenerator(proc, samples=400, generator=torch.Generator().manual_seed(0))
    for f, want in ((lambda y: y[:, 0], _moments_rate(t, z)[0]), (lambda y: y[:, 0] ** 2, _moments_rate(t, z)[1])):
        got = float((L(f, x[:, None], t) * w).sum())
        assert got == pytest.approx(want, abs=0.03 * (1 + abs(want)))


def test_ctmc_generator_matches_the_matrix_exponential():
    q = torch.tensor([[-1.0, 0.7, 0.3], [0.2, -0.5, 0.3], [0.4, 0.4, -0.8]], dtype=D64)
    p0 = torch.tensor([0.5, 0.3, 0.2], dtype=D64)
    f = torch.tensor([1.0, -2.0, 4.0], dtype=D64)
    t, h = 0.7, 1e-6
    pt = lambda s: p0 @ torch.from_numpy(linalg.expm(s * q.numpy()))     # noqa: E731
    want = float((pt(t + h) @ f - pt(t - h) @ f) / (2 * h))
    states = torch.arange(3)
    got = float((pt(t) * G.CTMCGenerator(lambda x, s: q[x])(f, states, t)).sum())
    assert got == pytest.approx(want, rel=1e-6)


# --- Bregman divergences ----------------------------------------------------------------------------------------

def test_bregman_closed_forms_match_the_generic_definition():
    a, b = torch.rand(6, 4, dtype=D64) + 0.1, torch.rand(6, 4, dtype=D64) + 0.1
    assert torch.allclose(G.squared_norm(a, b), G.bregman(lambda v: v * v, a, b))
    assert torch.allclose(G.generalized_kl(a, b), G.bregman(lambda v: v * torch.log(v), a, b))
    assert torch.allclose(G.generalized_kl(a, log_b=b.log()), G.generalized_kl(a, b))
    assert bool((G.generalized_kl(a, b) > 0).all()) and float(G.generalized_kl(a, a).abs().max()) < 1e-12


@pytest.mark.parametrize("div", [G.squared_norm, G.generalized_kl])
def test_conditional_loss_has_the_marginal_losss_gradient(div):
    """E_z D(a(z), b) and D(E_z a(z), b) differ by a constant in b: equal gradients (D is affine in a)."""
    a = torch.rand(50, 5, dtype=D64) + 0.05                         # a(z) for 50 values of z
    b = (torch.rand(5, dtype=D64) + 0.1).requires_grad_(True)
    (g_cond,) = torch.autograd.grad(div(a, b.expand(50, 5)).mean(), b)
    (g_marg,) = torch.autograd.grad(div(a.mean(0, keepdim=True), b[None]).sum(), b)
    assert torch.allclose(g_cond, g_marg)


def test_generalized_kl_refuses_negative_rates():
    with pytest.raises(ValueError, match="non-negative"):
        G.generalized_kl(torch.tensor([0.5, -0.1]), torch.tensor([0.5, 0.5]))


# --- the learned jump model, the jump step and the superposition ------------------------------------------------

def test_jump_model_learns_a_two_point_target_through_the_one_loop():
    """Jumps alone carry N(0, 1) to a two-mode mixture: both modes, in equal shares (a uniform or one-mode
    answer fails), trained by fm.train like every other objective."""
    mix = fm.GaussianMixture(torch.tensor([[-2.0], [2.0]]), stds=0.25)
    model = G.JumpModel(1, torch.linspace(-4, 4, 81), hidden=64, depth=2)
    fm.train(model, G.JumpObjective(mix), steps=600, batch_size=256, lr=3e-3, seed=0, progress=False)
    x0 = torch.randn(4000, 1, generator=torch.Generator().manual_seed(1))
    x = fm.simulate(G.jump_step(model, generator=torch.Generator().manual_seed(2)), x0,
                    times=fm.time_grid(50, 0.0, 0.999)).x[:, 0]
    near = (x.abs() - 2).abs() < 0.75
    assert float(near.float().mean()) > 0.9
    assert float((x[near] > 0).float().mean()) == pytest.approx(0.5, abs=0.06)


def test_superposition_counts_both_evaluations_and_checks_its_weight():
    vel = fm.MLP(1, hidden=8, depth=1)
    model = G.JumpModel(1, torch.linspace(-3, 3, 7), hidden=8, depth=1)
    step = G.superposition(vel, model, 0.5, generator=torch.Generator().manual_seed(0))
    sol = fm.simulate(step, torch.randn(10, 1), times=fm.time_grid(4, 0.0, 0.99))
    assert sol.nfe == 8 and sol.x.shape == (10, 1)
    for a in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="a must be a number in"):
            G.superposition(vel, model, a)


def test_superposition_with_a_equal_one_is_the_flow():
    vel = fm.MLP(2, hidden=8, depth=1)
    model = G.JumpModel(2, torch.linspace(-3, 3, 7), hidden=8, depth=1)
    x0 = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    sup = fm.simulate(G.superposition(vel, model, 1.0), x0, steps=5).x
    flow = fm.odeint(lambda x, t: vel(x, t), x0, steps=5).x
    assert torch.allclose(sup, flow.detach(), atol=1e-6)


def test_jump_step_refuses_a_negative_intensity_and_a_kernel_that_does_not_sum_to_one():
    x = torch.zeros(4, 1)
    neg = lambda y, t: G.JumpRates(-torch.ones_like(y), sampler=lambda g: y)            # noqa: E731
    with pytest.raises(ValueError, match="intensity must be finite and >= 0"):
        fm.simulate(G.jump_step(neg), x, steps=2)
    edges = torch.tensor([-1.0, 0.0, 1.0])
    bad = lambda y, t: G.JumpRates(torch.ones_like(y), bins=(edges, torch.full((*y.shape, 2), 0.4)))  # noqa: E731
    with pytest.raises(ValueError, match="kernel"):
        fm.simulate(G.jump_step(bad), x, steps=2)


@pytest.mark.parametrize("t", [1.0, 1.2, -0.1])
def test_conditional_rates_refuse_t_outside_0_1(t):
    with pytest.raises(ValueError, match="t must lie in"):
        G.condot_intensity(torch.zeros(3), torch.ones(3), t)


def test_conditional_rates_are_finite_up_to_one_minus_1e_6():
    x = torch.linspace(-5, 5, 101, dtype=D64)
    z = torch.full_like(x, 1.0)
    for f in (G.condot_density_rate, G.condot_intensity):
        assert bool(torch.isfinite(f(x, z, 1 - 1e-6)).all())
    assert bool(torch.isfinite(G.condot_kernel_mass(torch.linspace(-3, 3, 11), z, 1 - 1e-6)).all())


def test_flow_step_and_simulate_refuse_bad_input():
    with pytest.raises(ValueError, match="weight must be a number in"):
        fm.flow_step(lambda x, t: x, weight=2.0)
    with pytest.raises(TypeError, match="step must be a fmlearn Step"):
        fm.simulate(lambda x, t, s: x, torch.zeros(2, 1), steps=3)


# --- declared contracts (issue 21) ------------------------------------------------------------------------

def test_jump_step_checks_every_step_not_only_the_first():
    """A kernel that stops summing to 1 (or an intensity that turns NaN) after the first step used to pass."""
    x = torch.zeros(4, 1)
    edges = torch.tensor([-1.0, 0.0, 1.0])

    def late_kernel(y, t):
        w = 0.5 if t < 0.5 else 0.3
        return G.JumpRates(torch.ones_like(y), bins=(edges, torch.full((*y.shape, 2), w)))

    with pytest.raises(ValueError, match=r"kernel must sum to 1.*at t = 0\.5"):
        fm.simulate(G.jump_step(late_kernel), x, steps=4)

    def late_nan(y, t):
        lam = torch.ones_like(y) if t < 0.5 else torch.full_like(y, float("nan"))
        return G.JumpRates(lam, sampler=lambda g: y)

    with pytest.raises(ValueError, match=r"intensity must be finite.*at t = 0\.5"):
        fm.simulate(G.jump_step(late_nan), x, steps=4)


def test_flow_generator_refuses_a_broadcast_velocity():
    """A (batch, 1) velocity for (batch, 2) points used to broadcast into u . grad f."""
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match=r"returned shape \(5, 1\).*x's shape \(5, 2\)"):
        G.FlowGenerator(lambda y, t: y[:, :1])(lambda y: y.sum(1), x, 0.5)


def test_ctmc_generator_refuses_rows_of_no_generator():
    f = torch.tensor([0.0, 1.0, 2.0])
    states = torch.tensor([0, 1, 2])
    q = torch.tensor([[-1.0, 1.0, 0.0], [0.5, -1.0, 0.5], [0.0, 2.0, -2.0]])
    torch.testing.assert_close(G.CTMCGenerator(lambda x, t: q[x])(f, states, 0.5), q @ f)
    for bad in (q + 0.1, q * torch.tensor([[1.0], [1.0], [-1.0]])):   # rows summing to 0.3; negative rates
        with pytest.raises(ValueError, match="rows of a generator matrix"):
            G.CTMCGenerator(lambda x, t, b=bad: b[x])(f, states, 0.5)
    with pytest.raises(ValueError, match="x must hold states in 0..2"):
        G.CTMCGenerator(lambda x, t: q[x.clamp(0, 2)])(f, torch.tensor([0, 3]), 0.5)
    with pytest.raises(TypeError, match="x must be integer states"):
        G.CTMCGenerator(lambda x, t: q[x])(f, states.float(), 0.5)


def test_jump_objective_draws_x_from_the_condot_path():
    """x ~ N(t z, (1 - t)^2): the path's draw, with the same noise as drawn by hand."""
    class Fixed:
        def sample(self, n, generator=None, device=None):
            return torch.full((n, 1), 2.0)

    obj = G.JumpObjective(Fixed())
    obj.bind(G.JumpModel(1, torch.linspace(-4, 4, 9), hidden=8, depth=1))
    x, t, target = obj.draw(6, torch.Generator().manual_seed(0), "cpu")
    g = torch.Generator().manual_seed(0)
    torch.rand(6, generator=g)
    noise = torch.randn(6, 1, generator=g)
    torch.testing.assert_close(x, t[:, None] * 2.0 + (1 - t[:, None]) * noise)
    torch.testing.assert_close(target.sum(-1), G.condot_intensity(x, torch.full_like(x, 2.0), t[:, None]) *
                               (1 - t[:, None]) * G.condot_kernel_mass(torch.linspace(-4, 4, 9),
                                                                       torch.full_like(x, 2.0),
                                                                       t[:, None]).sum(-1))
