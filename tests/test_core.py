"""Proofs that Part II plugs into the one time-stepping core (issue 11, item 7): a projecting step on the
sphere, a jump step on a CTMC and a tuple state in the likelihood, each against a reference computed
another way."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import fmlearn as fm
from fmlearn.discrete import Categorical
from fmlearn.manifolds import Sphere

OMEGA = torch.tensor([[0.0, -1.0, 0.5], [1.0, 0.0, -2.0], [-0.5, 2.0, 0.0]], dtype=torch.float64)  # skew


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_rotation_on_the_sphere(method):
    """dx/dt = Omega x (Omega skew) on S^2 with the sphere's step: |x| = 1 to 1e-6 at each of 1,000 steps, and
    the end point is the closed-form rotation expm(Omega) x0 (to 1e-6 with rk4; Euler's O(h) error, 1e-2)."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    x0 = x0 / x0.norm(dim=1, keepdim=True)
    sol = fm.odeint(lambda x, t: x @ OMEGA.T, x0, steps=1000, method=method, space=Sphere(), return_trajectory=True)
    assert float((sol.trajectory.norm(dim=-1) - 1).abs().max()) < 1e-6
    exact = x0 @ torch.linalg.matrix_exp(OMEGA).T
    assert float((sol.x - exact).abs().max()) < (1e-6 if method == "rk4" else 1e-2)


def test_rotation_leaves_the_sphere_without_its_step():
    """The control: the same Euler solve in R^3 drifts off the sphere (|x|^2 grows by (1 + h^2 |Omega x|^2) a step)."""
    x0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    x1 = fm.odeint(lambda x, t: x @ OMEGA.T, x0, steps=1000, method="euler").x
    assert float(x1.norm()) - 1 > 1e-4


def test_sphere_maps():
    """exp and log invert each other, dist is |log|, proj removes the normal part."""
    sphere, gen = Sphere(), torch.Generator().manual_seed(1)
    x, y = (torch.nn.functional.normalize(torch.randn(16, 3, generator=gen, dtype=torch.float64), dim=1)
            for _ in "xy")
    v = sphere.log(x, y)
    torch.testing.assert_close(sphere.exp(x, v), y)
    torch.testing.assert_close(sphere.dist(x, y), v.norm(dim=1))
    assert float((x * sphere.proj(x, torch.randn(16, 3, generator=gen, dtype=torch.float64))).sum(1).abs().max()) < 1e-12


Q = torch.tensor([[-1.0, 0.7, 0.3], [0.4, -0.9, 0.5], [0.2, 1.3, -1.5]], dtype=torch.float64)  # rows sum to 0


def test_ctmc_jumps_reproduce_exp_tq():
    """A 3-state chain driven by the core (the rates Q[x] as the field, Euler increments, the token space's jump):
    the law at t = 1 of chains started in each state is row x0 of scipy's expm(Q), within 4.5 standard errors
    plus the Euler bias |(I + hQ)^n - expm(Q)| (computed, below 1e-3)."""
    n, steps = 20_000, 500
    space = Categorical(3, generator=torch.Generator().manual_seed(2))
    exact = scipy.linalg.expm(Q.numpy())
    bias = np.abs(np.linalg.matrix_power(np.eye(3) + Q.numpy() / steps, steps) - exact).max()
    assert bias < 1e-3
    for start in range(3):
        x0 = torch.full((n,), start, dtype=torch.long)
        sol = fm.odeint(lambda x, t: Q[x], x0, steps=steps, method="euler", space=space)
        assert sol.x.dtype == torch.long and sol.nfe == steps
        freq = torch.bincount(sol.x, minlength=3).double().numpy() / n
        se = np.sqrt(exact[start] * (1 - exact[start]) / n)
        assert np.all(np.abs(freq - exact[start]) < 4.5 * se + bias), (start, freq, exact[start])


def test_token_space_refuses_floats_and_bad_rates():
    space = Categorical(3)
    with pytest.raises(TypeError, match="integer tokens"):
        fm.odeint(lambda x, t: torch.zeros(*x.shape, 3), torch.zeros(4), steps=2, space=space)
    with pytest.raises(ValueError, match=r"\(\*x.shape, num_states\)"):
        fm.odeint(lambda x, t: torch.zeros(*x.shape, 2), torch.zeros(4, dtype=torch.long), steps=2, space=space)


@pytest.fixture(scope="module")
def trained_mlp():
    """A Part I model: an MLP trained for 300 steps of CFM on the 11-mode mixture (seeded)."""
    fm.seed_everything(0)
    model = fm.MLP(2, hidden=64, depth=3)
    fm.train(model, fm.CFMObjective(fm.AffineGaussianPath("condot"), fm.GaussianMixture.symmetric_2d()),
             steps=300, batch_size=256, seed=0, progress=False)
    return model


def _flat_rk4_log_likelihood(model, x, steps):
    """The likelihood as it was computed before the tuple state: one flat state z = [x, a] of shape (batch, D + 1),
    the divergence by D autograd passes, classic RK4 written out on the grid 1 -> 0."""
    d = x.shape[1]

    def field(z, t):
        xs = z[:, :d].detach().requires_grad_(True)
        with torch.enable_grad():
            v = model(xs, torch.full((z.shape[0],), t))
            div = sum(torch.autograd.grad(v[:, i].sum(), xs, retain_graph=True)[0][:, i] for i in range(d))
        return torch.cat([v.detach(), div[:, None]], dim=1)

    z, grid = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1), torch.linspace(1, 0, steps + 1).tolist()
    for t, t_next in zip(grid[:-1], grid[1:]):
        h = t_next - t
        k1 = field(z, t)
        k2 = field(z + 0.5 * h * k1, t + 0.5 * h)
        k3 = field(z + 0.5 * h * k2, t + 0.5 * h)
        k4 = field(z + h * k3, t + h)
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return -0.5 * (z[:, :d] ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi) + z[:, d]


def test_tuple_state_likelihood_matches_the_flat_packing(trained_mlp):
    """fm.log_likelihood integrates the tuple (x, log-density); the flat (D + 1) packing, re-implemented above,
    gives the same log p on a trained model to 1e-5."""
    x = fm.GaussianMixture.symmetric_2d().sample(200, generator=torch.Generator().manual_seed(3))
    got = fm.log_likelihood(trained_mlp, x, steps=16, method="rk4")
    with torch.no_grad():
        want = _flat_rk4_log_likelihood(trained_mlp.eval(), x, 16)
    assert float((got - want).abs().max()) < 1e-5


def test_tuple_state_adaptive():
    """dopri5 on a tuple state (x, y) with dx/dt = A x and dy/dt = -y: both parts against their closed forms."""
    a = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    x0, y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    sol = fm.odeint(lambda s, t: (s[0] @ a.T, -s[1]), (x0, y0), method="dopri5", rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(sol.x[0], x0 @ torch.linalg.matrix_exp(a).T, rtol=0, atol=1e-7)
    torch.testing.assert_close(sol.x[1], y0 * math.exp(-1), rtol=0, atol=1e-7)
