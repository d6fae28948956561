import math

import numpy as np
import pytest
import torch
from scipy import stats

from fmlearn import Gaussian, GaussianMixture

MEANS = [[-2.0, 0.0], [2.0, 1.0], [0.0, -3.0]]
DIAG_STDS = [[0.5, 1.0], [1.0, 0.7], [0.8, 0.8]]
WEIGHTS = [0.2, 0.5, 0.3]


@pytest.fixture
def mixture():
    return GaussianMixture(MEANS, DIAG_STDS, WEIGHTS)


def scipy_mixture_logpdf(x, means, stds, weights):
    """log sum_k w_k N(x; mu_k, diag(s_k^2)) with scipy, component by component."""
    dens = sum(w * stats.multivariate_normal(mean=m, cov=np.diag(np.square(s))).pdf(x)
               for m, s, w in zip(means, stds, weights))
    return np.log(dens)


def mixture_moments(means, stds, weights):
    """Exact mean and covariance of a diagonal Gaussian mixture (law of total variance)."""
    m, s, w = (np.asarray(a, dtype=np.float64) for a in (means, stds, weights))
    mu = w @ m
    cov = sum(wk * (np.diag(sk**2) + np.outer(mk - mu, mk - mu)) for mk, sk, wk in zip(m, s, w))
    return mu, cov


def test_mixture_log_prob_vs_scipy(mixture):
    """GaussianMixture.log_prob vs a scipy.stats.multivariate_normal mixture summed by hand."""
    x = torch.tensor(np.random.default_rng(0).normal(scale=3.0, size=(200, 2)))
    got = mixture.log_prob(x).numpy()
    want = scipy_mixture_logpdf(x.numpy(), MEANS, DIAG_STDS, WEIGHTS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stds", [0.7, [0.5, 1.0, 2.0]])
def test_mixture_log_prob_vs_scipy_isotropic(stds):
    """Scalar and per-component stds broadcast like the scipy mixture with s_k^2 I covariances."""
    gm = GaussianMixture(MEANS, stds, WEIGHTS)
    full = np.broadcast_to(np.asarray(stds, dtype=np.float64).reshape(-1, 1), (3, 2))
    x = np.random.default_rng(1).normal(scale=3.0, size=(100, 2))
    np.testing.assert_allclose(gm.log_prob(torch.tensor(x)).numpy(), scipy_mixture_logpdf(x, MEANS, full, WEIGHTS),
                               rtol=1e-5, atol=1e-5)


def _riemann_total(dist, half_width, h):
    """Midpoint Riemann sum of exp(log_prob) over [-half_width, half_width]^2 with cell size h."""
    xs = np.arange(-half_width, half_width, h) + h / 2
    X, Y = np.meshgrid(xs, xs)
    pts = torch.tensor(np.stack([X.ravel(), Y.ravel()], 1), dtype=torch.float64)
    return float(torch.exp(dist.log_prob(pts)).sum()) * h * h


def test_mixture_density_integrates_to_one(mixture):
    """Riemann sum of exp(log_prob) over a fine grid covering the mass is 1."""
    assert abs(_riemann_total(mixture, 9.0, 0.02) - 1.0) < 1e-4


def test_symmetric_mixture_integrates_to_one():
    """The course's 11-mode target: the Riemann sum over [-15, 15]^2 is 1."""
    assert abs(_riemann_total(GaussianMixture.symmetric_2d(), 15.0, 0.05) - 1.0) < 1e-4


def test_mixture_score_vs_autograd(mixture):
    """score vs torch.autograd.grad of log_prob (float64)."""
    x = torch.tensor(np.random.default_rng(2).normal(scale=3.0, size=(64, 2)), requires_grad=True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    torch.testing.assert_close(mixture.score(x.detach()), grad, rtol=1e-5, atol=1e-6)


def test_mixture_responsibilities_vs_bayes(mixture):
    """responsibilities vs Bayes' rule w_k N_k(x) / sum_j w_j N_j(x) with scipy densities."""
    x = np.random.default_rng(3).normal(scale=2.0, size=(50, 2))
    comp = np.stack([w * stats.multivariate_normal(mean=m, cov=np.diag(np.square(s))).pdf(x)
                     for m, s, w in zip(MEANS, DIAG_STDS, WEIGHTS)], 1)
    np.testing.assert_allclose(mixture.responsibilities(torch.tensor(x)).numpy(), comp / comp.sum(1, keepdims=True),
                               rtol=1e-5, atol=1e-7)


def test_mixture_sample_moments(mixture):
    """Sample mean / covariance vs the exact mixture moments, within 5 standard errors."""
    n = 200_000
    x = mixture.sample(n, generator=torch.Generator().manual_seed(0)).double().numpy()
    mu, cov = mixture_moments(MEANS, DIAG_STDS, WEIGHTS)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mu) < 5 * se_mean)
    # standard error of each covariance entry from the sample of products (x_i - mu_i)(x_j - mu_j)
    c = x - mu
    prods = c[:, :, None] * c[:, None, :]
    se_cov = prods.std(0) / np.sqrt(n)
    assert np.all(np.abs(prods.mean(0) - cov) < 5 * se_cov)


def test_mixture_sample_labels_match_weights(mixture):
    """Label frequencies vs the weights (5 binomial standard errors) and labels tie points to their component."""
    n = 50_000
    x, labels = mixture.sample(n, generator=torch.Generator().manual_seed(1), return_labels=True)
    freq = torch.bincount(labels, minlength=3).double().numpy() / n
    w = np.asarray(WEIGHTS)
    assert np.all(np.abs(freq - w) < 5 * np.sqrt(w * (1 - w) / n))
    for k in range(3):
        xk = x[labels == k].double().numpy()
        assert np.all(np.abs(xk.mean(0) - MEANS[k]) < 5 * np.asarray(DIAG_STDS[k]) / np.sqrt(len(xk)))


def test_mixture_sample_seeding(mixture):
    """Same generator seed gives identical samples; a different seed gives different samples."""
    a = mixture.sample(100, generator=torch.Generator().manual_seed(5))
    b = mixture.sample(100, generator=torch.Generator().manual_seed(5))
    c = mixture.sample(100, generator=torch.Generator().manual_seed(6))
    assert a.shape == (100, 2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_symmetric_2d_geometry():
    """symmetric_2d: 11 modes on radius 10 (norms), equal weights, first at angle 0, consecutive angle 2pi/11."""
    gm = GaussianMixture.symmetric_2d()
    m = gm.means.double()
    assert gm.n_components == 11 and gm.dim == 2
    torch.testing.assert_close(m.norm(dim=1), torch.full((11,), 10.0, dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(gm.weights.double(), torch.full((11,), 1 / 11, dtype=torch.float64), rtol=0, atol=1e-7)
    assert abs(float(m[0, 1])) < 1e-5 and float(m[0, 0]) > 0  # angle 0
    nxt = torch.roll(m, -1, 0)
    dot = (m * nxt).sum(1)
    cross = m[:, 0] * nxt[:, 1] - m[:, 1] * nxt[:, 0]  # > 0: counter-clockwise order
    angles = torch.atan2(cross, dot)  # signed angle from each mean to the next
    torch.testing.assert_close(angles, torch.full((11,), 2 * math.pi / 11, dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(gm.stds.double(), torch.ones(11, 2, dtype=torch.float64))


def test_gaussian_log_prob_vs_scipy():
    """Gaussian.log_prob vs scipy.stats.multivariate_normal.logpdf with a diagonal covariance."""
    mean, std = [1.0, -2.0, 0.5], [0.5, 2.0, 1.0]
    g = Gaussian(mean, std)
    x = np.random.default_rng(4).normal(size=(50, 3))
    want = stats.multivariate_normal(mean=mean, cov=np.diag(np.square(std))).logpdf(x)
    np.testing.assert_allclose(g.log_prob(torch.tensor(x)).numpy(), want, rtol=1e-6, atol=1e-6)


def test_gaussian_standard_is_standard_normal():
    """Gaussian.standard(d).log_prob vs the sum of scipy.stats.norm.logpdf over coordinates."""
    x = np.random.default_rng(5).normal(size=(20, 4))
    np.testing.assert_allclose(Gaussian.standard(4).log_prob(torch.tensor(x)).numpy(),
                               stats.norm.logpdf(x).sum(1), rtol=1e-6, atol=1e-6)


def test_gaussian_score_vs_autograd():
    """Gaussian.score vs torch.autograd.grad of log_prob."""
    g = Gaussian([1.0, -2.0], [0.5, 2.0])
    x = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    (grad,) = torch.autograd.grad(g.log_prob(x).sum(), x)
    torch.testing.assert_close(g.score(x.detach()), grad)


def test_gaussian_sample_moments_and_seeding():
    """Gaussian samples: mean/std vs the parameters (5 standard errors); same seed identical, other seed differs."""
    g = Gaussian([3.0, -2.0], 0.5)
    n = 100_000
    x = g.sample(n, generator=torch.Generator().manual_seed(0)).double()
    assert torch.all((x.mean(0) - torch.tensor([3.0, -2.0], dtype=torch.float64)).abs() < 5 * 0.5 / math.sqrt(n))
    # var of the sample variance of a normal: 2 sigma^4 / n
    assert torch.all((x.var(0) - 0.25).abs() < 5 * math.sqrt(2 * 0.5**4 / n))
    a = g.sample(10, generator=torch.Generator().manual_seed(3))
    b = g.sample(10, generator=torch.Generator().manual_seed(3))
    c = g.sample(10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("kwargs, match", [
    (dict(means=[1.0, 2.0]), "means"),
    (dict(means=MEANS, stds=[1.0, 2.0]), "stds"),
    (dict(means=MEANS, stds=-1.0), r"stds must be > 0, got minimum -1"),
    (dict(means=MEANS, weights=[0.5, 0.5]), "weights"),
    (dict(means=MEANS, weights=[0.5, 0.6, -0.1]), r"weights must be >= 0"),
    (dict(means=MEANS, weights=[0.2, 0.2, 0.2]), r"weights must sum to 1, got sum 0.6"),
    (dict(means=[[0.0, float("nan")]]), "means"),
])
def test_mixture_bad_input(kwargs, match):
    """Malformed mixture parameters raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


@pytest.mark.parametrize("mean, std, match", [
    ([0.0, 0.0], [1.0, 1.0, 1.0], "std"),
    ([0.0, 0.0], 0.0, "std"),
    ([0.0, float("inf")], 1.0, "mean"),
])
def test_gaussian_bad_input(mean, std, match):
    """Malformed Gaussian parameters raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        Gaussian(mean, std)


def test_log_prob_wrong_dim_raises(mixture):
    """Points of the wrong dimension raise ValueError naming x."""
    with pytest.raises(ValueError, match="x must have shape"):
        mixture.log_prob(torch.zeros(4, 3))
