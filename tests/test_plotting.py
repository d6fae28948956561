import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.quiver import Quiver

from fmlearn import MLP, AffineGaussianPath, GaussianMixture, MixtureOracle
from fmlearn import plotting as P


def labelled(ax, title):
    return ax.get_title() == title and ax.get_xlabel() != "" and ax.get_ylabel() != ""


def test_backend_is_agg():
    """The tests run headless: the backend conftest selects is Agg."""
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("n", [1, 37, 500])
def test_plot_samples_draws_every_point(n):
    """plot_samples: one scatter whose offsets are exactly the given points; title and axis labels set."""
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(n))
    ax = P.plot_samples(x, title="my samples")
    colls = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(colls) == 1
    np.testing.assert_allclose(colls[0].get_offsets(), x.numpy(), rtol=1e-6)
    assert labelled(ax, "my samples")
    assert ax.get_xlim() == P.DEFAULT_EXTENT[:2] and ax.get_ylim() == P.DEFAULT_EXTENT[2:]


def test_plot_samples_on_given_ax_and_numpy():
    """plot_samples draws on the ax it is given (returns it) and accepts NumPy arrays; extent=None autoscale."""
    fig, ax = plt.subplots()
    x = np.random.default_rng(0).normal(size=(20, 2))
    assert P.plot_samples(x, ax=ax, extent=None) is ax
    np.testing.assert_allclose(ax.collections[0].get_offsets(), x)
    assert ax.get_xlim() != P.DEFAULT_EXTENT[:2]


def test_plot_density_values():
    """plot_density's mesh holds exp(log_prob) on the grid (vs the mixture density evaluated at grid_points)."""
    gm = GaussianMixture.symmetric_2d(n_modes=3, radius=2.0)
    extent = (-4.0, 4.0, -3.0, 3.0)
    ax = P.plot_density(gm.log_prob, extent=extent, n=30, title="p")
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(mesh) == 1
    X, Y, pts = P.grid_points(extent, 30)
    want = torch.exp(gm.log_prob(pts)).numpy()
    np.testing.assert_allclose(np.asarray(mesh[0].get_array()).ravel(), want, rtol=1e-6)
    assert labelled(ax, "p")


def test_plot_density_contour_levels():
    """contour=True draws contour lines (no mesh) whose levels lie inside (0, max density on the grid]."""
    gm = GaussianMixture.symmetric_2d(n_modes=3, radius=2.0)
    ax = P.plot_density(gm.log_prob, extent=(-4.0, 4.0, -4.0, 4.0), n=40, contour=True)
    assert not [c for c in ax.collections if isinstance(c, QuadMesh)]
    _, _, pts = P.grid_points((-4.0, 4.0, -4.0, 4.0), 40)
    zmax = float(torch.exp(gm.log_prob(pts)).max())
    levels = ax.collections[-1].levels
    assert len(levels) == 5 and 0 < levels.min() and abs(levels.max() - zmax) < 1e-6 * zmax


def test_grid_points_vs_linspace():
    """grid_points: an n x n meshgrid of linspace over the extent, flattened row by row."""
    X, Y, pts = P.grid_points((-1.0, 1.0, 0.0, 2.0), 5)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(0, 2, 5)
    assert pts.shape == (25, 2)
    np.testing.assert_allclose(pts[:, 0].numpy(), np.tile(xs, 5), rtol=1e-6)
    np.testing.assert_allclose(pts[:, 1].numpy(), np.repeat(ys, 5), rtol=1e-6)


def test_plot_trajectories():
    """plot_trajectories: n lines (one per particle) plus start and end scatters of n points; labels set."""
    traj = torch.randn(6, 40, 2, generator=torch.Generator().manual_seed(1))
    ax = P.plot_trajectories(traj, n=25, title="paths")
    assert len(ax.lines) == 25
    scat = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scat) == 2
    np.testing.assert_allclose(scat[0].get_offsets(), traj[0, :25].numpy(), rtol=1e-6)
    np.testing.assert_allclose(scat[1].get_offsets(), traj[-1, :25].numpy(), rtol=1e-6)
    assert labelled(ax, "paths")


def test_plot_vector_field_with_oracle_and_model():
    """plot_vector_field: quiver arrows equal velocity(grid, t) (oracle); a model with parameters works too."""
    oracle = MixtureOracle(GaussianMixture.symmetric_2d(n_modes=3, radius=2.0), AffineGaussianPath())
    extent = (-3.0, 3.0, -3.0, 3.0)
    ax = P.plot_vector_field(oracle, 0.5, extent=extent, n=9)
    q = [c for c in ax.collections if isinstance(c, Quiver)]
    assert len(q) == 1
    _, _, pts = P.grid_points(extent, 9)
    v = oracle(pts, 0.5).numpy()
    np.testing.assert_allclose(q[0].U.ravel(), v[:, 0], rtol=1e-5)
    np.testing.assert_allclose(q[0].V.ravel(), v[:, 1], rtol=1e-5)
    assert labelled(ax, "velocity at t = 0.50")
    ax2 = P.plot_vector_field(MLP(2, hidden=8), 0.2, n=5, title="model")
    assert labelled(ax2, "model")


def test_plot_vector_field_width_draws_two_fields_on_one_panel_both_visible():
    """width: the shafts' width (a fraction of the panel's width), so a field drawn narrow over a wide one shows
    both where they agree; a width that is not a positive number is refused by name."""
    oracle = MixtureOracle(GaussianMixture.symmetric_2d(n_modes=3, radius=2.0), AffineGaussianPath())
    ax = P.plot_vector_field(oracle, 0.5, n=5, width=0.006)
    P.plot_vector_field(oracle, 0.5, n=5, ax=ax, width=0.002)
    wide, narrow = [c for c in ax.collections if isinstance(c, Quiver)]
    assert (wide.width, narrow.width) == (0.006, 0.002)
    assert P.plot_vector_field(oracle, 0.5, n=5).collections[-1].width is None  # matplotlib's own default
    for bad, exc in ((0.0, ValueError), (-1.0, ValueError), ("wide", TypeError)):
        with pytest.raises(exc, match="width"):
            P.plot_vector_field(oracle, 0.5, n=5, width=bad)


def test_plot_loss():
    """plot_loss: the raw curve has every loss, the running median equals a brute-force loop; log y; labels set."""
    losses = np.random.default_rng(2).random(250) + 0.1
    ax = P.plot_loss(losses, window=50)
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), losses)
    want = [sorted(losses[i:i + 50])[24:26] for i in range(len(losses) - 49)]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [(a + b) / 2 for a, b in want])
    assert ax.get_yscale() == "log"
    assert labelled(ax, "training loss")
    short = P.plot_loss(losses[:10], window=50)  # shorter than the window: raw curve only
    assert len(short.lines) == 1


def test_plot_mode_fractions():
    """plot_mode_fractions: one bar per mode with the given heights, a line at 1/K; labels set."""
    f = torch.tensor([0.1, 0.3, 0.2, 0.4])
    ax = P.plot_mode_fractions(f, title="modes")
    assert len(ax.containers) == 1
    heights = [p.get_height() for p in ax.containers[0]]
    np.testing.assert_allclose(heights, f.numpy(), rtol=1e-6)
    assert any(np.allclose(line.get_ydata(), 0.25) for line in ax.lines)
    assert labelled(ax, "modes")


def test_plot_marginals():
    """plot_marginals: one panel per requested grid time, titled with it, samples drawn above the density's contours;
    a time that is not on the grid is refused rather than shown under the wrong label (0.33 on a 0.1 grid)."""
    times = torch.linspace(0, 1, 11)
    traj = torch.randn(11, 30, 2, generator=torch.Generator().manual_seed(3))
    oracle = MixtureOracle(GaussianMixture.symmetric_2d(n_modes=3, radius=2.0), AffineGaussianPath())
    fig = P.plot_marginals(traj, times, show_at=(0.0, 0.3, 1.0),
                           densities=lambda t: (lambda x: oracle.log_prob(x, t)), suptitle="flow")
    axes = fig.axes
    assert len(axes) == 3
    assert [a.get_title() for a in axes] == ["t = 0", "t = 0.3", "t = 1"]
    assert fig._suptitle.get_text() == "flow"
    for a, i in zip(axes, (0, 3, 10)):
        dots = [c for c in a.collections if isinstance(c, PathCollection)][0]
        np.testing.assert_allclose(dots.get_offsets(), traj[i].numpy(), rtol=1e-6)
        assert a.get_xlabel() == "coordinate 1" and a.get_ylabel() == "coordinate 2"
        contours = [c for c in a.collections if c is not dots]
        assert contours and all(c.get_zorder() < dots.get_zorder() for c in contours)  # dots on top
    with pytest.raises(ValueError, match="not a time of the grid"):
        P.plot_marginals(traj, times, show_at=(0.33,))


def test_mode_fraction_band_is_behind_the_bars_and_loss_axis_has_intermediate_labels():
    """The +-tolerance band is drawn under the bars (it hid them before); a loss between 15 and 1500 gets
    more than the two labels 10^2 and 10^3 on its log axis, and every tick in view has a label."""
    ax = P.plot_mode_fractions(torch.full((11,), 1 / 11))
    band = [p for p in ax.patches if p not in ax.containers[0].patches]
    assert band and all(b.get_zorder() < bar.get_zorder() for b in band for bar in ax.containers[0].patches)
    ax = P.plot_loss(np.geomspace(1500, 15, 500))
    ax.figure.canvas.draw()
    lo, hi = ax.get_ylim()
    labels = [lab.get_text() for tick, lab in zip(ax.get_yticks(), ax.get_yticklabels()) if lo <= tick <= hi]
    assert len(labels) >= 5 and all(labels), labels


def test_plot_vector_field_evaluates_a_network_as_the_samplers_do():
    """In eval mode, without gradients, in the network's own dtype (a float64 network took float32 points)."""
    class Half(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones((), dtype=torch.float64))
            self.modes = []

        def forward(self, x, t):
            assert x.dtype == torch.float64
            self.modes.append((self.training, torch.is_grad_enabled()))
            return 0.5 * x * self.w

    net = Half().train()
    ax = P.plot_vector_field(net, 0.3, n=5, extent=(-1.0, 1.0, -1.0, 1.0))
    q = next(c for c in ax.collections if isinstance(c, Quiver))
    np.testing.assert_allclose(q.U, 0.5 * np.linspace(-1, 1, 5)[None].repeat(5, 0).ravel(), atol=1e-7)
    assert net.modes == [(False, False)] and net.training
    plt.close("all")
