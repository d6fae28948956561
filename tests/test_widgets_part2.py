"""Explorers of chapters 8 and 10 (issue 15): token images jumping over t (fmlearn.widgets.discrete) and the
superposition weight a (fmlearn.widgets.generators). Each builder returns an Explorer over the expected values,
its frames differ, a frame shows exactly what it is given (checked pixel by pixel against a loop over the
tokens, or bar by bar against numpy's histogram), and bad input is refused with an error naming the argument."""

import io

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import fmlearn as fm
from fmlearn import discrete as D
from fmlearn import widgets
from fmlearn.stepping import Solution
from fmlearn.widgets import Explorer
from fmlearn.widgets.discrete import GAP_COLOUR, MASK_COLOUR, draw_token_frame, token_explorer, token_image
from fmlearn.widgets.generators import _sweep, draw_weight_frame, superposition_explorer

LEVELS, SIDE, MASK = 5, 3, 5


def _trajectory(n=4, steps=6, seed=0):
    """A mask-source trajectory (steps + 1, n, SIDE^2): each token revealed once, at a random step, to a random
    level, and never changed; all masked at t = 0, none at t = 1."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(LEVELS, (n, SIDE * SIDE), generator=g)
    reveal = torch.randint(1, steps + 1, (n, SIDE * SIDE), generator=g)
    states = [torch.where(reveal <= k, values, torch.full_like(values, MASK)) for k in range(steps + 1)]
    return torch.stack(states), torch.linspace(0, 1, steps + 1, dtype=torch.float64)


def _expected_image(tokens, ncols):
    """token_image by a plain loop over every token: the reference the vectorised layout must match."""
    n = len(tokens)
    ncols = min(ncols, n)
    rows = -(-n // ncols)
    out = np.tile(np.array(GAP_COLOUR), (rows * (SIDE + 1) + 1, ncols * (SIDE + 1) + 1, 1))
    for k in range(n):
        for i in range(SIDE * SIDE):
            v = int(tokens[k][i])
            colour = MASK_COLOUR if v == MASK else (1 - v / (LEVELS - 1),) * 3
            out[1 + (k // ncols) * (SIDE + 1) + i // SIDE, 1 + (k % ncols) * (SIDE + 1) + i % SIDE] = colour
    return out


def _pixels(frame: bytes) -> np.ndarray:
    """A PNG frame's RGB values in [0, 1]."""
    return imread(io.BytesIO(frame), format="png")[..., :3].astype(float)


# -- chapter 8: tokens ---------------------------------------------------------------------------------------
def test_token_names_are_exported():
    for name in ("token_image", "draw_token_frame", "token_explorer", "superposition_explorer",
                 "draw_weight_frame"):
        assert getattr(widgets, name) is not None


@pytest.mark.parametrize("ncols", [1, 3, 8])
def test_token_image_matches_a_loop_over_the_tokens(ncols):
    traj, _ = _trajectory(n=5)
    for k in (0, 3, 6):  # all masked, half revealed, all revealed
        img = token_image(traj[k], levels=LEVELS, side=SIDE, mask=MASK, ncols=ncols)
        np.testing.assert_allclose(img, _expected_image(traj[k].tolist(), ncols))
    assert (token_image(traj[0], levels=LEVELS, side=SIDE, mask=MASK)[1:1 + SIDE, 1:1 + SIDE]
            == MASK_COLOUR).all()
    assert not (token_image(traj[-1], levels=LEVELS, side=SIDE, mask=MASK) == MASK_COLOUR).all(-1).any()


def test_token_image_control_a_swapped_token_is_seen():
    traj, _ = _trajectory(n=2)
    wrong = traj[3].clone()
    wrong[0, 0] = MASK if wrong[0, 0] != MASK else 0
    assert not np.allclose(token_image(wrong, levels=LEVELS, side=SIDE, mask=MASK),
                           _expected_image(traj[3].tolist(), 8))


def test_a_token_frame_shows_exactly_the_tokens_of_its_step():
    traj, times = _trajectory()
    k = 3
    fig = draw_token_frame(traj[k].numpy(), levels=LEVELS, side=SIDE, mask=MASK, ncols=2, title=f"t = {times[k]:.2f}",
                           before=traj[k - 1].numpy())
    (image,) = fig.axes[0].get_images()
    np.testing.assert_allclose(image.get_array(), _expected_image(traj[k].tolist(), 2))
    masked, changed = int((traj[k] == MASK).sum()), int((traj[k] != traj[k - 1]).sum())
    assert fig.axes[0].get_title() == (f"t = {times[k]:.2f}: {masked} of {traj[k].numel()} tokens masked (orange), "
                                       f"{changed} changed since the last frame")


def test_token_explorer_steps_through_the_trajectory():
    traj, times = _trajectory(steps=6)
    ex = token_explorer(traj, times, levels=LEVELS, side=SIDE, mask=MASK, ncols=2)
    assert isinstance(ex, Explorer) and ex.play == "t"
    assert ex.params == {"t": times.tolist()}
    assert "never changes again" in ex.look and "every token is revealed" in ex.look
    frames = ex.frames
    assert len(set(frames)) == len(frames)  # every step reveals something here, so every frame differs
    # lossless frames: the first is orange wherever an image is, the last has no orange pixel at all
    assert ex.image_format == "png"
    first, last = _pixels(frames[0]), _pixels(frames[-1])
    orange = lambda img: (np.abs(img - np.array(MASK_COLOUR)).max(-1) < 0.01).mean()  # noqa: E731
    assert orange(first) > 0.2 and orange(last) == 0
    assert [ax.get_title() for ax in ex.static().axes] == ["t = 0.00", "t = 0.33", "t = 0.67", "t = 1.00"]


def test_token_explorer_takes_a_solution_and_thins_its_frames():
    path = D.MixturePath(LEVELS, "mask")

    def uniform_logits(x, t):
        return torch.zeros(*x.shape, LEVELS)

    g = torch.Generator().manual_seed(1)
    sol = D.sample(uniform_logits, path, path.sample_source((2, SIDE * SIDE)), steps=64, generator=g,
                             return_trajectory=True)
    ex = token_explorer(sol, levels=LEVELS, side=SIDE, mask=path.mask, frames=17)
    assert ex.params["t"] == sol.times[::4].tolist()  # 65 states, every fourth: 0, 1/16, ..., 1


def test_token_explorer_look_reports_rejumps():
    traj, times = _trajectory()
    traj[3:, 0, 0], traj[5:, 0, 0] = 1, 2  # a token revealed as 1 at step 3 becomes 2 at step 5
    ex = token_explorer(traj, times, levels=LEVELS, side=SIDE, mask=MASK)
    assert "never changes again" not in ex.look and "change again" in ex.look


def test_token_explorer_without_a_mask_counts_repeated_jumps():
    traj, times = _trajectory()
    traj[traj == MASK] = 0  # a uniform-like source: tokens start at 0 and jump to their value
    traj[2:4, 1, 4], traj[4:, 1, 4] = 3, 1  # one token jumps at least twice (to 3, then to 1); the others once
    ex = token_explorer(traj, times, levels=LEVELS, side=SIDE)
    assert "1 of 36 tokens jump more than once" in ex.look


@pytest.mark.parametrize("change, match", [
    (lambda tr, ts: (tr.float(), ts), "trajectory must hold integer tokens"),
    (lambda tr, ts: (tr[0], ts), r"trajectory must have shape \(times, n, side \* side\)"),
    (lambda tr, ts: (tr[:, :0], ts), "none of them 0"),
    (lambda tr, ts: (tr[..., :4], ts), "4 tokens per sequence, but side = 3"),
    (lambda tr, ts: (tr + 7, ts), "trajectory must hold tokens in 0..4 or the mask 5"),
    (lambda tr, ts: (tr, ts[:-1]), "times must hold one time per state of the trajectory: trajectory has 7 states, "
                                   "times has 6"),
    (lambda tr, ts: (tr, ts.flip(0)), "times must be strictly increasing"),
    (lambda tr, ts: (tr, ts * 2), r"within \[0, 1\]"),
    (lambda tr, ts: (tr, None), "times must be given"),
])
def test_token_explorer_refuses_bad_input(change, match):
    traj, times = _trajectory()
    tr, ts = change(traj, times)
    with pytest.raises(ValueError, match=match):
        token_explorer(tr, ts, levels=LEVELS, side=SIDE, mask=MASK)


@pytest.mark.parametrize("kwargs, match", [
    ({"mask": 2}, "mask must be a state outside the 5 levels"),
    ({"levels": 1}, "levels must be an integer at least 2"),
    ({"side": 0}, "side must be an integer at least 1"),
    ({"frames": 1}, "frames must be an integer between 2 and 40"),
    ({"frames": 41}, "frames must be an integer between 2 and 40"),
    ({"ncols": 0}, "ncols must be an integer at least 1"),
])
def test_token_explorer_refuses_bad_options(kwargs, match):
    traj, times = _trajectory()
    with pytest.raises(ValueError, match=match):
        token_explorer(traj, times, **{"levels": LEVELS, "side": SIDE, "mask": MASK, **kwargs})


def test_a_token_frame_refuses_a_before_of_another_shape():
    traj, _ = _trajectory()
    with pytest.raises(ValueError, match=r"before must have the shape of tokens, \(4, 9\), got \(3, 9\)"):
        draw_token_frame(traj[2], levels=LEVELS, side=SIDE, mask=MASK, ncols=2, title="", before=traj[1, :3])


def test_a_solution_without_its_trajectory_is_refused():
    sol = Solution(x=torch.zeros(2, 9, dtype=torch.long), times=torch.linspace(0, 1, 3), nfe=2)
    with pytest.raises(ValueError, match="return_trajectory=True"):
        token_explorer(sol, levels=LEVELS, side=SIDE, mask=MASK)


# -- chapter 10: the superposition weight -----------------------------------------------------------------------
TARGET_1D = fm.GaussianMixture(torch.tensor([[-2.0], [1.5]]), stds=0.4)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _sweep_1d(n=400):
    """a -> (samples, W2): a = 0 exact samples, larger a shifted further right (so every frame differs)."""
    g = torch.Generator().manual_seed(0)
    return {a: (TARGET_1D.sample(n, generator=g) + a, 0.05 + a) for a in WEIGHTS}


def test_superposition_explorer_has_one_frame_per_weight():
    sweep = _sweep_1d()
    ex = superposition_explorer(dict(reversed(list(sweep.items()))), TARGET_1D, floor=0.04, bins=40)
    assert isinstance(ex, Explorer)
    assert ex.params == {"a": list(WEIGHTS)}  # sorted, whatever the order given
    assert ex.labels["a"] == ["0 (jumps)", "0.25", "0.5", "0.75", "1 (flow)"]
    assert ex.start == {"a": 2}
    frames = ex.frames
    assert len(set(frames)) == len(WEIGHTS)


def _shows_histogram_of(fig, samples, bins=40, extent=(-4, 4)):
    """Whether the left panel's filled outline has numpy's histogram heights (density) on every non-empty bin."""
    heights, edges = np.histogram(samples, bins=bins, range=extent, density=True)
    (patch,) = fig.axes[0].patches  # one filled step outline, its top at each bar's height
    tops = {}
    for x, y in patch.get_path().vertices:  # left to right along the top: (e_i, h_{i-1}), (e_i, h_i), ...
        if y > 0:
            tops[round(float(x), 9)] = float(y)
    return all(np.isclose(tops.get(round(float(e), 9), np.nan), h) for e, h in zip(edges[:-1], heights) if h > 0)


@pytest.mark.parametrize("a", [0.25, 1.0])
def test_a_weight_frame_shows_its_samples_and_w2(a):
    sweep = _sweep(_sweep_1d())
    fig = draw_weight_frame(sweep, a, TARGET_1D, floor=0.04, extent=(-4.0, 4.0), bins=40)
    left, right = fig.axes
    assert _shows_histogram_of(fig, sweep[a][0])
    assert left.get_title() == f"a = {a:g} ({'flow' if a == 1 else 'superposition'}): W2 {sweep[a][1]:.3f}"
    curve, marker = right.get_lines()[:2]
    assert curve.get_xdata().tolist() == list(WEIGHTS)
    assert curve.get_linestyle() == "None" and curve.get_marker() == "o"  # markers only: no trend drawn in
    assert marker.get_xdata().tolist() == [a] and marker.get_ydata().tolist() == [sweep[a][1]]
    density = left.get_lines()[0]
    xs = torch.as_tensor(density.get_xdata())[:, None].float()
    np.testing.assert_allclose(density.get_ydata(), TARGET_1D.log_prob(xs).exp().numpy(), rtol=1e-5)


def test_a_weight_frame_control_other_samples_fail_the_check():
    sweep = _sweep(_sweep_1d())
    fig = draw_weight_frame(sweep, 1.0, TARGET_1D, extent=(-4.0, 4.0), bins=40)
    assert not _shows_histogram_of(fig, sweep[0.0][0])


@pytest.mark.parametrize("sweep, match", [
    ({}, "sweep must be a non-empty mapping"),
    ([(0.5, (torch.zeros(3, 1), 0.1))], "sweep must be a non-empty mapping"),
    ({1.5: (torch.zeros(3, 1), 0.1)}, r"weight a must lie in \[0, 1\].*got 1.5"),
    ({-0.1: (torch.zeros(3, 1), 0.1)}, r"weight a must lie in \[0, 1\]"),
    ({"half": (torch.zeros(3, 1), 0.1)}, "sweep's weight a must be a finite number, got 'half'"),
    ({0.5: torch.zeros(3, 1)}, r"sweep\[0.5\] must be a pair \(samples, W2\)"),
    ({0.5: (torch.zeros(3, 2), 0.1)}, r"sweep\[0.5\]'s samples must be 1-D samples of shape \(n, 1\).*\(3, 2\)"),
    ({0.5: (torch.zeros(0, 1), 0.1)}, r"with n >= 1, got \(0, 1\)"),
    ({0.5: (torch.tensor([[0.0], [float("nan")]]), 0.1)}, "must be finite, but 1 samples"),
    ({0.5: (torch.zeros(3, 1), -0.1)}, r"sweep\[0.5\]'s W2 must be >= 0"),
    ({0.5: (torch.zeros(3, 1), float("inf"))}, r"sweep\[0.5\]'s W2 must be a finite number"),
    ({i / 50: (torch.zeros(3, 1), 0.1) for i in range(41)}, "41 weights.*at most 40"),
])
def test_superposition_explorer_refuses_bad_sweeps(sweep, match):
    with pytest.raises(ValueError, match=match):
        superposition_explorer(sweep, TARGET_1D)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"floor": -1.0}, ValueError, "floor must be >= 0"),
    ({"extent": (2.0, -2.0)}, ValueError, r"extent must be \(lo, hi\) with lo < hi"),
    ({"extent": (1.0,)}, ValueError, r"extent must be a pair \(lo, hi\)"),
    ({"bins": 0}, ValueError, "bins must be a positive integer"),
    ({"target": fm.GaussianMixture.symmetric_2d()}, ValueError, "target must be 1-D"),
    ({"target": "normal"}, TypeError, "target must have a log_prob"),
])
def test_superposition_explorer_refuses_bad_options(kwargs, error, match):
    kwargs = {"target": TARGET_1D, **kwargs}
    with pytest.raises(error, match=match):
        superposition_explorer(_sweep_1d(20), **kwargs)
