"""The ellipsoid (issue 23, chapter 9): a surface without closed-form geodesics as a space of the one core, its
radial premetric and the premetric path of Chen & Lipman, each against a reference computed another way
(quadrature, finite differences, the sphere's closed forms, the path identity d(x_t, x1) = (1 - kappa_t) d(x0, x1))."""

import math

import pytest
import torch

import fmlearn as fm
from fmlearn.manifolds import (Ellipsoid, GeodesicPath, PathBankObjective, PremetricPath, ProjectedVelocity,
                               RadialImage, RadialPremetric, Sphere, VonMisesFisherMixture, descent_field)

D64 = torch.float64
AXES = (1.5, 1.0, 0.6)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _pairs(n=1000, seed=0, axes=AXES):
    ell = Ellipsoid(axes)
    g = _gen(seed)
    return ell, ell.random_uniform(n, generator=g, dtype=D64), ell.random_uniform(n, generator=g, dtype=D64)


# --- the surface -----------------------------------------------------------------------------------------------

def _parametric_grid(axes, n=400):
    """Midpoint quadrature of x(theta, phi) = s (sin th cos ph, sin th sin ph, cos th): points and area weights."""
    th = (torch.arange(n, dtype=D64) + 0.5) * math.pi / n
    ph = (torch.arange(2 * n, dtype=D64) + 0.5) * math.pi / n
    TH, PH = torch.meshgrid(th, ph, indexing="ij")
    s = torch.tensor(axes, dtype=D64)
    x = s * torch.stack([TH.sin() * PH.cos(), TH.sin() * PH.sin(), TH.cos()], -1)
    dth = s * torch.stack([TH.cos() * PH.cos(), TH.cos() * PH.sin(), -TH.sin()], -1)
    dph = s * torch.stack([-TH.sin() * PH.sin(), TH.sin() * PH.cos(), torch.zeros_like(TH)], -1)
    w = torch.linalg.cross(dth, dph).norm(dim=-1) * (math.pi / n) ** 2
    return x.reshape(-1, 3), w.reshape(-1)


def test_area_matches_quadrature_and_the_sphere():
    _, w = _parametric_grid(AXES)
    assert math.isclose(Ellipsoid(AXES).log_volume(), math.log(float(w.sum())), abs_tol=1e-5)
    assert math.isclose(Ellipsoid((1, 1, 1)).log_volume(), math.log(4 * math.pi), rel_tol=1e-12)


def test_uniform_draw_is_uniform_in_area():
    """E[x_3^2] and E[x_1^2] of the rejection sampler against the area-weighted quadrature, within 4 standard errors."""
    ell = Ellipsoid(AXES)
    x = ell.random_uniform(200_000, generator=_gen(1), dtype=D64)
    pts, w = _parametric_grid(AXES)
    assert (ell.gauge(x) - 1).abs().max() < 1e-12
    for i in (0, 2):
        exact = float((pts[:, i] ** 2 * w).sum() / w.sum())
        se = float((x[:, i] ** 2).std()) / math.sqrt(x.shape[0])
        assert abs(float((x[:, i] ** 2).mean()) - exact) < 4 * se
    # the unweighted image s * p of uniform p is not uniform: the same test rejects it
    p = Sphere().random_uniform(200_000, generator=_gen(2), dtype=D64)
    y = torch.tensor(AXES, dtype=D64) * p
    exact = float((pts[:, 2] ** 2 * w).sum() / w.sum())
    assert abs(float((y[:, 2] ** 2).mean()) - exact) > 10 * float((y[:, 2] ** 2).std()) / math.sqrt(y.shape[0])


def test_retraction_step_and_radial_maps():
    ell, x, _ = _pairs()
    y = 3 * torch.randn(500, 3, generator=_gen(3), dtype=D64)
    r = ell.retract(y)
    assert (ell.gauge(r) - 1).abs().max() < 1e-14
    assert torch.allclose(ell.to_sphere(r), ell.to_sphere(y), atol=1e-14)  # on the same ray
    assert torch.allclose(ell.retract(x), x, atol=1e-14)  # fixes the surface
    assert torch.allclose(ell.from_sphere(ell.to_sphere(x)), x, atol=1e-14)
    dx = 0.3 * torch.randn(1000, 3, generator=_gen(4), dtype=D64)
    assert (ell.gauge(ell.step(x, dx)) - 1).abs().max() < 1e-14


def test_normal_and_tangent_projection():
    ell, x, _ = _pairs()
    n = ell.normal(x)
    s2 = torch.tensor(AXES, dtype=D64) ** 2
    assert torch.allclose(n, (2 * x / s2) / (2 * x / s2).norm(dim=1, keepdim=True), atol=1e-14)  # grad F / |grad F|
    v = torch.randn(1000, 3, generator=_gen(5), dtype=D64)
    pv = ell.proj(x, v)
    assert (pv * n).sum(1).abs().max() < 1e-14
    assert torch.allclose(ell.proj(x, pv), pv, atol=1e-14)
    # a tangent vector is the velocity of a curve on the surface: (retract(x + h v) - x) / h -> v
    h = 1e-6
    assert ((ell.retract(x + h * pv) - ell.retract(x - h * pv)) / (2 * h) - pv).abs().max() < 1e-8
    unit, sphere = Ellipsoid((1, 1, 1)), Sphere()
    p = sphere.random_uniform(100, generator=_gen(6), dtype=D64)
    assert torch.allclose(unit.proj(p, v[:100]), sphere.proj(p, v[:100]), atol=1e-14)


def test_projected_velocity_samples_stay_on_the_surface():
    ell = Ellipsoid(AXES)
    torch.manual_seed(0)
    model = ProjectedVelocity(ell, fm.MLP(3, hidden=16, depth=2))
    x0 = ell.random_uniform(200, generator=_gen(7))
    x = fm.sample(model, x0, steps=8, method="rk4").x
    assert (ell.gauge(x.double()) - 1).abs().max() < 1e-5
    assert (model(x0, 0.3) * ell.normal(x0)).sum(1).abs().max() < 1e-5


def test_sampling_refuses_start_points_off_the_surface():
    """The ellipsoid has no exp or log (it is not a fmlearn.spaces.Manifold), yet fm.sample checks its start
    points as on the sphere: points off it would be retracted after the first step, a plausible wrong answer."""
    ell = Ellipsoid(AXES)
    x0 = ell.random_uniform(50, generator=_gen(3))
    for model, space in ((ProjectedVelocity(ell, fm.MLP(3, hidden=16, depth=2)), None),
                         (fm.MLP(3, hidden=16, depth=2), ell)):
        with pytest.raises(ValueError, match="x0 must lie on the ellipsoid"):
            fm.sample(model, 1.1 * x0, steps=4, space=space)
        assert fm.sample(model, x0, steps=4, space=space).x.shape == (50, 3)


def test_equality_and_the_geodesic_refusal():
    assert Ellipsoid(AXES) == Ellipsoid(list(AXES)) and hash(Ellipsoid(AXES)) == hash(Ellipsoid(AXES))
    assert Ellipsoid(AXES) != Ellipsoid((1.5, 1.0, 0.7)) and Ellipsoid((1, 1, 1)) != Sphere()
    ell, x, y = _pairs(10)
    with pytest.raises(NotImplementedError, match="no closed-form geodesics"):
        ell.geodesic(x, y, 0.5)
    with pytest.raises(TypeError, match="manifold"):
        GeodesicPath(ell)


# --- the premetric -----------------------------------------------------------------------------------------------

def test_radial_premetric_is_valid():
    ell, x, y = _pairs()
    pm = RadialPremetric(ell)
    d, g = pm.value_and_grad(x, y)
    assert torch.allclose(d, pm(x, y), atol=1e-12) and torch.allclose(d, pm(y, x), atol=1e-12)
    assert pm(x, x).abs().max() == 0 and d.min() > 0
    p, q = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    assert torch.allclose(d, torch.arccos((p * q).sum(1).clamp(-1, 1)), atol=1e-7)  # the angle from the centre
    assert (g * ell.normal(x)).sum(1).abs().max() < 1e-14  # tangent
    v = ell.proj(x, torch.randn(1000, 3, generator=_gen(8), dtype=D64))
    h = 1e-6
    fd = (pm(ell.retract(x + h * v), y) - pm(ell.retract(x - h * v), y)) / (2 * h)
    assert ((g * v).sum(1) - fd).abs().max() < 1e-7
    bound = (ell.normal(x) * ell.to_sphere(x)).sum(1) / x.norm(dim=1)
    assert bound.min() > 0 and (g.norm(dim=1) >= bound * (1 - 1e-12)).all()


def test_descent_field_vanishes_at_the_target_and_shrinks_d_at_unit_rate():
    ell, x, y = _pairs()
    pm = RadialPremetric(ell)
    assert descent_field(pm, y, y).abs().max() < 1e-12
    d, g = pm.value_and_grad(x, y)
    assert torch.allclose((g * descent_field(pm, x, y)).sum(1), -d, atol=1e-12)  # <grad d, V> = -d


# --- the path ----------------------------------------------------------------------------------------------------

def test_path_identity_order_and_end_points():
    ell, x0, _ = _pairs(1000, seed=9)
    x1 = RadialImage(ell, VonMisesFisherMixture.tetrahedron(50.0)).sample(1000, generator=_gen(10), dtype=D64)
    pm = RadialPremetric(ell)
    t = torch.rand(1000, generator=_gen(11), dtype=D64) * 0.999
    d0 = pm(x0, x1)
    errs = []
    for max_step, min_steps in ((0.25, 4), (0.125, 8)):
        ps = PremetricPath(pm, max_step=max_step, min_steps=min_steps).sample(x0, x1, t)
        assert (ell.gauge(ps.xt) - 1).abs().max() < 1e-13
        errs.append((pm(ps.xt, x1) - (1 - t) * d0).abs())
    assert errs[1].max() < 1e-3 and errs[0].median() / errs[1].median() > 10  # rk4: 16 for order 4
    assert torch.allclose(PremetricPath(pm).sample(x0, x1, 0.0).xt, x0, rtol=0, atol=1e-15)


def test_path_velocity_is_the_time_derivative_and_other_schedules_keep_the_pace():
    ell, x0, x1 = _pairs(300, seed=12)
    pm = RadialPremetric(ell)
    path = PremetricPath(pm, max_step=0.02, min_steps=32)
    h = 1e-4
    ps = path.sample(x0, x1, 0.4)
    fd = (path.sample(x0, x1, 0.4 + h).xt - path.sample(x0, x1, 0.4 - h).xt) / (2 * h)
    assert (ps.dxt - fd).abs().max() < 2e-4 and (ps.dxt - fd).abs().median() < 1e-7
    poly = PremetricPath(pm, "polynomial")
    t = torch.full((300,), 0.3, dtype=D64)
    kappa = float(poly.schedule.kappa(t)[0])
    assert (pm(poly.sample(x0, x1, t).xt, x1) - (1 - kappa) * pm(x0, x1)).abs().median() < 1e-5


def test_premetric_path_on_the_unit_sphere_is_the_geodesic_path():
    sphere = Sphere()
    g = _gen(13)
    x0, x1 = sphere.random_uniform(500, generator=g, dtype=D64), sphere.random_uniform(500, generator=g, dtype=D64)
    t = torch.rand(500, generator=g, dtype=D64) * 0.99
    pm_path = PremetricPath(RadialPremetric(Ellipsoid((1, 1, 1))), max_step=0.05, min_steps=16).sample(x0, x1, t)
    geo = GeodesicPath(sphere).sample(x0, x1, t)
    assert (pm_path.xt - geo.xt).abs().max() < 1e-6 and (pm_path.dxt - geo.dxt).abs().max() < 1e-5


def test_bank_objective_trains_through_fm_train():
    ell = Ellipsoid(AXES)
    target = RadialImage(ell, VonMisesFisherMixture.tetrahedron(50.0))
    bank = PathBankObjective(PremetricPath(RadialPremetric(ell), max_step=0.5), target, size=4096, generator=_gen(14))
    d0 = RadialPremetric(ell)(bank.bank.x0.double(), bank.bank.x1.double())
    dt = RadialPremetric(ell)(bank.bank.xt.double(), bank.bank.x1.double())
    assert (dt - (1 - bank.bank.t.double()) * d0).abs().max() < 5e-2
    batch = bank.draw(64, _gen(15), "cpu")
    assert batch.xt.shape == (64, 3) and batch.dxt.dtype == torch.float32
    torch.manual_seed(0)
    model = ProjectedVelocity(ell, fm.MLP(3, hidden=32, depth=2))
    run = fm.train(model, bank, steps=300, batch_size=128, lr=3e-3, seed=0, progress=False)
    assert run.losses[-50:].mean() < 0.95 * run.losses[:50].mean()  # the conditional loss has a high floor


# --- careless input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("axes, exc, name", [((1.0, 2.0), ValueError, "axes"), ("abc", ValueError, "axes"),
                                             ((1.0, -1.0, 1.0), ValueError, r"axes\[1\]"),
                                             ((1.0, 1.0, float("nan")), ValueError, r"axes\[2\]"),
                                             ((1.0, "2", 1.0), TypeError, r"axes\[1\]")])
def test_bad_axes_are_refused_by_name(axes, exc, name):
    with pytest.raises(exc, match=name):
        Ellipsoid(axes)


def test_bad_inputs_name_the_argument():
    ell, x0, x1 = _pairs(20)
    path = PremetricPath(RadialPremetric(ell))
    with pytest.raises(ValueError, match="x0 must lie on the ellipsoid"):
        path.sample(2 * x0, x1, 0.5)
    with pytest.raises(ValueError, match="x1 must lie on the ellipsoid"):
        path.sample(x0, x1 * 1.01, 0.5)
    with pytest.raises(ValueError, match="t must be below 1"):
        path.sample(x0, x1, 1.0)
    with pytest.raises(ValueError, match="t must lie in"):
        path.sample(x0, x1, 1.5)
    with pytest.raises(ValueError, match="x0 must be finite"):
        path.sample(torch.full_like(x0, float("nan")), x1, 0.5)
    with pytest.raises(TypeError, match="space must be a star-shaped surface"):
        RadialPremetric(Sphere())
    with pytest.raises(TypeError, match="premetric must be"):
        PremetricPath(lambda x, y: (x - y).norm(dim=1))
    with pytest.raises(ValueError, match="max_step"):
        PremetricPath(RadialPremetric(ell), max_step=0.0)
    with pytest.raises(TypeError, match="min_steps"):
        PremetricPath(RadialPremetric(ell), min_steps=2.5)
    with pytest.raises(TypeError, match="schedule must be a convex schedule"):
        PremetricPath(RadialPremetric(ell), "vp")
    with pytest.raises(ValueError, match="size"):
        PathBankObjective(path, RadialImage(ell, VonMisesFisherMixture.tetrahedron(50.0)), size=0)
    with pytest.raises(TypeError, match="data must have a sample"):
        PathBankObjective(path, object(), size=8)
    with pytest.raises(TypeError, match="space must be a fmlearn.manifolds.Ellipsoid"):
        RadialImage(Sphere(), VonMisesFisherMixture.tetrahedron(50.0))
    with pytest.raises(ValueError, match="p must be points of the unit sphere"):
        ell.from_sphere(torch.ones(4, 2))
    with pytest.raises(ValueError, match="sigma must be finite"):
        path.flow(x0, x1, torch.full((20, 1), float("inf"), dtype=D64))
