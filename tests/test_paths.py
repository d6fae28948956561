import pytest
import torch

from fmlearn import AffineGaussianPath, PathSample
from fmlearn.schedules import SCHEDULES

NAMES = sorted(SCHEDULES)


def pair(batch=32, dim=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g, dtype=dtype), 2 + torch.randn(batch, dim, generator=g, dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
def test_velocity_is_time_derivative(name):
    """conditional_velocity vs a central finite difference in t of x_t = alpha_t x1 + beta_t x0 (float64)."""
    path = AffineGaussianPath(name)
    x0, x1 = pair()
    t = torch.linspace(0.02, 0.98, x0.shape[0], dtype=torch.float64)
    h = 1e-6

    def xt(tt):
        return path.sample(x0, x1, tt).xt

    fd = (xt(t + h) - xt(t - h)) / (2 * h)
    torch.testing.assert_close(path.conditional_velocity(x0, x1, t), fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_xt_formula(name):
    """sample().xt vs alpha_t x1 + beta_t x0 assembled by hand from the schedule, per row of t."""
    path = AffineGaussianPath(name)
    x0, x1 = pair()
    t = torch.rand(x0.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s = path.schedule
    want = torch.stack([s.alpha(t[i]) * x1[i] + s.beta(t[i]) * x0[i] for i in range(len(t))])
    ps = path.sample(x0, x1, t)
    assert isinstance(ps, PathSample)
    torch.testing.assert_close(ps.xt, want)
    assert ps.t.shape == (x0.shape[0],) and torch.equal(ps.x0, x0) and torch.equal(ps.x1, x1)


@pytest.mark.parametrize("name", NAMES)
def test_endpoints(name):
    """x_t at t = 0 is x0 and at t = 1 is x1 (VP's t = 0 within its alpha_0 ~ 6.6e-3 times |x1|)."""
    path = AffineGaussianPath(name)
    x0, x1 = pair()
    tol0 = 1e-2 * float(x1.abs().max()) + 1e-4 if name == "vp" else 1e-12
    torch.testing.assert_close(path.sample(x0, x1, 0.0).xt, x0, rtol=0, atol=tol0)
    torch.testing.assert_close(path.sample(x0, x1, 1.0).xt, x1, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_ends(name, t, dtype):
    """xt and dxt are finite at t = 0 and t = 1 for every schedule (no division by beta_t)."""
    x0, x1 = pair(dtype=dtype)
    ps = AffineGaussianPath(name).sample(x0, x1, t)
    assert torch.isfinite(ps.xt).all() and torch.isfinite(ps.dxt).all()
    assert ps.xt.dtype == dtype


def test_float_and_tensor_time_agree():
    """A float t, a 0-d tensor, a (1,) tensor and a full (batch,) tensor give the same sample."""
    path = AffineGaussianPath("cosine")
    x0, x1 = pair(batch=5)
    ref = path.sample(x0, x1, 0.3).xt
    for t in (torch.tensor(0.3), torch.tensor([0.3]), torch.full((5,), 0.3)):
        torch.testing.assert_close(path.sample(x0, x1, t).xt, ref)


def test_image_shaped_data():
    """Data of shape (batch, c, h, w): x_t broadcasts t per sample, vs the flattened computation."""
    path = AffineGaussianPath("condot")
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    flat = path.sample(x0.flatten(1), x1.flatten(1), t).xt
    torch.testing.assert_close(path.sample(x0, x1, t).xt.flatten(1), flat)


@pytest.mark.parametrize("x0, x1, match", [
    (torch.zeros(4, 2), torch.zeros(4, 3), "x0 and x1"),
    (torch.zeros(4, 2), torch.zeros(5, 2), "x0 and x1"),
    (torch.zeros(4), torch.zeros(4), "x0 and x1"),
    (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2), "x0 must be finite"),
    (torch.zeros(1, 2), torch.tensor([[float("inf"), 0.0]]), "x1 must be finite"),
])
def test_bad_points_raise(x0, x1, match):
    """Shape mismatch and non-finite x0 / x1 raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        AffineGaussianPath().sample(x0, x1, 0.5)


@pytest.mark.parametrize("t, match", [
    (1.5, r"t must lie in \[0, 1\]"),
    (-0.1, r"t must lie in \[0, 1\]"),
    (torch.tensor([0.1, 0.2, 1.2, 0.5]), r"t must lie in \[0, 1\]"),
    (torch.tensor([0.1, float("nan"), 0.2, 0.5]), r"t must lie in \[0, 1\]"),
    (torch.zeros(3), r"t must be a float or a tensor of shape \(batch,\)"),
    (torch.zeros(4, 1), r"t must be a float or a tensor of shape \(batch,\)"),
])
def test_bad_time_raises(t, match):
    """t outside [0, 1] (float and tensor) or of the wrong shape raises ValueError naming t."""
    x0, x1 = pair(batch=4)
    with pytest.raises(ValueError, match=match):
        AffineGaussianPath().sample(x0, x1, t)


def test_unknown_schedule_raises():
    """An unknown schedule name raises ValueError quoting it."""
    with pytest.raises(ValueError, match="'warp'"):
        AffineGaussianPath("warp")


def test_every_path_follows_the_one_interface():
    """AffineGaussianPath and GeodesicPath are FlowPaths: a space, a default source and one sample method whose
    check=False gives the same PathSample family (fmlearn.paths.GeodesicPath still names the moved class)."""
    import fmlearn as fm
    from fmlearn.manifolds import GeodesicPath, Sphere
    from fmlearn.paths import ConditionalPath, FlowPath, FlowPathSample
    from fmlearn.paths import GeodesicPath as OldName

    assert OldName is GeodesicPath and fm.GeodesicPath is GeodesicPath
    sphere = Sphere()
    for path, x0, x1 in ((AffineGaussianPath("cosine"), *pair()),
                         (GeodesicPath(sphere), sphere.random_uniform(32, torch.Generator().manual_seed(0),
                                                                      dtype=torch.float64),
                          sphere.random_uniform(32, torch.Generator().manual_seed(1), dtype=torch.float64))):
        assert isinstance(path, FlowPath) and isinstance(path, ConditionalPath)
        t = torch.rand(32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        checked, unchecked = path.sample(x0, x1, t), path.sample(x0, x1, t, check=False)
        assert isinstance(checked, FlowPathSample) and isinstance(checked, PathSample)
        assert torch.equal(checked.xt, unchecked.xt) and torch.equal(checked.dxt, unchecked.dxt)
        assert torch.equal(path.sample_unchecked(x0, x1, t).dxt, checked.dxt)
        draw = path.sample_source((6, 3), torch.Generator().manual_seed(3))
        path.space.check_points("x0", draw)
    assert torch.equal(AffineGaussianPath().sample_source((6, 3), torch.Generator().manual_seed(3)),
                       torch.randn(6, 3, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="x1 must lie on the unit sphere"):
        GeodesicPath(sphere).sample(x0, 2 * x1, 0.5)
    with pytest.raises(ValueError, match=r"shape must be \(n, 3\) for points of S\^2, got \(6, 2\)"):
        GeodesicPath(sphere).sample_source((6, 2))
