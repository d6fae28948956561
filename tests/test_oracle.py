import math

import numpy as np
import pytest
import torch
from scipy import stats

from fmlearn import AffineGaussianPath, GaussianMixture, MixtureOracle, odeint
from fmlearn.schedules import SCHEDULES

NAMES = sorted(SCHEDULES)
MEANS = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -3.0]])
STDS = np.array([[0.5, 1.0], [1.0, 0.7], [0.8, 0.8]])
WEIGHTS = np.array([0.2, 0.5, 0.3])
POINTS = torch.tensor([[0.0, 0.0], [1.5, 0.5], [-1.0, -2.0], [-1.5, 0.3]], dtype=torch.float64)


def make_oracle(name):
    return MixtureOracle(GaussianMixture(MEANS, STDS, WEIGHTS), AffineGaussianPath(name))


@pytest.fixture(scope="module")
def target_draws():
    """200k draws of x1 from the target, sampled by hand in float64 with NumPy (not with fmlearn)."""
    rng = np.random.default_rng(12345)
    n = 200_000
    k = rng.choice(3, size=n, p=WEIGHTS)
    return torch.tensor(MEANS[k] + STDS[k] * rng.standard_normal((n, 2)))


def scipy_marginal_logpdf(x, a, b):
    """log p_t(x) for p_t = sum_k w_k N(a m_k, diag(a^2 s_k^2 + b^2)), with scipy."""
    dens = sum(w * stats.multivariate_normal(mean=a * m, cov=np.diag(a**2 * s**2 + b**2)).pdf(x)
               for m, s, w in zip(MEANS, STDS, WEIGHTS))
    return np.log(dens)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_velocity_vs_monte_carlo_posterior(name, t, target_draws):
    """velocity vs a self-normalised Monte Carlo average of u(x | x1) = d_alpha x1 + d_beta (x - alpha x1) / beta
    over x1 ~ target weighted by N(x; alpha x1, beta^2 I); tolerance 5 MC standard errors (delta method)."""
    oracle = make_oracle(name)
    s = oracle.path.schedule
    tt = torch.tensor(t, dtype=torch.float64)
    a, b, da, db = (float(f(tt)) for f in (s.alpha, s.beta, s.d_alpha, s.d_beta))
    x1 = target_draws
    # weights w_ij = N(x_i; a x1_j, b^2 I) / sum_j (self-normalised), one row per point x_i
    w = torch.softmax(-0.5 * torch.cdist(POINTS, a * x1) ** 2 / b**2, dim=1)
    # u(x_i | x1_j) = c x1_j + (d_beta / b) x_i with c = d_alpha - d_beta a / b: its weighted mean and the
    # delta-method standard error sqrt(sum_j w_ij^2 (u_ij - est_i)^2) = |c| sqrt(sum_j w_ij^2 (x1_j - m_i)^2)
    c = da - db * a / b
    m = w @ x1
    est = c * m + db / b * POINTS
    w2 = w**2
    se = abs(c) * torch.sqrt((w2 @ x1**2 - 2 * m * (w2 @ x1) + m**2 * w2.sum(1, keepdim=True)).clamp(min=0))
    ess = 1 / w2.sum(1)
    assert bool((ess > 500).all()), f"too few effective samples ({ess}) for a meaningful check"
    got = oracle.velocity(POINTS, t)
    assert bool(((got - est).abs() <= 5 * se + 1e-6).all()), (got, est, se)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0.0, 0.3, 0.7, 1.0])
def test_log_prob_vs_scipy_marginal(name, t):
    """oracle.log_prob vs the marginal mixture sum_k w_k N(alpha m_k, alpha^2 s_k^2 + beta^2) built with scipy."""
    oracle = make_oracle(name)
    s = oracle.path.schedule
    tt = torch.tensor(t, dtype=torch.float64)
    a, b = float(s.alpha(tt)), float(s.beta(tt))
    x = np.random.default_rng(0).normal(scale=2.5, size=(60, 2))
    np.testing.assert_allclose(oracle.log_prob(torch.tensor(x), t).numpy(), scipy_marginal_logpdf(x, a, b),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0.0, 0.25, 0.6, 1.0])
def test_score_vs_autograd_and_marginal(name, t):
    """score vs torch.autograd.grad of oracle.log_prob(x, t), and vs oracle.marginal(t).score."""
    oracle = make_oracle(name)
    x = torch.tensor(np.random.default_rng(1).normal(scale=2.5, size=(40, 2)), requires_grad=True)
    (grad,) = torch.autograd.grad(oracle.log_prob(x, t).sum(), x)
    score = oracle.score(x.detach(), t)
    torch.testing.assert_close(score, grad, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(score, oracle.marginal(t).score(x.detach()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0.0, 0.4, 1.0])
def test_marginal_log_prob_matches(name, t):
    """marginal(t).log_prob (a GaussianMixture) vs oracle.log_prob(x, t)."""
    oracle = make_oracle(name)
    x = torch.tensor(np.random.default_rng(2).normal(scale=2.5, size=(40, 2)))
    torch.testing.assert_close(oracle.marginal(t).log_prob(x), oracle.log_prob(x, t), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["condot", "cosine", "sqrt"])
def test_marginal_at_zero_is_standard_normal(name):
    """marginal(0).log_prob and oracle.log_prob(x, 0) equal the standard normal log density (scipy)."""
    oracle = make_oracle(name)
    x = np.random.default_rng(3).normal(scale=2.0, size=(50, 2))
    want = stats.norm.logpdf(x).sum(1)
    np.testing.assert_allclose(oracle.log_prob(torch.tensor(x), 0.0).numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(oracle.marginal(0.0).log_prob(torch.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_marginal_at_one_is_target(name):
    """marginal(1).log_prob and oracle.log_prob(x, 1) equal the target's log_prob."""
    oracle = make_oracle(name)
    x = torch.tensor(np.random.default_rng(4).normal(scale=2.5, size=(50, 2)))
    want = oracle.target.log_prob(x)
    torch.testing.assert_close(oracle.log_prob(x, 1.0), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(oracle.marginal(1.0).log_prob(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_ends(name, t, dtype):
    """velocity, score and log_prob are finite at t = 0 and t = 1 for every schedule, even far from the modes."""
    oracle = make_oracle(name)
    x = torch.tensor([[0.0, 0.0], [30.0, -40.0], [-2.0, 0.0]], dtype=dtype)
    for f in (oracle.velocity, oracle.score, oracle.log_prob):
        assert torch.isfinite(f(x, t)).all(), f.__name__


def test_condot_velocity_at_one_is_d_alpha_x():
    """CondOT at t = 1: x_1 = x1 and E[x0 | x1] = 0, so u_1(x) = d_alpha(1) x + d_beta(1) * 0 = x."""
    oracle = make_oracle("condot")
    x = torch.tensor(np.random.default_rng(5).normal(scale=3.0, size=(30, 2)))
    d_alpha1 = oracle.path.schedule.d_alpha(torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(oracle.velocity(x, 1.0), d_alpha1 * x)


@pytest.mark.parametrize("name", ["condot", "cosine", "sqrt"])
def test_velocity_at_zero(name):
    """At t = 0 (alpha_0 = 0): x_0 = x0 and x1 is independent of it, so u_0(x) = d_alpha(0) E[x1] + d_beta(0) x."""
    oracle = make_oracle(name)
    s = oracle.path.schedule
    t0 = torch.tensor(0.0, dtype=torch.float64)
    x = torch.tensor(np.random.default_rng(6).normal(scale=2.0, size=(30, 2)))
    want = s.d_alpha(t0) * torch.tensor(WEIGHTS @ MEANS) + s.d_beta(t0) * x
    torch.testing.assert_close(oracle.velocity(x, 0.0), want, rtol=1e-5, atol=1e-5)


def test_call_is_velocity_and_refuses_conditioning():
    """oracle(x, t) equals oracle.velocity(x, t); conditioning kwargs raise TypeError naming them."""
    oracle = make_oracle("condot")
    x = POINTS
    torch.testing.assert_close(oracle(x, 0.5), oracle.velocity(x, 0.5))
    with pytest.raises(TypeError, match="label"):
        oracle(x, 0.5, label=torch.zeros(4))


def test_per_sample_time():
    """A (batch,) tensor of times gives row i the value at t_i (vs one call per row with a float)."""
    oracle = make_oracle("cosine")
    t = torch.tensor([0.0, 0.3, 0.9, 1.0], dtype=torch.float64)
    rows = torch.cat([oracle.velocity(POINTS[i:i + 1], float(t[i])) for i in range(4)])
    torch.testing.assert_close(oracle.velocity(POINTS, t), rows)


def test_flow_transports_source_to_target():
    """Integrating the oracle's velocity (rk4) carries N(0, I) to the target: sample mean and covariance
    vs the exact mixture moments within 5 standard errors."""
    oracle = make_oracle("condot")
    n = 3000
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x = odeint(oracle, x0, steps=25, method="rk4").x.numpy()
    mu = WEIGHTS @ MEANS
    cov = sum(w * (np.diag(s**2) + np.outer(m - mu, m - mu)) for m, s, w in zip(MEANS, STDS, WEIGHTS))
    assert np.all(np.abs(x.mean(0) - mu) < 5 * np.sqrt(np.diag(cov) / n))
    c = x - mu
    prods = c[:, :, None] * c[:, None, :]
    assert np.all(np.abs(prods.mean(0) - cov) < 5 * prods.std(0) / math.sqrt(n))


@pytest.mark.parametrize("t", [-0.1, 1.5, "0.5", True])
def test_marginal_bad_time(t):
    """marginal(t) with t outside [0, 1] or not a float raises ValueError naming t."""
    with pytest.raises(ValueError, match="t must be"):
        make_oracle("condot").marginal(t)


def test_bad_target_or_path():
    """A non-mixture target or a non-path path raises TypeError naming the argument."""
    path = AffineGaussianPath()
    with pytest.raises(TypeError, match="target"):
        MixtureOracle("mixture", path)
    with pytest.raises(TypeError, match="path"):
        MixtureOracle(GaussianMixture(MEANS), "condot")


def test_velocity_bad_input():
    """Points of the wrong shape or times outside [0, 1] raise ValueError naming x / t."""
    oracle = make_oracle("condot")
    with pytest.raises(ValueError, match="x must have shape"):
        oracle.velocity(torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        oracle.velocity(POINTS, 1.01)
