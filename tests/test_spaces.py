"""Geometry as an object (issue 11, item 3): the spaces' maps, and the metrics and OT couplings under a space's
cost, against references computed another way (formulas written out, brute force over permutations)."""

import itertools
import math

import pytest
import torch

import fmlearn as fm
from fmlearn.manifolds import Sphere
from fmlearn.spaces import Euclidean


def _on_sphere(n, seed):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed),
                                                     dtype=torch.float64), dim=1)


def test_euclidean_maps_on_images():
    """R^D for data of any shape: exp/log are + and -, dist and cdist the norm over all pixels."""
    space, gen = Euclidean(), torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 1, 3, 3, generator=gen), torch.randn(5, 1, 3, 3, generator=gen)
    torch.testing.assert_close(space.exp(x, space.log(x, y[:4])), y[:4])
    torch.testing.assert_close(space.dist(x, y[:4]), ((x - y[:4]) ** 2).sum((1, 2, 3)).sqrt())
    brute = torch.tensor([[float(((a - b) ** 2).sum().sqrt()) for b in y] for a in x])
    torch.testing.assert_close(space.cdist(x, y), brute, rtol=1e-5, atol=1e-5)


def test_sphere_cdist_is_the_pairwise_geodesic_distance():
    x, y = _on_sphere(5, 1), _on_sphere(7, 2)
    brute = torch.tensor([[math.acos(max(-1.0, min(1.0, float(a @ b)))) for b in y] for a in x], dtype=torch.float64)
    torch.testing.assert_close(Sphere().cdist(x, y), brute)
    torch.testing.assert_close(Sphere().cdist(x, y[:5]).diagonal(), Sphere().dist(x, y[:5]))


def test_optimal_assignment_vs_brute_force():
    """The one exact assignment solver against all 7! permutations."""
    cost = torch.rand(7, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = fm.optimal_assignment(cost)
    best = min(itertools.permutations(range(7)), key=lambda p: float(cost[range(7), list(p)].sum()))
    assert float(cost[range(7), sigma].sum()) == pytest.approx(float(cost[range(7), list(best)].sum()), abs=1e-12)


def test_w2_on_the_sphere_vs_brute_force():
    """w2_distance(space=Sphere()) = the best permutation's mean squared great-circle distance, square-rooted,
    and differs from the Euclidean (chordal) W2."""
    x, y = _on_sphere(6, 4), _on_sphere(6, 5)
    d2 = Sphere().cdist(x, y) ** 2
    best = min(float(d2[range(6), list(p)].mean()) for p in itertools.permutations(range(6)))
    assert fm.w2_distance(x, y, space=Sphere()) == pytest.approx(math.sqrt(best), abs=1e-12)
    assert fm.w2_distance(x, y) < fm.w2_distance(x, y, space=Sphere())  # the chord is shorter than the arc


def test_energy_distance_on_the_sphere_written_out():
    x, y = _on_sphere(9, 6), _on_sphere(11, 7)
    d = Sphere().cdist
    want = 2 * d(x, y).mean() - d(x, x).mean() - d(y, y).mean()
    assert fm.energy_distance(x, y, space=Sphere()) == pytest.approx(float(want), abs=1e-12)


def test_ot_coupling_on_the_sphere_vs_brute_force():
    """OTCoupling(space=Sphere()) pairs to the least total squared arc length (all 6! pairings)."""
    x0, x1 = _on_sphere(6, 8), _on_sphere(6, 9)
    paired = fm.OTCoupling(space=Sphere())(x0, x1)
    got = float((Sphere().dist(paired, x1) ** 2).sum())
    best = min(float((Sphere().dist(x0[list(p)], x1) ** 2).sum()) for p in itertools.permutations(range(6)))
    assert got == pytest.approx(best, abs=1e-12)


def test_sinkhorn_plan_uses_the_space_cost():
    """With a tiny reg the entropic plan concentrates on the exact plan of the same cost (the sphere's)."""
    x0, x1 = _on_sphere(6, 10), _on_sphere(6, 11)
    plan = fm.sinkhorn_plan(x0, x1, 1e-3, iters=5000, space=Sphere())
    perm = fm.ot_plan_exact(x0, x1, space=Sphere())
    assert torch.equal(plan.argmax(0), perm)


def test_a_space_without_cdist_is_refused():
    with pytest.raises(TypeError, match="cdist"):
        fm.w2_distance(torch.zeros(3, 2), torch.zeros(3, 2), space=object())
    with pytest.raises(TypeError, match="cdist"):
        fm.OTCoupling(space="sphere")


# --- the declared contracts (issue 21) ----------------------------------------------------------------------------

def test_the_course_spaces_follow_the_declared_protocols():
    from fmlearn.manifolds import FlatTorus, Sphere
    from fmlearn.spaces import Manifold, MetricSpace, Space, check_manifold

    for space in (Euclidean(), Sphere(), Sphere(4), FlatTorus(1), FlatTorus(3)):
        assert isinstance(space, Manifold) and isinstance(space, MetricSpace) and isinstance(space, Space)
        assert check_manifold(space) is space

    class StepOnly:
        def step(self, x, dx):
            return x + dx

        def check_field(self, v, x, name="velocity"):
            return v

    assert isinstance(StepOnly(), Space) and not isinstance(StepOnly(), Manifold)
    with pytest.raises(TypeError, match=r"space must be a manifold .*got StepOnly, which lacks cdist, check_points, "
                                        r"proj, exp, log, geodesic, dist, sample_source, source_log_prob"):
        check_manifold(StepOnly())


def test_spaces_compare_by_kind_and_dimension():
    from fmlearn.manifolds import FlatTorus, Sphere

    assert Sphere() == Sphere(3) and hash(Sphere()) == hash(Sphere(3)) and Sphere(3) != Sphere(4)
    assert FlatTorus(3) != Sphere(3) and Euclidean() == Euclidean() and Euclidean() != Sphere()


def test_euclidean_geometry_and_default_source():
    """R^d's geodesic is the straight line (against exp and log), its source N(0, I): the draw of torch.randn and
    the log-density of scipy, over all data dimensions of an image-shaped batch."""
    from scipy import stats

    space, g = Euclidean(), torch.Generator().manual_seed(0)
    x0, x1 = (torch.randn(5, 1, 2, 2, generator=g, dtype=torch.float64) for _ in range(2))
    xs, v = space.geodesic(x0, x1, 0.3)
    torch.testing.assert_close(xs, space.exp(x0, 0.3 * space.log(x0, x1)))
    torch.testing.assert_close(v, x1 - x0)
    draw = space.sample_source((5, 1, 2, 2), torch.Generator().manual_seed(1))
    assert torch.equal(draw, torch.randn((5, 1, 2, 2), generator=torch.Generator().manual_seed(1)))
    want = stats.norm.logpdf(x0.reshape(5, -1).numpy()).sum(1)
    torch.testing.assert_close(space.source_log_prob(x0), torch.from_numpy(want))
    with pytest.raises(ValueError, match=r"shape must be a batch shape \(batch, \*data\) of positive ints, got 5"):
        space.sample_source(5)
    with pytest.raises(ValueError, match=r"x must be finite"):
        space.check_points("x", torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match=r"x must be points of R\^d, a tensor of shape \(batch, \*data\)"):
        space.check_points("x", torch.zeros(3))


def test_resolve_space_reads_what_a_model_declares():
    from fmlearn.manifolds import FlatTorus, Sphere
    from fmlearn.spaces import resolve_space

    class Declares:
        space = Sphere()

    class DeclaresJunk:
        space = "sphere"

    assert resolve_space(lambda x, t: x, None) == Euclidean()
    assert resolve_space(lambda x, t: x, FlatTorus(2)) == FlatTorus(2)
    assert resolve_space(Declares(), None) == Sphere() and resolve_space(Declares(), Sphere(3)) == Sphere()
    with pytest.raises(ValueError, match=r"space=FlatTorus\(dim=3\) contradicts the model's own space Sphere\(\)"):
        resolve_space(Declares(), FlatTorus(3))
    with pytest.raises(TypeError, match=r"the model's space attribute must be a space .*got str"):
        resolve_space(DeclaresJunk(), None)
