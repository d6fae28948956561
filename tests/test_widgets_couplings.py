"""The explorers of chapters 5 and 6 (issue 15, item 2): Sinkhorn's epsilon beside the plan, and the guidance
weight beside its samples. Each builder returns an Explorer over the expected values; its frames differ from
value to value; what a frame draws is what fmlearn computes for that value (the plan of fm.sinkhorn_plan, the
samples given); bad input raises a ValueError that names the argument."""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection

import fmlearn as fm
from fmlearn.digits import image_grid
from fmlearn.widgets import Explorer, guidance as guidance_mod, couplings as couplings_mod
from fmlearn.widgets import guidance_explorer, guidance_figure, sinkhorn_explorer, sinkhorn_plan_figure

matplotlib.use("Agg")

N = 12


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    return fm.EightGaussians().sample(N, generator=gen), fm.Moons().sample(N, generator=gen)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# -- chapter 5: Sinkhorn's epsilon ---------------------------------------------------------------------------------

def _plan_image(fig):
    (image,) = fig.axes[0].images
    return np.asarray(image.get_array(), dtype=float)


def test_sinkhorn_figure_shows_the_plan_fmlearn_computes(batch):
    """The image is n * fm.sinkhorn_plan at that epsilon, and the lines' opacities are its entries."""
    x0, x1 = batch
    reg = 0.05 * fm.squared_distances(x0, x1).mean().item()
    fig = sinkhorn_plan_figure(x0, x1, reg, iters=500)
    plan = N * fm.sinkhorn_plan(x0.double(), x1.double(), reg, iters=500, tol=couplings_mod.SINKHORN_TOL)
    np.testing.assert_allclose(_plan_image(fig), plan.numpy(), rtol=1e-12, atol=0)
    (lines,) = [c for c in fig.axes[1].collections if isinstance(c, LineCollection)]
    alphas = np.sort(lines.get_colors()[:, 3])
    shown = np.sort(plan.clamp(0, 1).numpy().ravel())
    np.testing.assert_allclose(alphas, shown[shown > 1e-3])
    # another epsilon, another plan: the figure follows its argument
    other = _plan_image(sinkhorn_plan_figure(x0, x1, 10 * reg, iters=500))
    assert np.abs(other - plan.numpy()).max() > 0.1


def test_sinkhorn_titles_report_costs_computed_another_way(batch):
    """The exact OT cost in the title is the brute-force optimum over all permutations of a tiny batch."""
    import itertools

    x0, x1 = batch[0][:6], batch[1][:6]
    cost = ((x0[:, None] - x1[None]) ** 2).sum(-1).double()
    brute = min(cost[list(p), range(6)].mean().item() for p in itertools.permutations(range(6)))
    title = sinkhorn_plan_figure(x0, x1, 1.0, iters=200).get_suptitle()
    assert f"exact OT {brute:.2f}" in title
    assert f"= {cost.mean().item():.2f})" in title  # the independent cost, the mean of all pairs


def test_sinkhorn_explorer_draws_each_epsilon_in_the_diagonal_order(batch, monkeypatch):
    x0, x1 = batch
    fractions = (0.001, 0.1, 10.0)
    ex = sinkhorn_explorer(x0, x1, fractions, iters=2000)
    assert isinstance(ex, Explorer) and ex.params == {"epsilon": list(fractions)}
    assert ex.look and "epsilon" in ex.look and len(ex.look) <= 170  # about one line; details in the chapter
    assert len(set(ex.frames)) == len(fractions)  # every epsilon its own frame

    calls = []
    monkeypatch.setattr(couplings_mod, "sinkhorn_plan_figure",
                        lambda a, b, reg, **kw: calls.append((a, b, reg)) or plt.figure())
    _ = sinkhorn_explorer(x0, x1, fractions).frames
    mean_cost = fm.squared_distances(x0, x1).mean().item()
    assert [c[2] for c in calls] == pytest.approx([f * mean_cost for f in fractions])
    a, b, _ = calls[0]
    assert torch.equal(fm.ot_plan_exact(a, b).cpu(), torch.arange(N))  # the exact plan is the diagonal
    assert sorted(map(tuple, b.tolist())) == sorted(map(tuple, x1.double().tolist()))  # the same points
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, x0.double().tolist()))


def test_sinkhorn_extremes_are_a_permutation_and_the_independent_plan(batch):
    """What the look line says: a small epsilon gives (nearly) the exact plan, a large one nearly 1/n."""
    x0, x1 = couplings_mod._diagonal_order(*(v.double() for v in batch))
    mean_cost = fm.squared_distances(x0, x1).mean().item()
    sharp = _plan_image(sinkhorn_plan_figure(x0, x1, 1e-3 * mean_cost, iters=5000))
    flat = _plan_image(sinkhorn_plan_figure(x0, x1, 10 * mean_cost))
    assert np.diag(sharp).mean() > 0.9
    assert np.abs(flat - 1 / N).max() < 0.2 / N
    assert math.isclose(flat.sum(), N, rel_tol=1e-6)


@pytest.mark.parametrize("args, name", [
    ((torch.zeros(5, 3), torch.zeros(5, 2)), "x0"),
    ((torch.zeros(5, 2), torch.zeros(4, 2)), "x0 and x1"),
    ((torch.zeros(1, 2), torch.zeros(1, 2)), "x0 and x1"),
    ((torch.zeros(65, 2), torch.zeros(65, 2)), "x0 and x1"),
    ((torch.zeros(5, 2), torch.full((5, 2), float("nan"))), "x1"),
])
def test_sinkhorn_bad_points_are_refused(args, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        sinkhorn_explorer(*args)


def test_sinkhorn_bad_epsilons_are_refused(batch):
    x0, x1 = batch
    with pytest.raises(ValueError, match=r"fractions\[1\] must be a positive finite number, got 0.0"):
        sinkhorn_explorer(x0, x1, (0.1, 0.0))
    with pytest.raises(ValueError, match=r"fractions\[0\] .* got -1.0"):
        sinkhorn_explorer(x0, x1, (-1.0,))
    with pytest.raises(ValueError, match="fractions must hold between 1 and 40 values.*got 0"):
        sinkhorn_explorer(x0, x1, ())
    with pytest.raises(ValueError, match=r"fractions must be distinct .*\[0.1, 0.1\]"):
        sinkhorn_explorer(x0, x1, (0.1, 0.1))
    with pytest.raises(TypeError, match="fractions must be a sequence"):
        sinkhorn_explorer(x0, x1, 0.1)
    with pytest.raises(ValueError, match="reg must be a positive finite number, got -0.5"):
        sinkhorn_plan_figure(x0, x1, -0.5)


# -- chapter 6: the guidance weight -------------------------------------------------------------------------------

PER = 3
LABELS = torch.arange(4).repeat_interleave(PER + 1)  # 4 classes, 4 samples each, class by class


def _samples(seed):
    return torch.rand(len(LABELS), 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _grid_image(fig):
    (image,) = fig.axes[0].images
    return np.asarray(image.get_array(), dtype=float)


def test_guidance_figure_shows_the_samples_given():
    """One row per class, the first ``per_class`` samples of each: exactly image_grid of those samples."""
    x = _samples(0)
    fig = guidance_figure(x, LABELS, 2.0, accuracy=0.975, worst_ratio=3.25, per_class=PER)
    expected = image_grid(torch.cat([x[LABELS == c][:PER] for c in range(4)]), PER)
    np.testing.assert_array_equal(_grid_image(fig), expected)
    title = fig.axes[0].get_title()
    assert "w = 2" in title and "97.5%" in title and "3.25" in title
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0", "1", "2", "3"]


def test_guidance_figure_groups_shuffled_labels_by_class():
    perm = torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(1))
    x, labels = _samples(0)[perm], LABELS[perm]
    shown = _grid_image(guidance_figure(x, labels, 0.0, per_class=PER))
    np.testing.assert_array_equal(shown, image_grid(torch.cat([x[labels == c][:PER] for c in range(4)]), PER))


def test_guidance_explorer_one_frame_per_weight_from_the_given_samples(monkeypatch):
    ws, samples = [0.0, 0.5, 4.0], [_samples(k) for k in range(3)]
    ex = guidance_explorer(ws, samples, LABELS, accuracies=[0.8, 0.9, 1.0], worst_ratios=[1.5, 2.0, 6.0],
                           per_class=PER, start=0.5)
    assert isinstance(ex, Explorer) and ex.params == {"w": ws} and ex.start == {"w": 1}
    assert ex.look.startswith("raise w from 0 to 4: the title's accuracy goes from 80.0% to 100.0%, rising at every "
                              "step; the worst digit's distance to real digits (over its floor) goes from 1.50 to "
                              "6.00, rising at every step;")
    assert len(set(ex.frames)) == len(ws)

    calls = []
    monkeypatch.setattr(guidance_mod, "guidance_figure",
                        lambda x, labels, w, **kw: calls.append((x, w, kw)) or plt.figure())
    _ = guidance_explorer(ws, samples, LABELS, accuracies=[0.8, 0.9, 1.0], per_class=PER).frames
    assert [c[1] for c in calls] == ws
    assert all(c[0] is s for c, s in zip(calls, samples))  # each w's own samples, not resampled
    assert [c[2]["accuracy"] for c in calls] == [0.8, 0.9, 1.0]
    assert all(c[2]["worst_ratio"] is None for c in calls)


@pytest.mark.parametrize("kwargs, message", [
    (dict(ws=[]), "ws must hold between 1 and 40 weights.*got 0"),
    (dict(ws=[0.0, 0.0]), r"ws must be distinct.*\[0.0, 0.0\]"),
    (dict(ws=[0.0, float("inf")]), r"ws\[1\] must be a finite number, got inf"),
    (dict(samples=[_samples(0)]), r"samples must hold one tensor per w \(2\), got 1"),
    (dict(samples=[_samples(0), _samples(1)[:-1]]), r"samples\[1\] holds 15 images but labels has 16"),
    (dict(samples=[_samples(0), _samples(1)[:, 0]]), r"samples\[1\] must be .*\(n, 1, h, w\), got .*\(16, 8, 8\)"),
    (dict(labels=LABELS.float()), "labels must be a non-empty 1-D integer tensor"),
    (dict(labels=LABELS[:0]), "labels must be a non-empty 1-D integer tensor"),
    (dict(accuracies=[0.9]), r"accuracies must hold one number per w \(2\), got 1"),
    (dict(worst_ratios=[1.0, 2.0, 3.0]), r"worst_ratios must hold one number per w \(2\), got 3"),
    (dict(per_class=5), "per_class = 5, but class 0 has only 4 samples"),
])
def test_guidance_bad_input_is_refused(kwargs, message):
    args = dict(ws=[0.0, 1.0], samples=[_samples(0), _samples(1)], labels=LABELS, per_class=PER) | kwargs
    with pytest.raises(ValueError, match=message):
        guidance_explorer(**args)


@pytest.mark.parametrize("ws, accuracies, worst, says, never", [
    # ws in any order: the trend is read along increasing w
    ([4.0, 0.0, 1.0], [0.9, 0.8, 0.85], [6.0, 2.0, 4.0],
     ["from 0 to 4", "accuracy goes from 80.0% to 90.0%, rising at every step",
      "goes from 2.00 to 6.00, rising at every step"], ["not monotonically"]),
    ([0.0, 1.0, 2.0, 4.0], [0.9, 1.0, 1.0, 1.0], [1.5, 1.4, 2.0, 3.0],
     ["accuracy goes from 90.0% to 100.0%, never falling",
      "goes from 1.50 to 3.00, not monotonically (it falls from w = 0 to w = 1)"], ["rising at every step"]),
    ([0.0, 1.0, 2.0], [0.95, 0.8, 0.9], None,
     ["accuracy goes from 95.0% to 90.0%, not monotonically (it rises from w = 1 to w = 2)"], ["worst digit"]),
    ([0.0, 1.0], None, None, ["raise w from 0 to 1"], ["accuracy", "worst digit"]),
])
def test_guidance_look_line_is_written_from_the_numbers_given(ws, accuracies, worst, says, never):
    """The default look line claims only what the numbers given show: each measure's first and last value along
    increasing w, and whether it moves the same way at every step."""
    ex = guidance_explorer(ws, [_samples(k) for k in range(len(ws))], LABELS, accuracies=accuracies,
                           worst_ratios=worst, per_class=PER)
    for phrase in says:
        assert phrase in ex.look, (phrase, ex.look)
    for phrase in never:
        assert phrase not in ex.look, (phrase, ex.look)
