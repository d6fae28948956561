"""The sampling explorers (issue 15): chapter 1's flow animation, chapter 3's solver x steps explorer and
chapter 7's noise-level explorer. Each builds an Explorer over the expected parameters, its frames differ from
value to value, each frame draws the data of its value (checked against the input, or a closed form), and bad
input is refused with an error that names the argument."""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import fmlearn as fm
from fmlearn.widgets import Explorer, flow_animation, noise_explorer, sampling, solver_explorer

CENTRES = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])


def straight_trajectory(n=5, steps=10, seed=0):
    """Points moving on straight lines from x0 to x1 over the grid t_k = k / steps: (steps + 1, n, 2)."""
    gen = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(n, 2, generator=gen), CENTRES[torch.arange(n) % 3] + 0.3 * torch.randn(n, 2, generator=gen)
    times = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    return times, (1 - times[:, None, None].float()) * x0 + times[:, None, None].float() * x1


def offsets(ax, k=0):
    """The positions of the k-th scatter plot of an axes."""
    return np.asarray(ax.collections[k].get_offsets())


@pytest.fixture
def drawn(monkeypatch):
    """The figures an explorer's frames were drawn from, in frame order, as (keyword arguments, figure): the
    module's draw helpers wrapped (the explorer closes each figure after saving it; its artists stay readable)."""
    figures = []
    for name in ("draw_flow_frame", "draw_solver_frame", "draw_noise_frame"):
        real = getattr(sampling, name)

        def spy(*args, _real=real, **kw):
            fig = _real(*args, **kw)
            figures.append((dict(enumerate(args)) | kw, fig))
            return fig

        monkeypatch.setattr(sampling, name, spy)
    return figures


# -- chapter 1 -------------------------------------------------------------------------------------------------
def test_flow_animation_has_a_played_t_slider_on_grid_times():
    times, tr = straight_trajectory()
    ex = flow_animation(tr, times, frames=6)
    assert isinstance(ex, Explorer)
    assert list(ex.params) == ["t"] and ex.play == "t"
    assert ex.params["t"] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(any(abs(t - float(s)) < 1e-12 for s in times) for t in ex.params["t"])  # grid times only
    frames = ex.frames
    assert len(set(frames)) == len(frames)  # every frame differs from the others


def test_flow_animation_draws_the_trajectory_at_each_frames_time(drawn):
    """The frame of value t scatters the states at that very time and says so in its title."""
    times, tr = straight_trajectory()
    ex = flow_animation(tr, times, frames=6)
    ex.frames
    assert len(drawn) == 6
    for t, (_, fig) in zip(ex.params["t"], drawn):
        k = int(torch.isclose(times, torch.tensor(t, dtype=torch.float64)).nonzero())
        np.testing.assert_allclose(offsets(fig.axes[0]), tr[k].numpy(), atol=1e-6)
        assert fig.axes[0].get_title() == f"samples, t = {t:.2f}"


def test_flow_animation_colours_each_sample_by_its_final_mode(drawn):
    times, tr = straight_trajectory(n=6)
    ex = flow_animation(tr, times, frames=3, centres=CENTRES)
    ex.frames
    nearest = ((tr[-1][:, None] - CENTRES[None]) ** 2).sum(-1).argmin(1).numpy()  # brute force, by hand
    cycle = ["#0072B2", "#E69F00", "#009E73"]  # Okabe-Ito blue, orange, bluish green in turn: neighbours differ
    expected = np.array([matplotlib.colors.to_rgb(cycle[k % 3]) for k in nearest])
    for _, fig in drawn:  # the same colour in every frame: the mode the sample ends in
        np.testing.assert_allclose(fig.axes[0].collections[0].get_facecolors()[:, :3], expected, atol=1e-6)
        np.testing.assert_allclose(offsets(fig.axes[0], 1), CENTRES.numpy())  # the crosses


def test_flow_animation_shows_every_state_of_a_short_trajectory():
    times, tr = straight_trajectory(steps=4)
    assert flow_animation(tr, times).params["t"] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_flow_animation_takes_a_solution():
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    sol = fm.odeint(lambda x, t: -x, x0, steps=8, method="euler", return_trajectory=True)
    ex = flow_animation(sol, sol.times, frames=3)
    assert ex.params["t"] == pytest.approx([0.0, 0.5, 1.0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(trajectory=torch.zeros(11, 5, 3)), r"trajectory must have shape \(times, samples, 2\).*\(11, 5, 3\)"),
    (dict(trajectory=torch.zeros(11, 0, 2)), r"trajectory must have shape .*\(11, 0, 2\)"),
    (dict(trajectory=torch.full((11, 5, 2), float("nan"))), "trajectory must be finite"),
    (dict(times=torch.linspace(0, 1, 10)), "trajectory has 11 states, times has 10"),
    (dict(times=torch.linspace(1, 0, 11)), "times must be finite and strictly increasing"),
    (dict(frames=1), "frames must be an integer between 2 and 40, got 1"),
    (dict(frames=41), "frames must be an integer between 2 and 40, got 41"),
    (dict(frames=2.5), "frames must be an integer between 2 and 40, got 2.5"),
    (dict(n=0), "n must be an integer at least 1, got 0"),
    (dict(centres=torch.zeros(3)), r"centres must have shape \(points, 2\).*\(3,\)"),
    (dict(trajectory=fm.stepping.Solution(x=torch.zeros(5, 2), times=torch.zeros(11), nfe=1)),
     "trajectory is a Solution without its trajectory: solve with return_trajectory=True"),
])
def test_flow_animation_refuses_bad_input(kwargs, match):
    times, tr = straight_trajectory()
    args = dict(trajectory=tr, times=times) | kwargs
    with pytest.raises(ValueError, match=match):
        flow_animation(args.pop("trajectory"), args.pop("times"), **args)


# -- chapter 3 -------------------------------------------------------------------------------------------------
def decay_runs(methods=("euler", "rk4"), steps=(1, 2, 4), n=6):
    """dx/dt = -x from x0: the exact end point is x0 / e."""
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    runs = {(m, s): fm.odeint(lambda x, t: -x, x0, steps=s, method=m, return_trajectory=True)
            for m in methods for s in steps}
    return x0, runs


def test_solver_explorer_has_method_and_steps_sliders_with_distinct_frames():
    x0, runs = decay_runs()
    ex = solver_explorer(runs, x0 / math.e)
    assert isinstance(ex, Explorer)
    assert ex.params == {"method": ["euler", "rk4"], "steps": [1, 2, 4]} and ex.play is None
    frames = ex.frames
    assert len(frames) == 6 and len(set(frames)) == 6


def test_solver_frames_show_each_solvers_end_points_and_error(drawn):
    """Euler's end point on dx/dt = -x is x0 (1 - 1/steps)^steps (closed form): each frame scatters its solver's
    end points over the reference, and its title carries the evaluations and the mean distance to x0 / e."""
    x0, runs = decay_runs()
    ex = solver_explorer(runs, x0 / math.e)
    ex.frames
    grid = [(m, s) for m in ex.params["method"] for s in ex.params["steps"]]  # the frames' C order
    assert len(drawn) == len(grid)
    for (method, steps), (_, fig) in zip(grid, drawn):
        ax = fig.axes[0]
        end = runs[(method, steps)].x
        if method == "euler":
            torch.testing.assert_close(end, x0 * (1 - 1 / steps) ** steps)
        np.testing.assert_allclose(offsets(ax, 0), (x0 / math.e).numpy())  # grey reference
        np.testing.assert_allclose(offsets(ax, 1), end.numpy())            # the solver's end points
        error = (end - x0 / math.e).norm(dim=1).mean().item()
        nfe = steps * {"euler": 1, "rk4": 4}[method]
        assert ax.get_title() == f"{method}, {steps} step{'s' if steps > 1 else ''} " \
                                 f"({nfe} evaluation{'s' if nfe > 1 else ''}): mean error {error:.3g}"
        # the legend sits below the axes, over none of the points
        assert ax.get_legend() is None and len(fig.legends) == 1
        assert [t.get_text() for t in fig.legends[0].get_texts()] == \
            ["reference end points", f"{method} end points", "error of the drawn paths"]
        assert 0 <= fig.legends[0].get_window_extent().y0 < fig.legends[0].get_window_extent().y1 \
            <= ax.get_window_extent().y0
    assert "(1 evaluation)" in drawn[0][1].axes[0].get_title()  # euler, 1 step


@pytest.mark.parametrize("make, match", [
    (lambda x0, runs: ({}, x0), "runs must be a non-empty mapping"),
    (lambda x0, runs: ({k: v for k, v in runs.items() if k != ("rk4", 2)}, x0),
     r"runs must hold every \(method, steps\) pair.*missing \[\('rk4', 2\)\]"),
    (lambda x0, runs: ({("euler", "one"): runs[("euler", 1)]}, x0), r"keyed by \(method name, number of steps\)"),
    (lambda x0, runs: (runs, x0[:4]), r"reference must have shape \(6, 2\), got \(4, 2\)"),
    (lambda x0, runs: (runs | {("euler", 1): runs[("euler", 1)].trajectory[:, :3]}, x0),
     r"runs hold different numbers of samples \(.*\('euler', 1\): 3, \('euler', 2\): 6.*all must start from the same"),
    (lambda x0, runs: ({("euler", 1): fm.odeint(lambda x, t: -x, x0, steps=1)}, x0),
     r"runs\[\('euler', 1\)\] is a Solution without its trajectory"),
])
def test_solver_explorer_refuses_bad_input(make, match):
    runs, reference = make(*decay_runs())
    with pytest.raises(ValueError, match=match):
        solver_explorer(runs, reference)


# -- chapter 7 -------------------------------------------------------------------------------------------------
def noisy_runs(gs=(1.0, 0.0, 0.5), n=8, steps=10):
    """Brownian paths of scale g from the same starts (g = 0: standing still)."""
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(n, 2, generator=gen)
    return {g: torch.cat([x0[None], x0 + g * torch.randn(steps, n, 2, generator=gen).cumsum(0) / steps ** 0.5])
            for g in gs}


def test_noise_explorer_has_a_sorted_g_slider_with_distinct_frames():
    runs = noisy_runs()
    ex = noise_explorer(runs, n_paths=3)
    assert isinstance(ex, Explorer) and ex.params == {"g": [0.0, 0.5, 1.0]}
    frames = ex.frames
    assert len(set(frames)) == 3


def test_noise_frames_show_each_runs_paths_end_points_and_note(drawn):
    runs = noisy_runs()
    ex = noise_explorer(runs, n_paths=3, centres=CENTRES, notes={0.5: "W2 0.123"})
    ex.frames
    assert len(drawn) == 3
    for g, (_, fig) in zip([0.0, 0.5, 1.0], drawn):
        left, right = fig.axes
        tr = runs[g].numpy()
        assert len(left.lines) == 3
        for line, k in zip(left.lines, range(3)):
            np.testing.assert_allclose(np.asarray(line.get_xydata()), tr[:, k], atol=1e-6)
        np.testing.assert_allclose(offsets(right, 0), tr[-1], atol=1e-6)
        np.testing.assert_allclose(offsets(right, 1), CENTRES.numpy())
        assert fig.get_suptitle() == f"g = {g:g}" + (": W2 0.123" if g == 0.5 else "")
        # the black and red dots of the left panel are the paths' starts and ends, named in a legend below
        np.testing.assert_allclose(offsets(left, 0), tr[0, :3], atol=1e-6)
        np.testing.assert_allclose(offsets(left, 1), tr[-1, :3], atol=1e-6)
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == ["path start (t = 0)", "path end (t = 1)",
                                                              "mode centres"]
        fig.canvas.draw()
        assert legend.get_window_extent().y0 >= 0  # inside the figure
        assert all(legend.get_window_extent().y1 <= ax.get_window_extent().y0 for ax in (left, right))


@pytest.mark.parametrize("make, match", [
    (lambda runs: dict(runs={}), "runs must be a non-empty mapping"),
    (lambda runs: dict(runs={-1.0: runs[0.0]}),
     r"runs must be keyed by noise scales g \(numbers >= 0\), got the key -1.0"),
    (lambda runs: dict(runs={"g": runs[0.0]}), "runs must be keyed by noise scales g"),
    (lambda runs: dict(runs=runs | {2.0: runs[0.0][:, :, :1]}), r"runs\[2.0\] must have shape .*\(11, 8, 1\)"),
    (lambda runs: dict(runs=runs, notes={3.0: "x"}), r"notes names g = \[3.0\], which runs does not hold"),
    (lambda runs: dict(runs=runs, n_paths=0), "n_paths must be an integer at least 1, got 0"),
    (lambda runs: dict(runs={float(g): runs[0.0] for g in range(41)}), "runs has 41 entries.*at most 40"),
])
def test_noise_explorer_refuses_bad_input(make, match):
    kwargs = make(noisy_runs())
    with pytest.raises(ValueError, match=match):
        noise_explorer(kwargs.pop("runs"), **kwargs)
