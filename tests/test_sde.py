"""Velocity/score/noise/data conversions of the affine Gaussian path, the VE schedule, the
Euler-Maruyama sampler family and the Langevin corrector, each against a closed form."""

import math

import pytest
import torch

import fmlearn as fm
from fmlearn.schedules import SCHEDULES, VE

SCHEDS = {"condot": "condot", "sqrt": "sqrt", "cosine": "cosine", "vp": "vp", "poly2": fm.Polynomial(2.0),
          "ve": VE(0.01, 20.0)}
T_INNER = torch.linspace(0.05, 0.95, 10).tolist()


def mixture():
    """Three 2-D components with unequal weights and anisotropic stds: a non-trivial score."""
    return fm.GaussianMixture([[3.0, 0.0], [-2.0, 1.0], [0.0, -2.5]], [[0.5, 1.0], [1.2, 0.3], [0.8, 0.8]],
                              [0.5, 0.3, 0.2])


@pytest.mark.parametrize("name", sorted(SCHEDS))
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_score_from_velocity_matches_oracle(name, dtype, tol):
    """score_from_velocity(oracle velocity) vs the oracle's own score, relative L2 error on t in [0.05, 0.95]."""
    path = fm.AffineGaussianPath(SCHEDS[name])
    oracle = fm.MixtureOracle(mixture(), path)
    gen = torch.Generator().manual_seed(0)
    for t in T_INNER:
        x = oracle.marginal(t).sample(500, generator=gen).to(dtype)
        want = oracle.score(x, t)
        got = path.score_from_velocity(oracle.velocity(x, t), x, t)
        assert float((got - want).norm() / want.norm()) <= tol, t


@pytest.mark.parametrize("name", sorted(SCHEDS))
def test_round_trips_and_the_linear_system(name):
    """For arbitrary u: u -> s -> u, u -> x0_hat -> u, u -> x1_hat -> u return u; and x0_hat, x1_hat solve
    x = alpha x1 + beta x0, u = d_alpha x1 + d_beta x0 with the schedule's own coefficients; s = -x0_hat / beta."""
    path = fm.AffineGaussianPath(SCHEDS[name])
    gen = torch.Generator().manual_seed(1)
    x, u = (torch.randn(64, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    t = torch.linspace(0.05, 0.95, 64, dtype=torch.float64)
    sc, te = path.schedule, t[:, None]
    x0h, x1h, s = path.x0_from_velocity(u, x, t), path.x1_from_velocity(u, x, t), path.score_from_velocity(u, x, t)
    torch.testing.assert_close(sc.alpha(te) * x1h + sc.beta(te) * x0h, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sc.d_alpha(te) * x1h + sc.d_beta(te) * x0h, u, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, -x0h / sc.beta(te), rtol=1e-10, atol=1e-10)
    for back in (path.velocity_from_score(s, x, t), path.velocity_from_x0(x0h, x, t), path.velocity_from_x1(x1h, x, t)):
        torch.testing.assert_close(back, u, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["condot", "cosine", "vp"])
def test_noise_prediction_is_the_gaussian_posterior_mean(name):
    """Data N(m, diag s^2): E[x0 | x_t = x] = beta (x - alpha m) / (alpha^2 s^2 + beta^2), by Gaussian conditioning."""
    m, sd = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    path = fm.AffineGaussianPath(name)
    oracle = fm.MixtureOracle(fm.GaussianMixture(m[None].float(), sd[None].float()), path)
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    for t in (0.1, 0.5, 0.9):
        a, b = (float(f(torch.tensor(t, dtype=torch.float64))) for f in (path.schedule.alpha, path.schedule.beta))
        want = b * (x - a * m) / (a**2 * sd**2 + b**2)
        torch.testing.assert_close(path.x0_from_velocity(oracle.velocity(x, t), x, t), want, rtol=1e-5, atol=1e-5)


def test_endpoints_refused_or_finite():
    """Singular ends raise ValueError naming t and the divisor; the regular ends are finite and exact."""
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(3))
    condot = fm.AffineGaussianPath("condot")
    with pytest.raises(ValueError, match="t: score_from_velocity divides by beta_t D_t.*t < 1"):
        condot.score_from_velocity(x, x, 1.0)
    with pytest.raises(ValueError, match="t: velocity_from_score divides by alpha_t.*t > 0"):
        condot.velocity_from_score(x, x, 0.0)
    with pytest.raises(ValueError, match="t: x0_from_velocity divides by D_t"):
        fm.AffineGaussianPath(fm.Polynomial(2.0)).x0_from_velocity(x, x, 0.0)
    with pytest.raises(ValueError, match="beta_t"):  # cosine's beta_1 = cos(pi / 2) ~ 6e-17 is no escape
        fm.AffineGaussianPath("cosine").score_from_velocity(x, x, torch.tensor([0.5] * 7 + [1.0]))
    for name in ("condot", "sqrt", "cosine", "vp"):
        p = fm.AffineGaussianPath(name)
        for t in (0.0, 1.0):
            for conv in (p.x0_from_velocity, p.x1_from_velocity):
                assert torch.isfinite(conv(x, x, t)).all(), (name, t)
    # VP (alpha_0 ~ 6.6e-3) converts a score at t = 0; VE (beta_1 = sigma_min), and sqrt and VP (beta D -> 1/2
    # and d_alpha_1, with the closed-form beta d_beta), a velocity at t = 1: all exact.
    for sched, t, conv in (("vp", 0.0, "velocity"), (VE(), 1.0, "score"), ("sqrt", 1.0, "score"), ("vp", 1.0, "score")):
        p = fm.AffineGaussianPath(sched)
        o = fm.MixtureOracle(mixture(), p)
        xd = o.marginal(t).sample(200, generator=torch.Generator().manual_seed(4)).double()
        got = p.velocity_from_score(o.score(xd, t), xd, t) if conv == "velocity" else \
            p.score_from_velocity(o.velocity(xd, t), xd, t)
        torch.testing.assert_close(got, o.velocity(xd, t) if conv == "velocity" else o.score(xd, t))


def test_ve_schedule():
    """VE: alpha = 1, beta = sigma_max^(1-t) sigma_min^t (by hand), d_beta vs a finite difference,
    source_std = sigma_max, not reachable by name, and bad sigmas refused."""
    ve = VE(0.02, 30.0)
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    torch.testing.assert_close(ve.alpha(t), torch.ones_like(t))
    torch.testing.assert_close(ve.beta(t), 30.0 ** (1 - t) * 0.02**t)
    h = 1e-6
    torch.testing.assert_close(ve.d_beta(t), (ve.beta(t + h) - ve.beta(t - h)) / (2 * h), rtol=1e-6, atol=1e-6)
    assert ve.source_std == 30.0 and "ve" not in SCHEDULES and isinstance(ve, fm.Schedule)
    for kwargs, match in (({"sigma_min": 1.0, "sigma_max": 1.0}, "sigma_min must be smaller"),
                          ({"sigma_min": 0.0}, "sigma_min must be a finite number > 0"),
                          ({"sigma_max": float("inf")}, "sigma_max must be a finite number > 0")):
        with pytest.raises(ValueError, match=match):
            VE(**kwargs)


@pytest.mark.parametrize("g", [0.0, 0.5, 1.0])
def test_em_reproduces_gaussian_marginals(g):
    """Data N(m, diag s^2), CondOT: the EM samples at t = 0.5 and t = 1 have mean alpha m and variance
    alpha^2 s^2 + beta^2 (closed form), within 5 standard errors plus 0.02 for the O(h) step bias."""
    m, sd = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])
    path = fm.AffineGaussianPath("condot")
    oracle = fm.MixtureOracle(fm.GaussianMixture(m[None], sd[None]), path)
    gen = torch.Generator().manual_seed(5)
    n = 10_000
    sol = fm.sde_sample(oracle, path, torch.randn(n, 2, generator=gen), steps=200, g=g, generator=gen,
                        return_trajectory=True)
    for i, t in ((100, 0.5), (200, 1.0)):
        x, var = sol.trajectory[i], t**2 * sd**2 + (1 - t) ** 2
        assert ((x.mean(0) - t * m).abs() <= 5 * (var / n).sqrt() + 0.02).all(), (t, x.mean(0))
        assert ((x.var(0) / var - 1).abs() <= 5 * math.sqrt(2 / n) + 0.02).all(), (t, x.var(0), var)
    assert sol.nfe == 200 and sol.trajectory.shape == (201, n, 2) and torch.equal(sol.trajectory[-1], sol.x)


def test_g0_is_the_euler_ode_and_seeding():
    """g = 0 gives fm.odeint's Euler solution exactly; a seed fixes the noise, another seed changes it."""
    path = fm.AffineGaussianPath("condot")
    oracle = fm.MixtureOracle(mixture(), path)
    x0 = torch.randn(100, 2, generator=torch.Generator().manual_seed(6))
    ode = fm.odeint(oracle, x0, steps=20, method="euler").x
    assert torch.equal(fm.sde_sample(oracle, path, x0, steps=20, g=0.0).x, ode)

    def run(seed):
        return fm.sde_sample(oracle, path, x0, steps=20, g=0.7, generator=torch.Generator().manual_seed(seed)).x

    assert torch.equal(run(1), run(1)) and not torch.allclose(run(1), run(2))


def test_one_em_step_with_diffusion_noise():
    """One step from t with g_t^2 = 2 beta D / alpha: x + h (2 u - (d_alpha / alpha) x) + g sqrt(h) z,
    the simplified reverse-diffusion drift, with z drawn from the same seed."""
    path = fm.AffineGaussianPath("vp")
    oracle = fm.MixtureOracle(mixture(), path)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    t, h = 0.3, 0.01
    got = fm.sde_sample(oracle, path, x, times=[t, t + h], g=fm.diffusion_noise(path),
                        generator=torch.Generator().manual_seed(8)).x
    tt = torch.tensor(t, dtype=torch.float64)
    s = path.schedule
    g2 = 2 * s.beta(tt) * (s.d_alpha(tt) * s.beta(tt) - s.alpha(tt) * s.d_beta(tt)) / s.alpha(tt)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    want = x + h * (2 * oracle.velocity(x, t) - s.d_alpha(tt) / s.alpha(tt) * x) + (g2 * h).sqrt() * z
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_diffusion_noise_closed_forms():
    """VP: g^2 = rate_min + (rate_max - rate_min)(1 - t) (DDPM); VE: g^2 = -d(sigma^2)/dt (finite difference);
    CondOT: g^2 = 2 (1 - t) / t, infinite at t = 0 (ValueError naming t)."""
    vp, ve = fm.AffineGaussianPath(fm.VP(0.1, 20.0)), fm.AffineGaussianPath(VE(0.01, 20.0))
    for t in (0.0, 0.3, 0.9, 1.0):
        assert fm.diffusion_noise(vp)(t) ** 2 == pytest.approx(0.1 + 19.9 * (1 - t), rel=1e-6)
        assert fm.diffusion_noise(fm.AffineGaussianPath("condot"), 0.5)(max(t, 0.3)) ** 2 == \
            pytest.approx(0.25 * 2 * (1 - max(t, 0.3)) / max(t, 0.3), rel=1e-9)
    h, sig2 = 1e-5, (lambda u: float(ve.schedule.beta(torch.tensor(u, dtype=torch.float64))) ** 2)
    for t in (0.2, 0.7):
        assert fm.diffusion_noise(ve)(t) ** 2 == pytest.approx(-(sig2(t + h) - sig2(t - h)) / (2 * h), rel=1e-6)
    with pytest.raises(ValueError, match="t: the diffusion noise scale is infinite at t = 0.0"):
        fm.diffusion_noise(fm.AffineGaussianPath("condot"))(0.0)


def test_ve_sampler_reaches_the_data():
    """VE path, data N(m, s^2): from the exact t = 0 marginal N(m, s^2 + sigma_max^2), EM with the diffusion noise
    ends at N(m, s^2 + sigma_min^2) (closed form), within 5 standard errors plus 3% for the step bias."""
    m, sd, ve = torch.tensor([3.0, -1.0]), torch.tensor([1.0, 0.5]), VE(0.01, 20.0)
    path = fm.AffineGaussianPath(ve)
    oracle = fm.MixtureOracle(fm.GaussianMixture(m[None], sd[None]), path)
    gen, n = torch.Generator().manual_seed(9), 10_000
    x = fm.sde_sample(oracle, path, oracle.marginal(0.0).sample(n, generator=gen), steps=300,
                      g=fm.diffusion_noise(path), generator=gen).x
    var = sd**2 + 0.01**2
    assert ((x.mean(0) - m).abs() <= 5 * (var / n).sqrt() + 0.02).all(), x.mean(0)
    assert ((x.var(0) / var - 1).abs() <= 5 * math.sqrt(2 / n) + 0.03).all(), x.var(0)


@pytest.mark.parametrize("eps, ratio", [(0.02, 1.0 / (1 - 0.01)), (0.4, 1.0 / (1 - 0.2))])
def test_langevin_keeps_a_gaussian(eps, ratio):
    """Langevin with the exact score of N(m, s^2 = 1), started at exact samples: the mean stays and the
    variance goes to the closed-form fixed point s^2 / (1 - eps / (2 s^2)) of x <- (1 - eps) x + sqrt(2 eps) z."""
    gen, n, m = torch.Generator().manual_seed(10), 20_000, 2.0
    x = m + torch.randn(n, 1, generator=gen)
    for _ in range(60):
        x = fm.langevin_step(lambda y: -(y - m), x, eps, generator=gen)
    assert abs(float(x.mean()) - m) <= 5 * math.sqrt(ratio / n)
    assert abs(float(x.var()) / ratio - 1) <= 5 * math.sqrt(2 / n)


def test_corrector_in_the_sampler():
    """Predictor-corrector wiring, step by step: one EM step then two Langevin steps with the score of p_t at
    the new time, the noise drawn in that order from the same seed; and NFE = steps + corrector_steps (steps - 1)
    on CondOT (no corrector at t = 1, where the score cannot be had from the velocity)."""
    path = fm.AffineGaussianPath("condot")
    oracle = fm.MixtureOracle(mixture(), path)
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    got = fm.sde_sample(oracle, path, x, times=[0.2, 0.3], g=0.5, corrector_steps=2, corrector_eps=0.03,
                        generator=torch.Generator().manual_seed(13))
    gen = torch.Generator().manual_seed(13)
    want = x + 0.1 * (oracle.velocity(x, 0.2) + 0.125 * oracle.score(x, 0.2)) \
        + 0.5 * math.sqrt(0.1) * torch.randn(40, 2, generator=gen, dtype=torch.float64)
    for _ in range(2):
        want = want + 0.03 * oracle.score(want, 0.3) + math.sqrt(0.06) * torch.randn(40, 2, generator=gen,
                                                                                      dtype=torch.float64)
    torch.testing.assert_close(got.x, want, rtol=1e-9, atol=1e-9)
    assert got.nfe == 3
    assert fm.sde_sample(oracle, path, x, steps=8, g=0.0, corrector_steps=3).nfe == 8 + 3 * 7


class CountingSpace(fm.spaces.Euclidean):
    """R^d that counts the increments it applies."""

    def __init__(self):
        self.steps = 0

    def step(self, x, dx):
        self.steps += 1
        return super().step(x, dx)


def test_corrector_steps_through_the_space():
    """Every update goes through space.step: per predictor step the drift and the noise, per Langevin step the
    score's increment and the noise (2 * 2 + 2 * 2 * 2 = 12 increments on two steps); in R^d the result is the
    default sampler's, bit for bit, at the same seed."""
    path = fm.AffineGaussianPath("condot")
    oracle = fm.MixtureOracle(mixture(), path)
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(12))
    space = CountingSpace()
    args = dict(times=[0.2, 0.3, 0.4], g=0.5, corrector_steps=2, corrector_eps=0.03)
    got = fm.sde_sample(oracle, path, x, space=space, generator=torch.Generator().manual_seed(13), **args)
    want = fm.sde_sample(oracle, path, x, generator=torch.Generator().manual_seed(13), **args)
    assert space.steps == 12
    assert torch.equal(got.x, want.x)


def test_langevin_step_on_the_torus():
    """On the flat torus a Langevin step applies the score's increment, then the noise, each wrapped into
    [0, 2 pi) by the torus's step: the same as wrapping by hand, and the points stay on the torus."""
    from fmlearn.manifolds import FlatTorus

    torus = FlatTorus(2)
    x = torus.wrap(3 * torch.randn(500, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    eps, score = 0.5, (lambda y: 4.0 - y)
    got = fm.langevin_step(score, x, eps, torch.Generator().manual_seed(4), space=torus)
    z = torch.randn(500, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want = torus.wrap(torus.wrap(x + eps * score(x)) + math.sqrt(2 * eps) * z)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert float(got.min()) >= 0 and float(got.max()) < 2 * math.pi
    raw = x + eps * score(x) + math.sqrt(2 * eps) * z
    assert float(raw.max()) >= 2 * math.pi and float(raw.min()) < 0  # wrapping was needed on both sides


def test_corrector_fixes_coarse_steps():
    """Six Euler steps to t = 0.9 on data N(m, diag s^2) miss the closed-form variance alpha^2 s^2 + beta^2 by
    about 30%; ten Langevin steps (eps = 0.02) after each step bring it within a third of that."""
    m, sd = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    path = fm.AffineGaussianPath("condot")
    oracle = fm.MixtureOracle(fm.GaussianMixture(m[None], sd[None]), path)
    gen, n = torch.Generator().manual_seed(11), 20_000
    x0, times, var = torch.randn(n, 2, generator=gen), torch.linspace(0, 0.9, 7), 0.81 * sd**2 + 0.01
    plain = fm.sde_sample(oracle, path, x0, times=times, g=0.0)
    pc = fm.sde_sample(oracle, path, x0, times=times, g=0.0, corrector_steps=10, corrector_eps=0.02, generator=gen)
    err_plain, err_pc = ((v.x.var(0) / var - 1).abs().max() for v in (plain, pc))
    assert err_plain > 0.2 and err_pc < err_plain / 3, (err_plain, err_pc)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"g": -0.5}, ValueError, r"g must be finite and >= 0, got -0.5"),
    ({"g": float("nan")}, ValueError, r"g must be finite and >= 0, got nan"),
    ({"g": float("inf")}, ValueError, r"g must be finite and >= 0, got inf"),
    ({"g": lambda t: 1.0 - 2 * t}, ValueError, r"g must be finite and >= 0, got -?[0-9.]+ at t = "),
    ({"g": "big"}, TypeError, r"g must be a number or a function of t"),
    ({"g": True}, TypeError, r"g must be a number"),
    ({"corrector_eps": 0.0, "corrector_steps": 1}, ValueError, r"corrector_eps must be finite and > 0"),
    ({"corrector_steps": -1}, ValueError, r"corrector_steps must be an int >= 0, got -1"),
    ({"times": [0.0, 1.0]}, ValueError, r"exactly one of steps"),
    ({"steps": None, "times": [1.0, 0.5, 0.0]}, ValueError, r"times must increase within \[0, 1\]"),
    ({"steps": None, "times": [0.0, 1.5]}, ValueError, r"times must increase within \[0, 1\]"),
    ({"steps": 0}, ValueError, r"steps must be a positive int"),
    ({"generator": 3}, TypeError, r"generator must be a torch.Generator"),
])
def test_sampler_bad_input(kwargs, err, match):
    """Bad noise scales, corrector settings, grids and generators raise, naming the argument and the value."""
    path = fm.AffineGaussianPath("condot")
    oracle = fm.MixtureOracle(mixture(), path)
    args = {"steps": 4, **kwargs}
    with pytest.raises(err, match=match):
        fm.sde_sample(oracle, path, torch.zeros(3, 2), **args)


def test_other_bad_input():
    """Wrong path, x0, Langevin eps, conversion shapes / values and diffusion scale raise clear errors."""
    path = fm.AffineGaussianPath("condot")
    oracle = fm.MixtureOracle(mixture(), path)
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="path must be an AffineGaussianPath, got str"):
        fm.sde_sample(oracle, "condot", x, steps=2)
    with pytest.raises(ValueError, match=r"x0 must be a tensor of shape \(batch, \*data\), got \(3,\)"):
        fm.sde_sample(oracle, path, torch.zeros(3), steps=2)
    with pytest.raises(TypeError, match=r"x0 must be a tensor of shape \(batch, \*data\), got list"):
        fm.sde_sample(oracle, path, [[0.0, 0.0]], steps=2)
    with pytest.raises(TypeError, match="velocity must be a model or a function velocity\\(x, t\\), got int"):
        fm.sde_sample(3, path, x, steps=2)
    with pytest.raises(ValueError, match="eps must be a positive finite number, got -0.1"):
        fm.langevin_step(lambda y: -y, x, -0.1)
    with pytest.raises(TypeError, match=r"space must .*step\(x, dx\).*got str"):
        fm.langevin_step(lambda y: -y, x, 0.1, space="sphere")
    with pytest.raises(ValueError, match=r"u and x must have the same shape .* got \(3, 3\) and \(3, 2\)"):
        path.score_from_velocity(torch.zeros(3, 3), x, 0.5)
    with pytest.raises(ValueError, match="score must be finite"):
        path.velocity_from_score(torch.full((3, 2), float("nan")), x, 0.5)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        path.x1_from_velocity(x, x, 1.5)
    with pytest.raises(ValueError, match="scale must be >= 0, got -1.0"):
        fm.diffusion_noise(path, -1.0)
    with pytest.raises(TypeError, match="path must be an AffineGaussianPath"):
        fm.diffusion_noise(VE())
