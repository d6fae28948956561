"""Riemannian flow matching (issue 13): the sphere and the flat torus as spaces of the one core, their targets,
the geodesic path and the likelihood on a manifold, each against a reference computed another way (closed
forms, spherical coordinates, quadrature, finite differences)."""

import math

import numpy as np
import pytest
import torch

import fmlearn as fm
from fmlearn.likelihood import divergence_exact, divergence_hutchinson, log_likelihood
from fmlearn.manifolds import (CompactManifold, FlatTorus, ProjectedVelocity, Sphere, Uniform, VonMisesFisherMixture,
                               WrappedNormalMixture, vmf_entropy)
from fmlearn.paths import AffineGaussianPath, GeodesicPath, geodesic
from fmlearn.spaces import Euclidean

D64 = torch.float64
OMEGA = torch.tensor([[0.0, -1.0, 0.5], [1.0, 0.0, -2.0], [-0.5, 2.0, 0.0]], dtype=D64)  # skew: a rotation field


def _on_sphere(n, seed, dim=3):
    z = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=D64)
    return z / z.norm(dim=1, keepdim=True)


def _angles(n, seed, dim=2):
    return 2 * math.pi * torch.rand(n, dim, generator=torch.Generator().manual_seed(seed), dtype=D64)


class _ExpLogOnly(Sphere):
    """A sphere without its closed-form geodesic: the base class's construction from exp and log alone."""

    geodesic = CompactManifold.geodesic


# --- maps ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [2, 3, 5])
def test_sphere_exp_log_round_trip(dim):
    """exp(x, log(x, y)) = y and |log(x, y)| = dist(x, y) = arccos <x, y>, including y = x and y = -x (no NaN)."""
    sphere = Sphere(dim)
    x, y = _on_sphere(64, 1, dim), _on_sphere(64, 2, dim)
    y[0], y[1] = x[0], -x[1]
    y[2] = -x[2] + 1e-9 * sphere.proj(x[2:3], _on_sphere(1, 3, dim))[0]
    y[2] = y[2] / y[2].norm()
    v = sphere.log(x, y)
    assert torch.isfinite(v).all() and torch.isfinite(sphere.dist(x, y)).all()
    torch.testing.assert_close(sphere.exp(x, v), y, atol=1e-7, rtol=0)
    torch.testing.assert_close(v.norm(dim=1), sphere.dist(x, y))
    torch.testing.assert_close(sphere.dist(x, y), torch.arccos((x * y).sum(1).clamp(-1, 1)), atol=1e-7, rtol=0)
    assert float(sphere.dist(x[:1], x[:1])) == 0.0
    assert float((x * v).sum(1).abs().max()) < 1e-12  # tangent at x


def test_torus_exp_log_round_trip_and_seam():
    """The wrapped difference takes the short way across the seam: log(0.1, 2 pi - 0.1) = -0.2."""
    torus = FlatTorus(3)
    x, y = _angles(50, 4, 3), _angles(50, 5, 3)
    v = torus.log(x, y)
    assert float(v.abs().max()) <= math.pi
    torch.testing.assert_close(torus.log(y, torus.exp(x, v)), torch.zeros_like(v), atol=1e-12, rtol=0)
    seam = torus.log(torch.tensor([[0.1]], dtype=D64), torch.tensor([[2 * math.pi - 0.1]], dtype=D64))
    assert float(seam) == pytest.approx(-0.2, abs=1e-12)
    brute = torch.tensor([[math.sqrt(sum(min(abs(a - b), 2 * math.pi - abs(a - b)) ** 2 for a, b in zip(p, q)))
                           for q in y[:7].tolist()] for p in x[:5].tolist()], dtype=D64)
    torch.testing.assert_close(torus.cdist(x[:5], y[:7]), brute)
    assert torus.wrap(torch.tensor([-1e-9], dtype=torch.float32)).item() < 2 * math.pi


def test_slerp_is_exp_of_t_log_and_its_velocity_is_the_derivative():
    """Sphere.geodesic against the textbook slerp sin((1-s) theta)/sin theta x0 + sin(s theta)/sin theta x1, and
    its velocity against central finite differences; the exp/log-only formula agrees, ends included."""
    sphere = Sphere()
    x0, x1 = _on_sphere(40, 6), _on_sphere(40, 7)
    theta = torch.arccos((x0 * x1).sum(1, keepdim=True))
    for s in (0.0, 0.3, 0.5, 0.9, 1.0):
        slerp = (torch.sin((1 - s) * theta) * x0 + torch.sin(s * theta) * x1) / torch.sin(theta)
        xs, vs = sphere.geodesic(x0, x1, s)
        torch.testing.assert_close(xs, slerp)
        torch.testing.assert_close(xs, sphere.exp(x0, s * sphere.log(x0, x1)))
        h = 1e-6
        fd = (sphere.geodesic(x0, x1, s + h)[0] - sphere.geodesic(x0, x1, s - h)[0]) / (2 * h)
        torch.testing.assert_close(vs, fd, atol=1e-8, rtol=0)
        gs, gv = geodesic(_ExpLogOnly(), x0, x1, s)
        torch.testing.assert_close(gs, xs)
        torch.testing.assert_close(gv, vs, atol=1e-9, rtol=0)
    torch.testing.assert_close(sphere.geodesic(x0, x1, 1.0)[0], x1)


def test_geodesic_path_in_euclidean_space_is_condot():
    g = torch.Generator().manual_seed(8)
    x0, x1, t = torch.randn(32, 3, generator=g, dtype=D64), torch.randn(32, 3, generator=g, dtype=D64), \
        torch.rand(32, generator=g, dtype=D64)
    t[:2] = torch.tensor([0.0, 1.0], dtype=D64)
    ours, ref = GeodesicPath(Euclidean()).sample(x0, x1, t), AffineGaussianPath("condot").sample(x0, x1, t)
    torch.testing.assert_close(ours.xt, ref.xt)
    torch.testing.assert_close(ours.dxt, ref.dxt)


def test_geodesic_path_on_sphere_and_torus():
    """x_t on the manifold, x_0 = x0, x_1 = x1, speed = dist(x0, x1) (kappa_t = t) for every t."""
    for space, x0, x1 in ((Sphere(), _on_sphere(30, 9), _on_sphere(30, 10)),
                          (FlatTorus(2), _angles(30, 9), _angles(30, 10))):
        path = GeodesicPath(space)
        for t in (0.0, 0.25, 1.0):
            ps = path.sample(x0, x1, t)
            space.check_points("xt", ps.xt, tol=1e-12)
            torch.testing.assert_close(ps.dxt.norm(dim=1), space.dist(x0, x1))
        torch.testing.assert_close(path.sample(x0, x1, 0.0).xt, x0)
        torch.testing.assert_close(space.dist(path.sample(x0, x1, 1.0).xt, x1), torch.zeros(30, dtype=D64),
                                   atol=1e-12, rtol=0)


# --- the divergence contract -------------------------------------------------------------------------------------

def _proj_unnormalised(x, v):
    return v - (x * v).sum(-1, keepdim=True) * x


def test_divergence_of_a_rotation_is_zero():
    x = _on_sphere(20, 11)
    _, div = divergence_exact(lambda y, t: y @ OMEGA.T, x, 0.3, space=Sphere())
    assert float(div.abs().max()) < 1e-12


def test_divergence_of_the_projected_constant_field():
    """u = P(x) e_z has intrinsic divergence -2 z on S^2. The ambient trace gets it with P = I - x x^T / |x|^2
    (the sphere's proj), and is off by -2 x . e_z = -2 z with I - x x^T; the tangent trace is right for both."""
    x, sphere = _on_sphere(25, 12), Sphere()
    e = torch.tensor([0.0, 0.0, 1.0], dtype=D64).expand(25, 3)
    z = x[:, 2]
    for proj in (sphere.proj, _proj_unnormalised):
        _, div = divergence_exact(lambda y, t: proj(y, e), x, 0.0, space=sphere)
        torch.testing.assert_close(div, -2 * z, atol=1e-12, rtol=0)
    _, ambient = divergence_exact(lambda y, t: sphere.proj(y, e), x, 0.0)
    torch.testing.assert_close(ambient, -2 * z, atol=1e-12, rtol=0)
    _, wrong = divergence_exact(lambda y, t: _proj_unnormalised(y, e), x, 0.0)
    torch.testing.assert_close(wrong - (-2 * z), -2 * z, atol=1e-12, rtol=0)


def _intrinsic_divergence(field, x, t):
    """div u in spherical coordinates (theta polar, phi azimuth), sqrt(g) = sin theta:
    (1 / sin theta) [d_theta(sin theta u^theta) + d_phi(sin theta u^phi)], with the coordinate components
    u^theta = u . d_theta x and u^phi = u . d_phi x / sin^2 theta, by autograd in (theta, phi)."""
    theta = torch.arccos(x[:, 2].clamp(-1, 1)).requires_grad_(True)
    phi = torch.atan2(x[:, 1], x[:, 0]).requires_grad_(True)
    st, ct, sp, cp = torch.sin(theta), torch.cos(theta), torch.sin(phi), torch.cos(phi)
    pos = torch.stack([st * cp, st * sp, ct], 1)
    d_theta = torch.stack([ct * cp, ct * sp, -st], 1)
    d_phi = torch.stack([-st * sp, st * cp, torch.zeros_like(st)], 1)
    u = field(pos, t)
    a = st * (u * d_theta).sum(1)  # sqrt(g) u^theta
    b = st * (u * d_phi).sum(1) / st**2  # sqrt(g) u^phi
    da = torch.autograd.grad(a.sum(), theta, retain_graph=True)[0]
    db = torch.autograd.grad(b.sum(), phi)[0]
    return ((da + db) / st).detach()


def test_divergence_of_a_network_against_spherical_coordinates():
    torch.manual_seed(0)
    model = ProjectedVelocity(Sphere(), fm.MLP(3, hidden=32, depth=2)).double()
    x = _on_sphere(30, 13)
    x = x[x[:, 2].abs() < 0.95]  # away from the coordinate poles
    want = _intrinsic_divergence(model, x, 0.4)
    _, tangent = divergence_exact(model, x, 0.4, space=Sphere())
    _, ambient = divergence_exact(model, x, 0.4)
    torch.testing.assert_close(tangent, want, atol=1e-8, rtol=0)
    torch.testing.assert_close(ambient, want, atol=1e-8, rtol=0)
    _, loop = divergence_exact(model, x, 0.4, space=Sphere(), impl="loop")
    torch.testing.assert_close(loop, want, atol=1e-8, rtol=0)


def test_hutchinson_on_the_sphere_projects_its_probes():
    """The basis vectors as 3 probes give 3 x the mean of (P e_i)^T J (P e_i): the exact tangent trace; and many
    random probes average to it (unbiased)."""
    torch.manual_seed(1)
    model = ProjectedVelocity(Sphere(), fm.MLP(3, hidden=32, depth=2)).double()
    x = _on_sphere(6, 14)
    _, exact = divergence_exact(model, x, 0.6, space=Sphere())
    basis = torch.eye(3, dtype=D64)[:, None, :].expand(3, 6, 3)
    _, h = divergence_hutchinson(model, x, 0.6, probes=3, noise=basis, space=Sphere())
    torch.testing.assert_close(3 * h, exact, atol=1e-12, rtol=0)
    _, many = divergence_hutchinson(model, x, 0.6, probes=4000, kind="gaussian", space=Sphere(),
                                    generator=torch.Generator().manual_seed(2))
    assert float((many - exact).abs().max()) < 0.1 * (1 + float(exact.abs().max()))


def test_euclidean_space_argument_changes_nothing():
    torch.manual_seed(3)
    model = fm.MLP(2, hidden=32, depth=2)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(log_likelihood(model, x, steps=4), log_likelihood(model, x, steps=4, space=Euclidean()))
    assert torch.equal(divergence_exact(model, x, 0.5)[1], divergence_exact(model, x, 0.5, space=Euclidean())[1])


# --- the likelihood of known flows ---------------------------------------------------------------------------

def test_a_rotation_preserves_the_uniform_density():
    x = _on_sphere(40, 15)
    log_q = log_likelihood(lambda y, t: y @ OMEGA.T, x, steps=16, space=Sphere())
    torch.testing.assert_close(log_q, torch.full((40,), -math.log(4 * math.pi), dtype=D64), atol=1e-10, rtol=0)


def test_likelihood_of_the_flow_towards_the_pole():
    """u = c P(x) e_z moves z by dz/dt = c (1 - z^2), z_1 = tanh(c + atanh z_0), azimuth fixed. z is uniform on
    [-1, 1] under the uniform density on S^2 (Archimedes), so the flow's density at t = 1 is
    (1 / 4 pi) (1 - z_0^2) / (1 - z_1^2), with z_0 = tanh(atanh z_1 - c)."""
    c, sphere = 0.8, Sphere()
    e = torch.tensor([0.0, 0.0, 1.0], dtype=D64)
    x = _on_sphere(50, 16)
    x = x[x[:, 2].abs() < 0.97]
    log_q = log_likelihood(lambda y, t: c * sphere.proj(y, e.expand_as(y)), x, steps=64, space=sphere)
    z1 = x[:, 2]
    z0 = torch.tanh(torch.atanh(z1) - c)
    want = -math.log(4 * math.pi) + torch.log((1 - z0**2) / (1 - z1**2))
    torch.testing.assert_close(log_q, want, atol=1e-7, rtol=0)
    log_h = log_likelihood(lambda y, t: c * sphere.proj(y, e.expand_as(y)), x, steps=16, space=sphere,
                           divergence="hutchinson", probes=50, generator=torch.Generator().manual_seed(0))
    assert float((log_h - want).mean().abs()) < 0.05


def test_likelihood_on_the_circle_wraps():
    """dx/dt = c sin x on T^1: tan(x_1 / 2) = e^c tan(x_0 / 2), and p_1(x_1) = (1 / 2 pi) sin x_0 / sin x_1
    (1-D change of variables, dx_1/dx_0 = u(x_1) / u(x_0)); points on both sides of the seam."""
    c, torus = 0.7, FlatTorus(1)
    x = torch.tensor([[0.3], [1.2], [2.0], [4.0], [5.5], [6.2]], dtype=D64)
    log_q = log_likelihood(lambda y, t: c * torch.sin(y), x, steps=64, space=torus)
    x0 = torus.wrap(2 * torch.atan(torch.tan(x / 2) * math.exp(-c)))
    want = -math.log(2 * math.pi) + torch.log(torch.sin(x0) / torch.sin(x)).squeeze(1)
    torch.testing.assert_close(log_q, want, atol=1e-7, rtol=0)


# --- targets ---------------------------------------------------------------------------------------------------

def test_vmf_mixture_density_integrates_to_one():
    """Gauss-Legendre in w = cos(theta) (400 nodes, near-exact for these smooth bumps) times 800 equal azimuths;
    the area element is dw dphi."""
    target = VonMisesFisherMixture.tetrahedron(50.0)
    w, weights = np.polynomial.legendre.leggauss(400)
    phi = torch.arange(800, dtype=D64) * 2 * math.pi / 800
    w, weights = torch.tensor(w), torch.tensor(weights)
    r = torch.sqrt(1 - w**2)
    pts = torch.stack([r[:, None] * torch.cos(phi), r[:, None] * torch.sin(phi), w[:, None].expand(-1, 800)], -1)
    dens = target.log_prob(pts.reshape(-1, 3)).exp().reshape(400, 800)
    assert float((dens * weights[:, None]).sum() * 2 * math.pi / 800) == pytest.approx(1.0, abs=1e-8)


def test_vmf_entropy_closed_form_and_monte_carlo():
    assert vmf_entropy(50.0) == pytest.approx(-1.074, abs=5e-4)
    one = VonMisesFisherMixture([[0.0, 0.0, 1.0]], 50.0)
    h, se = one.entropy_mc(200_000, generator=torch.Generator().manual_seed(0))
    assert abs(h - vmf_entropy(50.0)) < min(0.01, 4 * se)
    x = one.sample(100_000, generator=torch.Generator().manual_seed(1)).double()
    Sphere().check_points("x", x, tol=1e-6)
    assert float(x[:, 2].mean()) == pytest.approx(1 / math.tanh(50.0) - 1 / 50.0, abs=4 * float(x[:, 2].std()) / 316)


def test_vmf_mixture_modes_and_shares():
    target = VonMisesFisherMixture.tetrahedron(50.0)
    x = target.sample(20_000, generator=torch.Generator().manual_seed(2))
    assert target.fraction_near_modes(x, 0.5) == pytest.approx(1 - math.exp(-50 * (1 - math.cos(0.5))), abs=0.003)
    assert float((target.mode_fractions(x) - 0.25).abs().max()) < 0.015
    uniform = Sphere().random_uniform(20_000, generator=torch.Generator().manual_seed(3))
    assert target.fraction_near_modes(uniform, 0.5) < 0.3  # the check a uniform model fails


def test_wrapped_normal_density_integrates_to_one_and_product_entropy():
    target = WrappedNormalMixture([[0.0, 1.5], [2.0, 4.5], [3.5, 1.0], [4.5, 3.5]], 0.4)
    n = 400
    g = (torch.arange(n, dtype=D64) + 0.5) * 2 * math.pi / n
    pts = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    assert float(target.log_prob(pts).exp().sum() * (2 * math.pi / n) ** 2) == pytest.approx(1.0, abs=1e-10)
    one = WrappedNormalMixture.product([0.0, math.pi], 0.5, 1)
    dens = one.log_prob(g[:, None]).exp()
    h1 = float(-(dens * dens.log()).sum() * 2 * math.pi / n)
    three = WrappedNormalMixture.product([0.0, math.pi], 0.5, 3)
    h3, se = three.entropy_mc(100_000, generator=torch.Generator().manual_seed(4))
    assert three.n_components == 8 and abs(h3 - 3 * h1) < 4 * se
    x = three.sample(1000, generator=torch.Generator().manual_seed(5))
    FlatTorus(3).check_points("x", x, tol=0.0)


# --- the core: training and sampling on the manifold ---------------------------------------------------------

def test_training_and_sampling_stay_on_the_sphere():
    """A few steps of the one training loop with the geodesic path, then the solver core with the sphere's step."""
    sphere, target = Sphere(), VonMisesFisherMixture.tetrahedron(50.0)
    fm.seed_everything(0)
    model = ProjectedVelocity(sphere, fm.MLP(3, hidden=32, depth=2))
    objective = fm.CFMObjective(GeodesicPath(sphere), target, source=Uniform(sphere))
    run = fm.train(model, objective, steps=30, batch_size=64, progress=False)
    assert np.isfinite(run.losses).all()
    x = fm.sample(model, sphere.random_uniform(200, generator=torch.Generator().manual_seed(0)), steps=20,
                  method="rk4", space=sphere).x
    assert float((x.norm(dim=1) - 1).abs().max()) < 1e-4
    log_q = log_likelihood(model, x.double(), steps=4, space=sphere)
    assert torch.isfinite(log_q).all()


def test_torus_model_is_periodic():
    torch.manual_seed(2)
    torus = FlatTorus(2)
    model = ProjectedVelocity(torus, fm.MLP(4, hidden=16, depth=2)).double()
    x = _angles(10, 17)
    torch.testing.assert_close(model(x, 0.3), model(x + 2 * math.pi, 0.3))


# --- bad input -----------------------------------------------------------------------------------------------

def test_bad_input_names_the_argument():
    sphere = Sphere()
    with pytest.raises(ValueError, match=r"x must lie on the unit sphere .*0.0001"):
        log_likelihood(lambda y, t: y, 2 * _on_sphere(3, 0), space=sphere)
    with pytest.raises(ValueError, match=r"x0 must be points of S\^2, a tensor of shape \(batch, 3\).*\(4, 4\)"):
        GeodesicPath(sphere).sample(_on_sphere(4, 0, 4), _on_sphere(4, 1, 4), 0.5)
    with pytest.raises(ValueError, match="x1 must lie on the unit sphere"):
        GeodesicPath(sphere).sample(_on_sphere(4, 0), 1.1 * _on_sphere(4, 1), 0.5)
    with pytest.raises(ValueError, match=r"v must be tangent .* project it"):
        sphere.check_tangent("v", _on_sphere(2, 0), _on_sphere(2, 0))
    with pytest.raises(ValueError, match=r"kappa must be a positive number .* got \[0.0\]"):
        VonMisesFisherMixture([[0.0, 0, 1]], 0.0)
    with pytest.raises(ValueError, match=r"kappa must be .* got \[-1.0, -1.0\]"):
        VonMisesFisherMixture([[0.0, 0, 1], [1, 0, 0]], -1.0)
    with pytest.raises(ValueError, match=r"means must have shape \(K, 3\)"):
        VonMisesFisherMixture([[0.0, 1]], 5.0)
    with pytest.raises(ValueError, match=r"x must be points of S\^2, .* got shape \(2, 4\)"):
        VonMisesFisherMixture.tetrahedron().log_prob(_on_sphere(2, 0, 4))
    with pytest.raises(ValueError, match=r"x must hold angles in \[0, 2 pi\).*wrap"):
        WrappedNormalMixture([[1.0, 2.0]], 0.3).log_prob(torch.tensor([[7.0, 1.0]]))
    with pytest.raises(ValueError, match="stds must be positive"):
        WrappedNormalMixture([[1.0, 2.0]], 0.0)
    with pytest.raises(ValueError, match=r"dim must be the ambient dimension, at least 2"):
        Sphere(1)
    with pytest.raises(ValueError, match=r"net must act on the embedded points, of dimension space.embed_dim = 4"):
        ProjectedVelocity(FlatTorus(2), fm.MLP(2))
    with pytest.raises(TypeError, match="schedule must be a convex schedule"):
        GeodesicPath(sphere, "vp")
    with pytest.raises(TypeError, match="space must be a manifold .* lacks .*exp, log"):
        GeodesicPath(object())
    with pytest.raises(TypeError, match="space must be a space with step"):
        divergence_exact(lambda y, t: y, _on_sphere(2, 0), 0.0, space=object())


def test_metrics_take_the_torus():
    """The two-sample metrics under the torus's distance: the energy distance written out with the wrapped distances,
    and two sets that differ only by crossing the seam are close on the torus and far apart in R^2."""
    torus = FlatTorus(2)
    x, y = _angles(9, 18), _angles(11, 19)
    d = torus.cdist
    want = 2 * d(x, y).mean() - d(x, x).mean() - d(y, y).mean()
    assert fm.energy_distance(x, y, space=torus) == pytest.approx(float(want), abs=1e-12)
    left = torch.tensor([[0.05, 1.0], [0.1, 2.0], [0.02, 3.0]], dtype=D64)
    right = torus.wrap(left - torch.tensor([0.1, 0.0], dtype=D64))
    assert fm.w2_distance(left, right, space=torus) < 0.11 < 5.0 < fm.w2_distance(left, right)


# --- declared contracts (issue 21): a path's default source, a model's own space ------------------------------

_TARGETS = {"sphere": (Sphere(), VonMisesFisherMixture.tetrahedron(50.0)),
            "torus": (FlatTorus(2), WrappedNormalMixture([[0.0, 1.5], [3.5, 1.0]], 0.4))}


@pytest.mark.parametrize("where", sorted(_TARGETS))
def test_geodesic_objective_without_source_trains_on_the_uniform_source(where):
    """Chapter 9's recipe with source= left out: the batches are those of source=Uniform(space), bit for bit
    (before: x0 ~ N(0, I), off the manifold), so a short run gives the same losses."""
    space, target = _TARGETS[where]
    batches, losses = [], []
    for source in (None, Uniform(space)):
        objective = fm.CFMObjective(GeodesicPath(space), target, source=source)
        objective.bind(None)
        batches.append(objective.draw(64, torch.Generator().manual_seed(3), "cpu")[0])
        torch.manual_seed(0)
        model = ProjectedVelocity(space, fm.MLP(space.embed_dim, hidden=16, depth=2))
        losses.append(fm.train(model, objective, steps=5, batch_size=32, seed=0, device="cpu", progress=False).losses)
    space.check_points("x0", batches[0].x0)
    assert torch.equal(batches[0].x0, batches[1].x0) and torch.equal(batches[0].dxt, batches[1].dxt)
    assert np.array_equal(losses[0], losses[1])


def test_training_refuses_data_or_a_source_off_the_manifold():
    sphere = Sphere()
    model = ProjectedVelocity(sphere, fm.MLP(3, hidden=8, depth=2))
    gauss = fm.Gaussian([0.0, 0.0, 0.0], 1.0)

    def run(objective):
        fm.train(model, objective, steps=1, batch_size=16, device="cpu", progress=False)

    with pytest.raises(ValueError, match=r"x1 \(from data=Gaussian\) must lie on the unit sphere.*needs points of "
                                         r"Sphere\(\)"):
        run(fm.CFMObjective(GeodesicPath(sphere), gauss))
    with pytest.raises(ValueError, match=r"x0 \(from source=.*\) must lie on the unit sphere"):
        run(fm.CFMObjective(GeodesicPath(sphere), VonMisesFisherMixture.tetrahedron(), source=gauss))
    with pytest.raises(ValueError, match=r"x1 \(from data=VonMisesFisherMixture\) must be points of T\^2"):
        run(fm.CFMObjective(GeodesicPath(FlatTorus(2)), VonMisesFisherMixture.tetrahedron()))
    with pytest.raises(ValueError, match=r"x0 \(from source=Uniform\(FlatTorus\(dim=3\)\)\) must lie on the unit"):
        run(fm.CFMObjective(GeodesicPath(sphere), VonMisesFisherMixture.tetrahedron(), source=Uniform(FlatTorus(3))))


def _sphere_model(seed=0):
    torch.manual_seed(seed)  # slow time features, as in chapter 9: a smooth field in t
    return ProjectedVelocity(Sphere(), fm.MLP(3, hidden=16, depth=2, n_freqs=2, max_freq=1.0)).double()


def test_a_sphere_model_is_sampled_and_scored_on_its_own_space():
    """Without space=, fm.sample and fm.log_likelihood of a ProjectedVelocity run on its sphere: the same numbers
    as with space=Sphere() (before: R^3 against N(0, I), and samples that leave the sphere)."""
    model, x = _sphere_model(), _on_sphere(40, 21)
    own, given = fm.sample(model, x, steps=8), fm.sample(model, x, steps=8, space=Sphere())
    assert torch.equal(own.x, given.x) and float((own.x.norm(dim=1) - 1).abs().max()) < 1e-12
    ll_own, ll_given = log_likelihood(model, x, steps=8), log_likelihood(model, x, steps=8, space=Sphere())
    assert torch.equal(ll_own, ll_given)
    ll_r3 = log_likelihood(lambda y, t: model(y, t), x, steps=8)  # a plain function declares no space: R^3
    assert float((ll_r3 - ll_own).abs().min()) > 0.1


def test_a_space_or_source_that_contradicts_the_model_is_refused():
    model, x = _sphere_model(), _on_sphere(5, 22)
    with pytest.raises(ValueError, match=r"space=FlatTorus\(dim=3\) contradicts the model's own space Sphere\(\)"):
        log_likelihood(model, x, space=FlatTorus(3))
    with pytest.raises(ValueError, match=r"space=Euclidean\(\) contradicts the model's own space Sphere\(\)"):
        fm.sample(model, x, steps=2, space=Euclidean())
    with pytest.raises(ValueError, match=r"source is a density on Euclidean\(\) .* computed on Sphere\(\)"):
        log_likelihood(model, x, source=fm.Gaussian([0.0, 0.0, 0.0], 1.0))
    with pytest.raises(ValueError, match=r"source is a density on FlatTorus\(dim=2\) .* computed on Sphere\(\)"):
        log_likelihood(model, x, source=Uniform(FlatTorus(2)))
    with pytest.raises(ValueError, match=r"x0 must lie on the unit sphere"):
        fm.sample(model, 1.1 * x, steps=2)
    torch.testing.assert_close(log_likelihood(model, x, steps=4, source=Uniform(Sphere())),
                               log_likelihood(model, x, steps=4))


def test_likelihood_on_the_sphere_with_dopri5():
    """log_likelihood(method='dopri5') on the sphere agrees with RK4 at 128 steps (itself within 2e-11 of 256 steps)
    to its tolerance: measured 8.9e-6 at rtol = atol = 1e-5, 2.2e-9 at 1e-8 (before: a '33 time points' error)."""
    model, x = _sphere_model(1), _on_sphere(30, 23)
    ref = log_likelihood(model, x, steps=128)
    errs = [float((log_likelihood(model, x, method="dopri5", rtol=tol, atol=tol) - ref).abs().max())
            for tol in (1e-5, 1e-8)]
    assert errs[0] < 5e-5 and errs[1] < 2e-8, errs
    with pytest.raises(ValueError, match="steps sets a fixed grid, but method='dopri5' chooses its own steps"):
        log_likelihood(model, x, method="dopri5", steps=32)
