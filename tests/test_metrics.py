import math

import numpy as np
import pytest
import torch
from scipy import stats

import fmlearn as fm

from fmlearn import (Gaussian, GaussianMixture, energy_distance, energy_distance_floor, energy_distance_to,
                     fraction_near_modes, mode_fractions)


def randn(n, d, seed, shift=0.0):
    return shift + torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("n, m, shift", [(50, 50, 0.0), (80, 33, 0.7), (200, 150, -2.0)])
def test_1d_vs_scipy(n, m, shift):
    """1-D energy distance vs scipy.stats.energy_distance(u, v)**2 (scipy = sqrt(2) * L2 distance of the CDFs)."""
    u, v = randn(n, 1, 0), randn(m, 1, 1, shift)
    want = stats.energy_distance(u[:, 0].numpy(), v[:, 0].numpy()) ** 2
    assert energy_distance(u, v) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_vs_brute_force_double_loop():
    """2-D energy distance vs the V-statistic 2 E|X-Y| - E|X-X'| - E|Y-Y'| summed by hand in Python loops."""
    x, y = randn(17, 2, 2).numpy(), randn(11, 2, 3, 0.5).numpy()

    def mean_dist(a, b):
        return sum(math.dist(p, q) for p in a for q in b) / (len(a) * len(b))

    want = 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)
    assert energy_distance(torch.tensor(x), torch.tensor(y)) == pytest.approx(want, rel=1e-10)


def test_chunking_does_not_change_value():
    """More points than one cdist chunk (2048) give the same value as scipy in 1-D."""
    u, v = randn(2500, 1, 4), randn(300, 1, 5, 0.2)
    want = stats.energy_distance(u[:, 0].numpy(), v[:, 0].numpy()) ** 2
    assert energy_distance(u, v) == pytest.approx(want, rel=1e-8)


def test_zero_on_identical_sets_and_symmetric():
    """energy_distance(x, x) is 0, and swapping the arguments leaves the value unchanged."""
    x, y = randn(40, 3, 6), randn(25, 3, 7, 1.0)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12)
    assert energy_distance(x, y) > 0


def test_float32_input():
    """float32 inputs give the float64 value (computed in double)."""
    x, y = randn(30, 2, 8), randn(30, 2, 9, 0.3)
    assert energy_distance(x.float(), y.float()) == pytest.approx(energy_distance(x.float().double(),
                                                                                  y.float().double()), rel=1e-12)


@pytest.mark.parametrize("dist", [Gaussian.standard(2), GaussianMixture.symmetric_2d(n_modes=5, radius=4.0)],
                         ids=["gaussian", "mixture"])
def test_floor_vs_empirical_mean(dist):
    """energy_distance_floor(dist, n) vs the empirical mean of energy_distance between two independent n-sets over
    400 repeats (n = 50), within 4 standard errors of that mean."""
    n, reps = 50, 400
    g = torch.Generator().manual_seed(10)
    vals = np.array([energy_distance(dist.sample(n, generator=g), dist.sample(n, generator=g)) for _ in range(reps)])
    floor = energy_distance_floor(dist, n, n_ref=3000, generator=torch.Generator().manual_seed(11))
    se = vals.std(ddof=1) / math.sqrt(reps)
    assert abs(vals.mean() - floor) < 4 * se, (vals.mean(), floor, se)


def test_floor_scales_as_one_over_n():
    """The floor is 2 E|X - X'| / n: with the same reference draws, floor(n) * n is the same for every n."""
    d = Gaussian.standard(2)
    f = [energy_distance_floor(d, n, n_ref=500, generator=torch.Generator().manual_seed(0)) * n for n in (10, 100)]
    assert f[0] == pytest.approx(f[1], rel=1e-12)
    # and 2 E|X - X'| for N(0, I_2): E|X - X'| = sqrt(2) * E|Z| with |Z| Rayleigh, mean sqrt(pi / 2)
    assert f[0] == pytest.approx(2 * math.sqrt(2) * math.sqrt(math.pi / 2), rel=0.05)


@pytest.mark.parametrize("n", [0, -5, 2.0, True])
def test_floor_bad_n(n):
    """n that is not a positive int raises ValueError naming n."""
    with pytest.raises(ValueError, match="n must be a positive int"):
        energy_distance_floor(Gaussian.standard(2), n)


def test_energy_distance_to_vs_manual_average():
    """energy_distance_to(dist, x, repeats) vs the average of energy_distance to fresh sets drawn from the same
    generator stream by hand."""
    d = Gaussian([1.0, -1.0], 0.5)
    x = randn(40, 2, 12)
    got = energy_distance_to(d, x, repeats=3, generator=torch.Generator().manual_seed(13))
    g = torch.Generator().manual_seed(13)
    want = np.mean([energy_distance(x, d.sample(40, generator=g)) for _ in range(3)])
    assert got == pytest.approx(want, rel=1e-12)


def test_energy_distance_bad_input():
    """Mismatched dimensions or non-finite points raise ValueError naming the argument."""
    with pytest.raises(ValueError, match="y must have shape"):
        energy_distance(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x must be finite"):
        energy_distance(torch.tensor([[float("nan"), 0.0]]), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="repeats"):
        energy_distance_to(Gaussian.standard(2), torch.zeros(3, 2), repeats=0)


def brute_nearest_mean_fractions(means, x):
    counts = np.zeros(len(means))
    for p in x:
        counts[int(np.argmin([np.sum((p - m) ** 2) for m in means]))] += 1
    return counts / len(x)


def test_mode_fractions_vs_nearest_mean():
    """mode_fractions (Bayes assignment) vs a brute-force nearest-mean loop (equal weights, equal isotropic stds)."""
    gm = GaussianMixture.symmetric_2d(n_modes=7, radius=5.0, std=1.5)
    x = gm.sample(600, generator=torch.Generator().manual_seed(14))
    want = brute_nearest_mean_fractions(gm.means.double().numpy(), x.double().numpy())
    got = mode_fractions(gm, x)
    assert got.shape == (7,)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


def test_mode_fractions_unequal_weights_vs_bayes():
    """With unequal weights and stds, mode_fractions vs argmax_k w_k N(x; m_k, s_k^2) computed with scipy."""
    means, stds, w = np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([0.5, 2.0]), np.array([0.8, 0.2])
    gm = GaussianMixture(means, stds, w)
    x = np.random.default_rng(15).uniform(-4, 6, size=(500, 2))
    dens = np.stack([wk * stats.multivariate_normal(m, s**2 * np.eye(2)).pdf(x) for m, s, wk in zip(means, stds, w)], 1)
    want = np.bincount(dens.argmax(1), minlength=2) / len(x)
    np.testing.assert_allclose(mode_fractions(gm, torch.tensor(x)).numpy(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_std", [0.5, 2.0, 4.0])
def test_fraction_near_modes_vs_loop(n_std):
    """fraction_near_modes vs a brute-force loop: share of points within n_std * std of some mean."""
    gm = GaussianMixture.symmetric_2d(n_modes=5, radius=6.0, std=0.8)
    x = np.random.default_rng(16).uniform(-9, 9, size=(400, 2))
    means = gm.means.double().numpy()
    want = np.mean([any(np.linalg.norm(p - m) / 0.8 <= n_std for m in means) for p in x])
    assert fraction_near_modes(gm, torch.tensor(x), n_std=n_std) == pytest.approx(want, abs=1e-12)


def test_fraction_near_modes_diagonal_stds():
    """With diagonal stds, "near" is measured in the standardised metric |(x - m) / s| (brute-force loop)."""
    means, stds = np.array([[0.0, 0.0], [5.0, 5.0]]), np.array([[0.5, 2.0], [1.0, 1.0]])
    gm = GaussianMixture(means, stds)
    x = np.random.default_rng(17).uniform(-3, 8, size=(300, 2))
    want = np.mean([any(np.linalg.norm((p - m) / s) <= 1.5 for m, s in zip(means, stds)) for p in x])
    assert fraction_near_modes(gm, torch.tensor(x), n_std=1.5) == pytest.approx(want, abs=1e-12)


def test_velocity_error_vs_direct_computation():
    """velocity_error of a perturbed oracle (u + 0.1 * x) equals the hand computation on the same p_t samples."""
    from fmlearn import AffineGaussianPath, MixtureOracle, velocity_error

    target = GaussianMixture.symmetric_2d()
    oracle = MixtureOracle(target, AffineGaussianPath("condot"))
    model = lambda x, t: oracle.velocity(x, t) + 0.1 * x  # noqa: E731
    rel, rms = velocity_error(model, oracle, 0.4, n=500, generator=torch.Generator().manual_seed(3))
    x = oracle.marginal(0.4).sample(500, generator=torch.Generator().manual_seed(3))
    u = oracle.velocity(x, 0.4)
    assert abs(rel - float((0.1 * x).norm() / u.norm())) < 1e-6
    assert abs(rms - float(0.1 * x.pow(2).sum(1).mean().sqrt())) < 1e-6
    assert velocity_error(oracle, oracle, 0.4, n=100) == (0.0, 0.0)


def test_w2_vs_brute_force_over_permutations():
    """Exact W2 equals the minimum over all 6! pairings, enumerated by hand."""
    import itertools

    from fmlearn import w2_distance
    x, y = randn(6, 2, 10), randn(6, 2, 11, 1.0)
    best = min(sum(float(((x[i] - y[p[i]]) ** 2).sum()) for i in range(6)) for p in itertools.permutations(range(6)))
    assert w2_distance(x, y) == pytest.approx(math.sqrt(best / 6), rel=1e-12)


def test_w2_1d_is_sorted_matching_and_shift():
    """In 1-D the optimal pairing sorts both sets; a pure shift c gives W2 = |c|; images are flattened."""
    from fmlearn import w2_distance
    x, y = randn(40, 1, 12), randn(40, 1, 13)
    want = math.sqrt(float(((x.sort(0).values - y.sort(0).values) ** 2).mean()))
    assert w2_distance(x, y) == pytest.approx(want, rel=1e-12)
    img = randn(30, 4, 14).reshape(30, 1, 2, 2)
    assert w2_distance(img, img + 0.3) == pytest.approx(0.3 * 2, rel=1e-9)  # |(0.3,0.3,0.3,0.3)| = 0.6


def test_w2_floor_scales_like_two_sample_noise():
    """The floor is positive, shrinks as n grows, and equals a hand-averaged W2 of fresh pairs."""
    from fmlearn import w2_distance, w2_floor
    g = Gaussian([0.0, 0.0], 1.0)
    small, big = w2_floor(g, 50, generator=torch.Generator().manual_seed(0)), \
        w2_floor(g, 800, generator=torch.Generator().manual_seed(0))
    assert 0 < big < small
    gen = torch.Generator().manual_seed(3)
    want = sum(w2_distance(g.sample(60, generator=gen), g.sample(60, generator=gen)) for _ in range(2)) / 2
    assert w2_floor(g, 60, repeats=2, generator=torch.Generator().manual_seed(3)) == pytest.approx(want)


@pytest.mark.parametrize("x, y, match", [
    (torch.zeros(5, 2), torch.zeros(4, 2), "same shape"),
    (torch.zeros(5), torch.zeros(5), "x must be a tensor of shape"),
    ([[0.0]], torch.zeros(1, 1), "x must be a tensor"),
    (torch.zeros(3, 2), torch.full((3, 2), float("nan")), "finite"),
])
def test_w2_bad_input(x, y, match):
    from fmlearn import w2_distance
    with pytest.raises(ValueError, match=match):
        w2_distance(x, y)


def test_w2_mode_matched_vs_hand_built_reference():
    """The reference set has x's per-mode counts (taken here from the true labels, not from the Bayes assignment):
    rebuilt by hand (rows in mode order, same generator) it gives the same
    W2; shifting every point by 0.5 adds about 0.5^2 to W2^2 (the optimal plan barely changes)."""
    from fmlearn import w2_distance, w2_mode_matched
    mix = GaussianMixture([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]], 1.0, [0.2, 0.3, 0.5])
    x, labels = mix.sample(300, generator=torch.Generator().manual_seed(0), return_labels=True)
    counts = torch.bincount(labels, minlength=3)
    z = torch.randn(300, 2, generator=torch.Generator().manual_seed(7))  # one draw, rows in mode order
    ref = torch.cat([mix.means[k].expand(int(counts[k]), 2) for k in range(3)]) + z
    assert w2_mode_matched(mix, x, torch.Generator().manual_seed(7)) == pytest.approx(w2_distance(x, ref), rel=1e-9)
    shifted = x + torch.tensor([0.5, 0.0])
    base = w2_mode_matched(mix, x, torch.Generator().manual_seed(1))
    moved = w2_mode_matched(mix, shifted, torch.Generator().manual_seed(1))
    assert abs((moved ** 2 - base ** 2) - 0.25) < 0.05


def test_fraction_near_modes_exact_vs_chi_square_and_samples():
    """The exact share is the chi-square CDF (scipy, independently) and matches 400,000 true samples
    to within the mass that lands near a neighbouring mode (a lower bound, as documented)."""
    from fmlearn import fraction_near_modes_exact
    mix = GaussianMixture.symmetric_2d()
    for n_std in (1.0, 2.5, 4.0):
        assert fraction_near_modes_exact(mix, n_std) == pytest.approx(stats.chi2.cdf(n_std ** 2, df=2), rel=1e-12)
    x = mix.sample(400_000, generator=torch.Generator().manual_seed(3))
    measured = fraction_near_modes(mix, x, 2.5)
    exact = fraction_near_modes_exact(mix, 2.5)
    assert 0 <= measured - exact < 0.002
    far = GaussianMixture([[0.0, 0.0, 0.0], [50.0, 0.0, 0.0]], 2.0)  # 3-D, modes far apart: exact
    y = far.sample(200_000, generator=torch.Generator().manual_seed(4))
    assert fraction_near_modes(far, y, 1.5) == pytest.approx(fraction_near_modes_exact(far, 1.5), abs=3e-3)
    with pytest.raises(ValueError, match="isotropic"):
        fraction_near_modes_exact(GaussianMixture([[0.0, 0.0]], [[1.0, 2.0]]), 2.0)


def _ring(n, gen):
    angle = 2 * math.pi * torch.rand(n, generator=gen)
    radius = 10 + torch.randn(n, generator=gen)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)


def _stranded(mix, n, share, gen):
    """True samples, except that a share of them sits at midpoints between neighbouring modes."""
    x = mix.sample(n, generator=gen)
    k = int(share * n)
    idx = torch.randint(0, mix.n_components, (k,), generator=gen)
    mid = (mix.means[idx] + mix.means[(idx + 1) % mix.n_components]) / 2
    x[:k] = mid + 0.5 * torch.randn(k, 2, generator=gen)
    return x


def test_mode_matched_energy_distance_separates_a_ring_from_true_samples():
    """Chapter 1's checks, on sets whose answer is known: true samples score near 1x the mode-matched floor
    (over 10 seeds, never above 1.5x), a mode-less ring scores > 4x; the 2.5-std share flags a set with 5%
    of its mass stranded between modes, which the 4-std share and the plain energy distance cannot see."""
    from fmlearn import energy_distance_mode_matched, energy_distance_mode_matched_floor, fraction_near_modes_exact
    mix, n = GaussianMixture.symmetric_2d(), 2000
    gen = torch.Generator().manual_seed(0)
    floor = energy_distance_mode_matched_floor(mix, n, generator=gen)
    ratios = [energy_distance_mode_matched(mix, mix.sample(n, generator=gen), generator=gen) / floor
              for _ in range(10)]
    assert max(ratios) < 1.5 and 0.7 < sum(ratios) / 10 < 1.3
    assert energy_distance_mode_matched(mix, _ring(n, gen), generator=gen) / floor > 4
    exact = fraction_near_modes_exact(mix, 2.5)
    stranded = _stranded(mix, n, 0.05, gen)
    assert fraction_near_modes(mix, stranded, 4.0) > 0.99               # the old check is blind to it
    assert exact - fraction_near_modes(mix, stranded, 2.5) > 0.015        # 4.4% -> about 7% outside 2.5 std
    assert abs(exact - fraction_near_modes(mix, mix.sample(n, generator=gen), 2.5)) < 0.015


def test_mode_matched_energy_distance_vs_hand_built_reference():
    """Same construction as w2_mode_matched: rebuilt by hand with the same generator, the same value."""
    from fmlearn import energy_distance_mode_matched
    mix = GaussianMixture([[0.0, 0.0], [20.0, 0.0]], 1.0, [0.3, 0.7])
    x, labels = mix.sample(200, generator=torch.Generator().manual_seed(0), return_labels=True)
    counts = torch.bincount(labels, minlength=2)
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(5))
    ref = torch.cat([mix.means[k].expand(int(counts[k]), 2) for k in range(2)]) + z
    got = energy_distance_mode_matched(mix, x, repeats=1, generator=torch.Generator().manual_seed(5))
    assert got == pytest.approx(energy_distance(x, ref), rel=1e-9)


def test_velocity_error_runs_a_float64_model_on_float32_samples():
    """The oracle's samples are float32; a float64 model gets them in its own dtype (it crashed inside torch)."""
    from fmlearn import MLP, AffineGaussianPath, MixtureOracle, velocity_error
    oracle = MixtureOracle(GaussianMixture.symmetric_2d(), AffineGaussianPath())
    torch.manual_seed(0)
    model32 = MLP(2, hidden=16, depth=2)
    model64 = MLP(2, hidden=16, depth=2).double()
    model64.load_state_dict({k: v.double() for k, v in model32.state_dict().items()})
    e32 = velocity_error(model32, oracle, 0.5, n=500, generator=torch.Generator().manual_seed(1))
    e64 = velocity_error(model64, oracle, 0.5, n=500, generator=torch.Generator().manual_seed(1))
    assert e64 == pytest.approx(e32, rel=1e-5)


def test_w2_on_the_line_sorts_and_matches_the_assignment():
    """In 1-D the exact W2 pairs sorted samples; the general assignment solver (space given) agrees."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 1, generator=g), 1.3 * torch.randn(400, 1, generator=g) + 0.2
    assert fm.w2_distance(x, y) == pytest.approx(fm.w2_distance(x, y, space=fm.Euclidean()), rel=1e-9)
