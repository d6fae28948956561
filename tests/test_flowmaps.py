"""Flow maps (fmlearn.flowmaps, fmlearn.flowmap_objectives): the exact map against a closed form, its two
identities on the 11-mode oracle, the MeanFlow target's JVP against finite differences, the flow-map step
through the solver core, the objectives through fm.train, and clear errors for bad input."""

import math

import pytest
import torch

import fmlearn as fm
from fmlearn.flowmap_objectives import (DistillationObjective, MeanFlowObjective, ShortcutObjective,
                                        meanflow_target, sample_time_pairs)
from fmlearn.flowmaps import (FlowMapMLP, average_velocity, flow_map, flow_map_step, map_agreement,
                              sample_flow_map)

PATH = fm.AffineGaussianPath("condot")
TARGET = fm.GaussianMixture.symmetric_2d(n_modes=11, radius=10.0, std=1.0)
ORACLE = fm.MixtureOracle(TARGET, PATH)


def points(n=64, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_exact_map_of_a_gaussian_is_the_affine_map_by_hand():
    # target N(m, sigma^2 I), CondOT: x_t ~ N(t m, sd_t^2 I), sd_t^2 = t^2 sigma^2 + (1 - t)^2; the velocity is
    # m + (sd_t' / sd_t)(x - t m), so y = x - t m obeys y' = (sd_t' / sd_t) y: X_{s->t}(x) = t m + sd_t / sd_s (x - s m)
    m, sigma = torch.tensor([3.0, -1.0], dtype=torch.float64), 0.5
    oracle = fm.MixtureOracle(fm.GaussianMixture(m[None].float(), sigma), PATH)
    sd = lambda t: math.sqrt(t ** 2 * sigma ** 2 + (1 - t) ** 2)  # noqa: E731
    x = points()
    for s, t in ((0.0, 1.0), (0.2, 0.7), (0.5, 0.5)):
        by_hand = t * m + sd(t) / sd(s) * (x - s * m)
        assert torch.allclose(flow_map(oracle, x, s, t), by_hand, atol=1e-5)
    rk4 = flow_map(oracle, x, 0.0, 1.0, method="rk4", steps=50)
    assert torch.allclose(rk4, m + sd(1.0) / sd(0.0) * x, atol=1e-5)
    wrong = m + x  # the control: the map of the straight conditional lines, not the marginal flow
    assert (flow_map(oracle, x, 0.0, 1.0) - wrong).abs().max() > 0.1


def test_per_sample_intervals_match_one_solve_each():
    x = points(6)
    s = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.2, 0.9], dtype=torch.float64)
    t = torch.tensor([1.0, 0.4, 0.3, 0.9, 0.6, 1.0], dtype=torch.float64)
    together = flow_map(ORACLE, x, s, t)
    alone = torch.cat([flow_map(ORACLE, x[i:i + 1], float(s[i]), float(t[i])) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.equal(together[2], x[2])  # s = t: the identity


def test_semigroup_on_the_oracle():
    x = points(200)
    direct = flow_map(ORACLE, x, 0.1, 0.95)
    composed = flow_map(ORACLE, flow_map(ORACLE, x, 0.1, 0.6), 0.6, 0.95)
    assert (direct - composed).abs().max() < 1e-5
    assert (direct - flow_map(ORACLE, x, 0.6, 0.95)).abs().max() > 0.1  # control: the second leg alone


def test_average_velocity_identity_on_the_oracle():
    # u(x_s, s, t) = v(x_s, s) + (t - s) d/ds u(x_s, s, t), the derivative by central differences along the exact
    # trajectory through x_s
    s, t, h = 0.3, 0.9, 1e-3
    x0 = points(100)
    x_behind, xs, x_ahead = (flow_map(ORACLE, x0, 0.0, r) for r in (s - h, s, s + h))
    u = average_velocity(ORACLE, xs, s, t)
    du_ds = (average_velocity(ORACLE, x_ahead, s + h, t) - average_velocity(ORACLE, x_behind, s - h, t)) / (2 * h)
    rhs = ORACLE(xs, s) + (t - s) * du_ds
    assert (u - rhs).abs().max() < 1e-3 * (1 + u.abs().max())
    wrong_sign = ORACLE(xs, s) - (t - s) * du_ds
    assert (u - wrong_sign).abs().max() > 0.1
    assert torch.allclose(average_velocity(ORACLE, xs, s, s), ORACLE(xs, s))  # t = s: the velocity


def test_meanflow_target_jvp_matches_finite_differences():
    torch.manual_seed(0)
    model = FlowMapMLP(2, hidden=32, depth=2).double()
    x, v = points(16), points(16, seed=1)
    s, t = torch.rand(16, dtype=torch.float64) * 0.5, 0.5 + torch.rand(16, dtype=torch.float64) * 0.5
    u, target = meanflow_target(model, x, s, t, v)
    eps = 1e-6
    with torch.no_grad():
        fd = (model(x + eps * v, s + eps, t) - model(x - eps * v, s - eps, t)) / (2 * eps)
        assert torch.allclose(u, model(x, s, t))
    assert torch.allclose(target, v + (t - s)[:, None] * fd, atol=1e-6)
    assert not target.requires_grad and u.requires_grad  # the target is held fixed (stop-gradient)
    with torch.no_grad():  # control: the tangent of t instead of s
        fd_t = (model(x + eps * v, s, t + eps) - model(x - eps * v, s, t - eps)) / (2 * eps)
    assert (target - (v + (t - s)[:, None] * fd_t)).abs().max() > 1e-3


def test_flow_map_step_through_the_solver_core():
    torch.manual_seed(0)
    model = FlowMapMLP(2, hidden=32, depth=2)
    x0 = points(32).float()
    with torch.no_grad():
        one = x0 + model(x0, 0.0, 1.0)
        half = x0 + 0.5 * model(x0, 0.0, 0.5)
        two = half + 0.5 * model(half, 0.5, 1.0)
    sol1, sol2 = sample_flow_map(model, x0, 1), fm.simulate(flow_map_step(model), x0, steps=2)
    assert torch.allclose(sol1.x, one, atol=1e-6) and sol1.nfe == 1
    assert torch.allclose(sol2.x, two, atol=1e-6) and sol2.nfe == 2
    # the exact average velocity as the model: any number of steps lands on the exact map
    exact_u = lambda x, s, t: average_velocity(ORACLE, x.double(), s, t).to(x.dtype)  # noqa: E731
    x0 = points(50)
    exact = flow_map(ORACLE, x0, 0.0, 1.0)
    for k in (1, 3):
        assert (sample_flow_map(exact_u, x0, k).x - exact).abs().max() < 1e-4
    assert (fm.odeint(ORACLE, x0, steps=3).x - exact).abs().max() > 1.0  # control: Euler on the velocity


def test_map_agreement():
    x = TARGET.means[[0, 1, 2]].clone()
    d, same = map_agreement(TARGET, x + torch.tensor([3.0, 4.0]), x)
    assert d == pytest.approx(5.0) and 0 <= same <= 1
    d, same = map_agreement(TARGET, x, x)
    assert d == 0 and same == 1


def test_distillation_draw_is_the_teacher_average_velocity():
    x0 = points(40).float()
    teacher = fm.sample(ORACLE, x0, steps=8, method="rk4", return_trajectory=True)
    obj = DistillationObjective(teacher)
    xs, s, t, target = obj.draw(500, torch.Generator().manual_seed(0), "cpu")
    assert bool((s < t).all()) and s.min() >= 0 and t.max() <= 1
    end = xs + (t - s)[:, None] * target
    grid = teacher.times.float()
    for j in range(0, 500, 50):  # each end point is the teacher's point at t, from the same trajectory
        k = int(torch.argmin((grid - t[j]).abs()))
        assert (teacher.trajectory[k] - end[j]).norm(dim=1).min() < 1e-4


@pytest.mark.parametrize("make", [lambda: MeanFlowObjective(PATH, TARGET), lambda: ShortcutObjective(PATH, TARGET),
                                  lambda: DistillationObjective(fm.sample(ORACLE, points(64).float(), steps=4,
                                                                          method="rk4", return_trajectory=True))])
def test_objectives_train_in_the_one_loop(make):
    torch.manual_seed(0)
    model = FlowMapMLP(2, hidden=32, depth=2)
    run = fm.train(model, make(), steps=30, batch_size=64, progress=False)
    assert len(run.losses) == 30 and all(math.isfinite(v) for v in run.losses)


def test_time_pairs():
    s, t = sample_time_pairs(4000, torch.Generator().manual_seed(0), "cpu", diagonal=0.25)
    assert bool((s <= t).all())
    assert abs(float((s == t).double().mean()) - 0.25) < 0.03


def test_bad_inputs_name_the_argument():
    x = points(4)
    with pytest.raises(ValueError, match="s must be <= t"):
        flow_map(ORACLE, x, 0.8, 0.2)
    with pytest.raises(ValueError, match="x must have shape"):
        flow_map(ORACLE, torch.zeros(4), 0.0, 1.0)
    with pytest.raises(ValueError, match="t must lie in"):
        flow_map(ORACLE, x, 0.0, 1.5)
    with pytest.raises(ValueError, match=r"t must be .* shape \(batch,\)"):
        flow_map(ORACLE, x, 0.0, torch.ones(3))
    with pytest.raises(ValueError, match="x must be a tensor of shape"):
        FlowMapMLP(2)(torch.zeros(4, 3), 0.0, 1.0)
    with pytest.raises(ValueError, match="x and v"):
        meanflow_target(FlowMapMLP(2), x.float(), torch.zeros(4), torch.ones(4), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="s must be a tensor"):
        meanflow_target(FlowMapMLP(2), x.float(), 0.0, torch.ones(4), x.float())
    with pytest.raises(ValueError, match="s <= t"):
        fm.simulate(flow_map_step(FlowMapMLP(2)), x.float(), times=[1.0, 0.0])
    with pytest.raises(TypeError, match="teacher"):
        DistillationObjective(x)
    with pytest.raises(TypeError, match="teacher"):
        DistillationObjective(fm.sample(ORACLE, x.float(), steps=2))
    with pytest.raises(TypeError, match="data"):
        MeanFlowObjective(PATH, 3)
    with pytest.raises(ValueError, match="diagonal"):
        ShortcutObjective(PATH, TARGET, diagonal=1.5)
    with pytest.raises(ValueError, match="steps"):
        sample_flow_map(FlowMapMLP(2), x.float(), 0)


def test_few_step_explorer_frames_and_bad_input():
    from fmlearn.widgets.flowmaps import few_step_explorer

    x = TARGET.sample(50, generator=torch.Generator().manual_seed(0))
    runs = {(m, k): x + 0.1 * k for m in ("a", "b") for k in (1, 2)}
    explorer = few_step_explorer(runs, x, centres=TARGET.means)
    assert explorer.shape == (2, 2) and explorer.params["steps"] == [1, 2]
    assert len(explorer.frame(method="b", steps=2)) > 100
    with pytest.raises(ValueError, match="missing"):
        few_step_explorer({("a", 1): x, ("b", 2): x}, x)
    with pytest.raises(ValueError, match="number of steps"):
        few_step_explorer({("a", 0): x}, x)
    with pytest.raises(ValueError, match=r"runs\[\('a', 1\)\] must have shape \(50, 2\)"):
        few_step_explorer({("a", 1): x[:10]}, x)
    with pytest.raises(ValueError, match="exact must have shape"):
        few_step_explorer({("a", 1): x}, x[:, :1])
