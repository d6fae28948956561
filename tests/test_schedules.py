import math

import pytest
import torch

from fmlearn import VP, CondOT, Cosine, Polynomial, Schedule, Sqrt, get_schedule
from fmlearn.schedules import SCHEDULES

ALL = [CondOT, Sqrt, Cosine, VP, Polynomial, lambda: Polynomial(3.0)]
T_INNER = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
H = 1e-6


def fd(f, t, h=H):
    """Central finite difference (f(t + h) - f(t - h)) / 2h."""
    return (f(t + h) - f(t - h)) / (2 * h)


@pytest.mark.parametrize("cls", ALL)
def test_end_values(cls):
    """alpha_0 = 0, beta_0 = 1, alpha_1 = 1, beta_1 = 0 (VP: alpha_0 within 1e-2), evaluated directly."""
    s = cls()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    a, b = s.alpha(t), s.beta(t)
    assert abs(float(a[0])) <= (1e-2 if cls is VP else 1e-12)
    assert abs(float(b[0]) - 1) <= (1e-4 if cls is VP else 1e-12)
    assert abs(float(a[1]) - 1) <= 1e-12
    assert abs(float(b[1])) <= 1e-12


def test_vp_alpha0_formula():
    """VP's alpha_0 vs exp(-(rate_min + (rate_max - rate_min) / 2) / 2) computed by hand (~6.6e-3)."""
    a0 = float(VP().alpha(torch.tensor(0.0, dtype=torch.float64)))
    assert a0 == pytest.approx(math.exp(-0.5 * (0.1 + 0.5 * 19.9)), rel=1e-12)


@pytest.mark.parametrize("cls", ALL)
def test_d_alpha_vs_finite_difference(cls):
    """d_alpha vs a central finite difference of alpha in float64 on t in [0.01, 0.99]."""
    s = cls()
    torch.testing.assert_close(s.d_alpha(T_INNER), fd(s.alpha, T_INNER), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", ALL)
def test_d_beta_vs_finite_difference(cls):
    """d_beta vs a central finite difference of beta in float64 on t in [0.01, 0.99]."""
    s = cls()
    torch.testing.assert_close(s.d_beta(T_INNER), fd(s.beta, T_INNER), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ALL)
def test_beta_d_beta(cls):
    """beta_d_beta vs beta * d_beta, and vs a finite difference of beta^2 / 2, on t in [0.01, 0.99]."""
    s = cls()
    got = s.beta_d_beta(T_INNER)
    torch.testing.assert_close(got, s.beta(T_INNER) * s.d_beta(T_INNER), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got, fd(lambda u: 0.5 * s.beta(u) ** 2, T_INNER), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", ALL)
def test_beta_d_beta_at_ends(cls):
    """At t = 0 and 1, beta_d_beta equals the one-sided finite difference of beta^2 / 2 (its continuous value)."""
    s = cls()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    h = 1e-7
    half_sq = lambda u: 0.5 * s.beta(u) ** 2  # noqa: E731
    one_sided = torch.stack([(half_sq(t[0] + h) - half_sq(t[0])) / h, (half_sq(t[1]) - half_sq(t[1] - h)) / h])
    torch.testing.assert_close(s.beta_d_beta(t), one_sided, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_ends(cls, dtype):
    """alpha, beta, d_alpha, d_beta, beta_d_beta are finite (no NaN / inf) at t = 0 and t = 1."""
    s = cls()
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    for f in (s.alpha, s.beta, s.d_alpha, s.d_beta, s.beta_d_beta):
        v = f(t)
        assert v.shape == t.shape and v.dtype == dtype
        assert bool(torch.isfinite(v).all()), f.__name__


@pytest.mark.parametrize("cls", [Cosine, VP])
def test_variance_preserving(cls):
    """Cosine and VP keep alpha^2 + beta^2 = 1, as their definitions say."""
    s = cls()
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(s.alpha(t) ** 2 + s.beta(t) ** 2, torch.ones_like(t))


def test_vp_custom_betas_end_value():
    """VP(rate_min, rate_max) alpha_0 vs exp(-(rate_min + rate_max) / 4) computed by hand."""
    s = VP(rate_min=1.0, rate_max=30.0)
    assert float(s.alpha(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(math.exp(-31 / 4), rel=1e-12)


def test_vp_bad_betas():
    """VP with rate_min >= rate_max raises ValueError naming them."""
    with pytest.raises(ValueError, match="rate_min"):
        VP(rate_min=5.0, rate_max=1.0)


def test_vp_too_weak_fails_end_check():
    """A VP whose alpha_0 misses 0 by more than 1e-2 is refused at construction (exp(-(0.1+2)/4) ~ 0.59)."""
    with pytest.raises(ValueError, match="alpha_0"):
        VP(rate_min=0.1, rate_max=2.0)


class _Shifted(CondOT):
    """alpha_t = t + 0.1: wrong alpha_0 and alpha_1."""

    def alpha(self, t):
        return t + 0.1


class _NoNoiseEnd(CondOT):
    """beta_t = 1 - t / 2: wrong beta_1."""

    def beta(self, t):
        return 1 - t / 2


@pytest.mark.parametrize("cls, key", [(_Shifted, "alpha_0"), (_NoNoiseEnd, "beta_1")])
def test_wrong_end_values_raise(cls, key):
    """A subclass with wrong end values raises ValueError at construction, naming the class and the end."""
    with pytest.raises(ValueError, match=rf"{cls.__name__}.*{key}"):
        cls()


@pytest.mark.parametrize("name, cls", [("condot", CondOT), ("CondOT", CondOT), ("SQRT", Sqrt), ("cosine", Cosine),
                                       ("vp", VP)])
def test_get_schedule_by_name(name, cls):
    """get_schedule resolves names case-insensitively to the matching class."""
    assert type(get_schedule(name)) is cls


def test_get_schedule_passes_instances_through():
    """A Schedule instance is returned as is."""
    s = VP(rate_min=0.5, rate_max=25.0)
    assert get_schedule(s) is s


@pytest.mark.parametrize("bad", ["linear", "", 3, None])
def test_get_schedule_unknown_raises(bad):
    """An unknown name raises ValueError quoting it and listing the known names."""
    with pytest.raises(ValueError, match=rf"{sorted(SCHEDULES)[0]}.*{repr(bad)}"):
        get_schedule(bad)


def test_schedule_base_is_abstract():
    """The bare base class has no alpha: constructing it raises NotImplementedError."""
    with pytest.raises(NotImplementedError):
        Schedule()


@pytest.mark.parametrize("n", [0.5, 0.0, float("nan"), True])
def test_polynomial_refuses_bad_exponent(n):
    """Polynomial(n) needs a finite n >= 1 (n < 1 starts at infinite speed): ValueError naming n."""
    with pytest.raises(ValueError, match=r"n must be a finite number >= 1"):
        Polynomial(n)


def test_polynomial_one_is_condot():
    """Polynomial(1) coincides with CondOT on a grid (alpha, beta and both derivatives)."""
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    p, c = Polynomial(1.0), CondOT()
    for f in ("alpha", "beta", "d_alpha", "d_beta"):
        torch.testing.assert_close(getattr(p, f)(t), getattr(c, f)(t))


@pytest.mark.parametrize("cls", ALL)
def test_interpolate_and_velocity_match_the_coefficients(cls):
    """interpolate / velocity (overridden by CondOT for speed) equal alpha x1 + beta x0 and d_alpha x1 + d_beta x0."""
    s = cls()
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.rand(64, 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(s.interpolate(x0, x1, t), s.alpha(t) * x1 + s.beta(t) * x0)
    torch.testing.assert_close(s.velocity(x0, x1, t), s.d_alpha(t) * x1 + s.d_beta(t) * x0)


@pytest.mark.parametrize("schedule, kappa, rate", [
    (CondOT(), lambda t: t, lambda t: 1 / (1 - t)),
    (Polynomial(3.0), lambda t: t**3, lambda t: 3 * t**2 / (1 - t**3)),
])
def test_kappa_schedules(schedule, kappa, rate):
    """CondOT and Polynomial are KappaSchedules: alpha = kappa, beta = 1 - kappa, d_kappa by finite differences,
    rate = d_kappa / (1 - kappa) against its closed form below t = 1 and finite (guarded) at t = 1."""
    from fmlearn.schedules import T_EPS, KappaSchedule

    assert isinstance(schedule, KappaSchedule)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    torch.testing.assert_close(schedule.kappa(t), kappa(t))
    torch.testing.assert_close(schedule.alpha(t), kappa(t))
    torch.testing.assert_close(schedule.beta(t), 1 - kappa(t))
    h = 1e-6
    torch.testing.assert_close(schedule.d_kappa(t), (kappa(t + h) - kappa(t - h)) / (2 * h), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(schedule.rate(t), rate(t))
    at_one = schedule.rate(torch.tensor([1.0], dtype=torch.float64))
    assert torch.isfinite(at_one).all()
    torch.testing.assert_close(at_one, rate(torch.tensor([1 - T_EPS], dtype=torch.float64)))
