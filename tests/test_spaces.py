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
