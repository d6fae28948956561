import itertools
import math

import numpy as np
import pytest
import torch

import fmlearn as fm
from fmlearn import (OTCoupling, SinkhornCoupling, ot_plan_exact, path_energy, reflow_pairs, sinkhorn_plan,
                     squared_distances, straightness)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def brute_force_cost(x0, x1):
    """min over all permutations of (1/n) sum_j |x0_perm(j) - x1_j|^2, by enumeration."""
    a, b = x0.flatten(1).numpy(), x1.flatten(1).numpy()
    n = len(a)
    costs = {p: sum(((a[p[j]] - b[j]) ** 2).sum() for j in range(n)) / n for p in itertools.permutations(range(n))}
    best = min(costs, key=costs.get)
    return costs[best], best


@pytest.mark.parametrize("n, shape, seed", [(1, (2,), 0), (3, (2,), 1), (5, (3,), 2), (6, (2, 2), 3), (7, (2,), 4)])
def test_exact_plan_matches_brute_force(n, shape, seed):
    x0, x1 = randn(n, *shape, seed=seed), randn(n, *shape, seed=seed + 100) + 0.5
    perm = ot_plan_exact(x0, x1)
    want_cost, want_perm = brute_force_cost(x0, x1)
    got_cost = (x0[perm] - x1).flatten(1).pow(2).sum(1).mean().item()
    assert got_cost == pytest.approx(want_cost, rel=1e-12)
    assert tuple(perm.tolist()) == want_perm  # random data: the optimum is unique


def test_squared_distances_vs_loop():
    x0, x1 = randn(4, 2, 3, seed=5), randn(6, 2, 3, seed=6)
    want = torch.tensor([[float(((p - q) ** 2).sum()) for q in x1] for p in x0], dtype=torch.float64)
    torch.testing.assert_close(squared_distances(x0, x1), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(squared_distances(x0.float(), x1), want, rtol=1e-6, atol=1e-6)  # mixed dtypes


def test_ot_coupling_keeps_the_multiset_of_x0_and_lowers_the_cost():
    x0, x1 = randn(64, 2, seed=7), randn(64, 2, seed=8) * 2 + 3
    out = OTCoupling()(x0, x1)
    assert sorted(map(tuple, out.tolist())) == sorted(map(tuple, x0.tolist()))
    assert (out - x1).pow(2).sum(1).mean() < (x0 - x1).pow(2).sum(1).mean()


def test_ot_coupling_in_train():
    model = fm.MLP(2, hidden=16, depth=1)
    calls = []

    def coupling(x0, x1):
        calls.append(x0.shape)
        return OTCoupling()(x0, x1)

    res = fm.train(model, fm.CFMObjective(fm.AffineGaussianPath(), fm.Moons(), source=fm.EightGaussians(), coupling=coupling),
                   steps=3, batch_size=8, progress=False)
    assert calls == [torch.Size([8, 2])] * 3 and np.isfinite(res.losses).all()


def numpy_sinkhorn(cost, reg, iters=5000):
    """Plain (not log-domain) Sinkhorn matrix scaling: P = diag(u) K diag(v), K = exp(-C / reg)."""
    n, m = cost.shape
    k = np.exp(-cost / reg)
    u, v = np.ones(n), np.ones(m)
    for _ in range(iters):
        u = (1 / n) / (k @ v)
        v = (1 / m) / (k.T @ u)
    return u[:, None] * k * v[None, :]


def test_sinkhorn_plan_marginals_and_numpy_reference():
    x0, x1 = randn(7, 2, seed=9), randn(5, 2, seed=10)
    plan = sinkhorn_plan(x0, x1, reg=0.5, tol=1e-12, iters=5000, check_every=10)
    assert plan.dtype == torch.float64 and plan.shape == (7, 5)
    torch.testing.assert_close(plan.sum(1), torch.full((7,), 1 / 7, dtype=torch.float64), rtol=0, atol=1e-11)
    torch.testing.assert_close(plan.sum(0), torch.full((5,), 1 / 5, dtype=torch.float64), rtol=0, atol=1e-12)
    want = numpy_sinkhorn(squared_distances(x0, x1).numpy(), 0.5)
    np.testing.assert_allclose(plan.numpy(), want, rtol=1e-8, atol=1e-14)


def test_sinkhorn_tends_to_exact_ot_as_reg_shrinks_and_to_independence_as_it_grows():
    n = 6
    x0, x1 = randn(n, 2, seed=11), randn(n, 2, seed=12) + 1
    cost = squared_distances(x0, x1)
    exact_cost, best = brute_force_cost(x0, x1)
    exact_plan = torch.zeros(n, n, dtype=torch.float64)
    exact_plan[list(best), list(range(n))] = 1 / n
    costs = []
    for reg in (10.0, 1.0, 0.1, 0.03):  # Sinkhorn needs more iterations as reg shrinks (about 1 / reg)
        plan = sinkhorn_plan(x0, x1, reg, iters=5000, tol=1e-7)
        costs.append(float((plan * cost).sum()))
    assert all(c1 > c2 for c1, c2 in zip(costs, costs[1:])), costs  # the transport cost falls with reg
    assert costs[-1] == pytest.approx(exact_cost, rel=1e-3)
    torch.testing.assert_close(plan, exact_plan, rtol=0, atol=0.01 / n)
    wide = sinkhorn_plan(x0, x1, 1e6)
    torch.testing.assert_close(wide, torch.full((n, n), 1 / n**2, dtype=torch.float64), rtol=1e-4, atol=0)


def test_sinkhorn_coupling_draws_from_the_plan_columns():
    x0 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    x1 = torch.tensor([[0.8, 0.0]]).expand(20000, 2)  # every column holds the same distribution
    coupling = SinkhornCoupling(reg=1.0, iters=200, generator=torch.Generator().manual_seed(0))
    out = coupling(x0, x1)
    idx = (out[:, None, :] == x0[None]).all(-1).float().argmax(1)
    freq = torch.bincount(idx, minlength=3).double() / len(idx)
    column = sinkhorn_plan(x0, x1[:1], 1.0, iters=200)[:, 0].double()
    want = column / column.sum()
    assert (freq - want).abs().max() < 4 * math.sqrt(0.25 / len(idx))
    again = SinkhornCoupling(reg=1.0, iters=200, generator=torch.Generator().manual_seed(0))(x0, x1)
    assert torch.equal(out, again)


def test_straightness_and_energy_of_straight_and_curved_paths():
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    x0, x1 = randn(10, 3, seed=13), randn(10, 3, seed=14)
    line = x0 + t[:, None, None] * (x1 - x0)
    assert straightness(line) == pytest.approx(0.0, abs=1e-20)
    assert path_energy(line) == pytest.approx((x1 - x0).pow(2).sum(1).mean().item(), rel=1e-12)
    # straight but accelerating: x0 + t^2 (x1 - x0) has S = |x1 - x0|^2 int (2t - 1)^2 dt = |x1 - x0|^2 / 3
    accel = x0 + t[:, None, None] ** 2 * (x1 - x0)
    assert straightness(accel) == pytest.approx((x1 - x0).pow(2).sum(1).mean().item() / 3, rel=1e-5)
    # a quarter of the unit circle at constant speed pi/2: E = pi^2 / 4, S = E - |(-1, 1)|^2 = pi^2 / 4 - 2
    angle = math.pi / 2 * t
    arc = torch.stack([torch.cos(angle), torch.sin(angle)], -1)[:, None, :]
    assert path_energy(arc) == pytest.approx(math.pi**2 / 4, rel=1e-6)
    assert straightness(arc) == pytest.approx(math.pi**2 / 4 - 2, rel=1e-5)


def test_straightness_from_an_ode_solution_on_an_uneven_grid():
    def rotate(x, t):  # u = (pi/2) (-y, x): the quarter circle again
        return math.pi / 2 * torch.stack([-x[:, 1], x[:, 0]], 1)

    times = fm.time_grid(400, kind="cosine")
    sol = fm.odeint(rotate, torch.tensor([[1.0, 0.0]], dtype=torch.float64), times=times, method="rk4",
                    return_trajectory=True)
    assert straightness(sol) == pytest.approx(math.pi**2 / 4 - 2, rel=1e-4)
    traj = randn(9, 5, 2, seed=15)
    disp = (traj[-1] - traj[0]).pow(2).sum(1).mean().item()
    assert path_energy(traj) == pytest.approx(straightness(traj) + disp, rel=1e-12)  # E = S + |x_1 - x_0|^2


class ConstantField(torch.nn.Module):
    dim = 2

    def __init__(self):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor([1.5, -2.0]))

    def forward(self, x, t):
        return self.c.expand_as(x)


def test_reflow_pairs_integrate_the_model_from_the_source():
    pairs = reflow_pairs(ConstantField(), 50, steps=3, method="euler", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(pairs.x0, torch.randn(50, 2, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(pairs.x1, pairs.x0 + torch.tensor([1.5, -2.0]))
    src = fm.EightGaussians()
    pairs = reflow_pairs(ConstantField(), 30, src, chunk=7, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(pairs.x0, src.sample(30, generator=torch.Generator().manual_seed(4)))
    torch.testing.assert_close(pairs.x1, pairs.x0 + torch.tensor([1.5, -2.0]))


@pytest.mark.parametrize("call, match", [
    (lambda: ot_plan_exact(randn(4, 2), randn(5, 2)), "same batch size"),
    (lambda: ot_plan_exact(randn(4, 2), randn(4, 3)), "same data shape"),
    (lambda: ot_plan_exact(randn(4), randn(4)), "x0 must have shape"),
    (lambda: ot_plan_exact(randn(3, 2), torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0]])), "finite"),
    (lambda: sinkhorn_plan(randn(4, 2), randn(4, 3), 1.0), "same data shape"),
    (lambda: sinkhorn_plan(randn(4, 2), randn(4, 2), 0.0), "reg must be a positive finite"),
    (lambda: sinkhorn_plan(randn(4, 2), randn(4, 2), float("nan")), "reg must be a positive finite"),
    (lambda: SinkhornCoupling(reg=-1.0), "reg must be a positive finite"),
    (lambda: SinkhornCoupling(reg=float("inf")), "reg must be a positive finite"),
    (lambda: SinkhornCoupling(reg=1.0, iters=0), "iters must be a positive int"),
    (lambda: straightness(randn(1, 4, 2)), "trajectory must be a tensor of shape"),
    (lambda: straightness(randn(5, 4)), "trajectory must be a tensor of shape"),
    (lambda: straightness(randn(5, 4, 2), times=[0.0, 1.0]), "one time per trajectory point"),
    (lambda: path_energy(randn(3, 4, 2), times=[0.0, 0.7, 0.5]), "strictly increasing"),
    (lambda: straightness(fm.odeint(lambda x, t: x, randn(2, 2), steps=2)), "return_trajectory=True"),
    (lambda: reflow_pairs(torch.nn.Linear(2, 2), 10), "data_shape is needed"),
    (lambda: reflow_pairs(ConstantField(), 0), "n must be a positive int"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call, match", [
    (lambda: ot_plan_exact(np.zeros((3, 2)), randn(3, 2)), "x0 must be a floating-point tensor"),
    (lambda: sinkhorn_plan(randn(3, 2), torch.zeros(3, 2, dtype=torch.long), 1.0), "x1 must be a floating-point"),
    (lambda: SinkhornCoupling(reg=1.0, generator=0), "generator must be a torch.Generator"),
    (lambda: reflow_pairs(ConstantField(), 10, source=[1, 2]), "source must have a sample"),
])
def test_bad_types_raise_type_errors(call, match):
    with pytest.raises(TypeError, match=match):
        call()
