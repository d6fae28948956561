# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 2 — Probability paths and the continuity equation
#
# Chapter 1 trained a network on *conditional* velocities and claimed that it
# learns the *marginal* velocity, which moves the noise distribution onto the
# data. This chapter opens that claim up and checks each piece numerically,
# using the one target where everything is exact: a Gaussian mixture.
#
# **What you will learn**
# - conditional and marginal paths and velocities, and the closed-form marginal
#   velocity of a Gaussian-mixture target (the *oracle*);
# - five schedules side by side: CondOT, sqrt, cosine, polynomial and VP;
# - the continuity equation $\partial_t p_t + \nabla\cdot(p_t u_t) = 0$, checked on a grid;
# - why the FM and CFM losses have the same gradient, checked by Monte Carlo;
# - how far a trained network is from the oracle, over $t$.
#
# **Prerequisites:** chapter 1.
#
# **Run time:** about a minute on a 2-core laptop CPU at the default budget,
# under half a minute in quick mode (`FMLEARN_QUICK=1`); the last cell prints
# how long your run took.

# %%
try:  # Colab, VS Code, JupyterHub...: install the course's package where it is missing (README, "Other hosts")
    import fmlearn
except ImportError:
    import os
    source = os.environ.get("FMLEARN_SOURCE") or (".." if os.path.isfile("../fmlearn/__init__.py") else None)
    if source is None:  # a notebook opened alone (Colab): say where the course is, e.g. %env FMLEARN_SOURCE=git+...
        raise ImportError("fmlearn is not installed: set FMLEARN_SOURCE to the course (a git URL, a wheel), rerun")
    get_ipython().run_line_magic("pip", f"install --quiet {source}")

# %%
import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from fmlearn.plotting import SECOND, grid_points, plot_samples, set_alt
from fmlearn.widgets import path_explorer, path_grid

T_START = time.perf_counter()
SEED = 0
fm.seed_everything(SEED)
gen = torch.Generator().manual_seed(SEED)
print(fm.describe())

TRAIN_STEPS = fm.budget(default=6000, quick=1200)
GRAD_SAMPLES = fm.budget(default=2**18, quick=2**15)      # Monte Carlo samples for the FM/CFM gradients
VELOCITY_ERR_MAX = fm.budget(default=0.10, quick=0.20)    # learned vs oracle, relative L2, t in [0.05, 0.95]

target = fm.GaussianMixture.symmetric_2d()

# %% [markdown]
# ## 1. Conditional and marginal
#
# Fix a schedule $(\alpha_t, \beta_t)$. One data point $x_1$ defines a
# **conditional path** of Gaussians,
# $p_t(x \mid x_1) = \mathcal N(\alpha_t x_1, \beta_t^2 I)$, and averaging over the
# data gives the **marginal path**
#
# $$p_t(x) = \int p_t(x \mid x_1)\, p_1(x_1)\, dx_1 .$$
#
# Below: one conditional path (orange, a single $x_1$) inside the marginal
# path (blue, all of the data), for CondOT. The conditional path shrinks onto
# its one point; the marginal path spreads onto all 11 modes.

# %%
path = fm.AffineGaussianPath("condot")
x1_one = target.means[3:4]  # one data point: the centre of mode 3
times = (0.0, 0.25, 0.5, 0.75, 1.0)
fig, axes = plt.subplots(1, len(times), figsize=(14, 3.1))
for ax, t in zip(axes, times):
    marginal = path.sample(torch.randn(2000, 2, generator=gen), target.sample(2000, generator=gen), t).xt
    conditional = path.sample(torch.randn(300, 2, generator=gen), x1_one.expand(300, 2), t).xt
    plot_samples(marginal, ax=ax, s=1, alpha=0.3, title=f"t = {t}")
    plot_samples(conditional, ax=ax, s=2, alpha=0.6, color=SECOND, title=f"t = {t}")
fig.tight_layout()
set_alt(fig, "Samples of one conditional path (orange, a single data point x_1) inside the marginal path (blue, "
        "all of the data), CondOT, at t = 0, 0.25, 0.5, 0.75 and 1: the conditional path shrinks onto its point, "
        "the marginal spreads onto the 11 modes.")
plt.show()

# %% [markdown]
# The **marginal velocity** is the average of the conditional velocities of
# all pairs $(x_0, x_1)$ that pass through $x$ at time $t$:
#
# $$u_t(x) = \mathbb E\big[\dot\alpha_t x_1 + \dot\beta_t x_0 \;\big|\; x_t = x\big]
#         = \frac{\int u_t(x \mid x_1)\, p_t(x \mid x_1)\, p_1(x_1)\, dx_1}{p_t(x)},
# \qquad u_t(x \mid x_1) = \dot\alpha_t x_1 + \frac{\dot\beta_t}{\beta_t}\,(x - \alpha_t x_1).$$
#
# That integral is a posterior average, and we can estimate it by brute force:
# draw many data points, weight each by how likely it makes $x$, average.
# For a mixture target it also has a closed form (derived in the docstring of
# `fmlearn.oracle`), which is what `fm.MixtureOracle` computes. Here are both,
# at a few points drawn from $p_t$ (where the estimate has enough data points
# nearby to be accurate):

# %%
def marginal_velocity_monte_carlo(x, t, n=200_000):
    """u_t(x) as a self-normalised importance-sampling average over data points x1 ~ p_1."""
    s = path.schedule
    tt = torch.tensor(t, dtype=torch.float64)
    a, b, da, db = s.alpha(tt), s.beta(tt), s.d_alpha(tt), s.d_beta(tt)
    x1 = target.sample(n, generator=gen).double()
    log_w = -0.5 * ((x[None] - a * x1) ** 2).sum(-1) / b**2   # log p_t(x | x1) up to a constant
    w = torch.softmax(log_w, dim=0)
    u_cond = da * x1 + db / b * (x[None] - a * x1)
    return (w[:, None] * u_cond).sum(0)


oracle = fm.MixtureOracle(target, path)
for t in (0.3, 0.7):
    points = oracle.marginal(t).sample(3, generator=gen).double()
    mc = torch.stack([marginal_velocity_monte_carlo(p, t) for p in points])
    exact = oracle.velocity(points, t)
    print(f"t = {t}: oracle {exact.numpy().round(3).tolist()}\n        Monte Carlo {mc.numpy().round(3).tolist()}")
    assert torch.allclose(mc, exact, atol=0.05, rtol=0.02)

# %% [markdown]
# ## 2. Five schedules
#
# All schedules go from noise ($\alpha_0 = 0, \beta_0 = 1$) to data
# ($\alpha_1 = 1, \beta_1 = 0$); they differ in *when* the signal arrives:
#
# | schedule | $\alpha_t$ | $\beta_t$ |
# |---|---|---|
# | CondOT | $t$ | $1 - t$ |
# | sqrt | $t$ | $\sqrt{1 - t}$ |
# | cosine | $\sin(\pi t / 2)$ | $\cos(\pi t / 2)$ |
# | polynomial ($n = 2$) | $t^2$ | $1 - t^2$ |
# | VP | $e^{-T(1-t)/2}$ | $\sqrt{1 - \alpha_t^2}$ |
#
# (VP is the diffusion models' variance-preserving schedule in flow-matching
# time, with $T(s) = 0.1\,s + 9.95\,s^2$; its $\alpha_0 \approx 0.0066$, not exactly 0.)

# %%
names = ["condot", "sqrt", "cosine", "polynomial", "vp"]
styles = [dict(lw=4, alpha=0.45), dict(ls="--", marker="o", markevery=20, ms=4), {}, dict(ls="-."), dict(ls=":", lw=2)]
tt = torch.linspace(0, 1, 201, dtype=torch.float64)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for name, style in zip(names, styles):
    s = fm.get_schedule(name)
    axes[0].plot(tt, s.alpha(tt), label=s.name, **style)
    axes[1].plot(tt, s.beta(tt), **style)
    axes[2].plot(tt, s.alpha(tt) / s.beta(tt).clamp(min=1e-3), **style)
axes[0].set(title=r"signal $\alpha_t$ (CondOT and sqrt: both $t$)", xlabel="t")
axes[1].set(title=r"noise $\beta_t$", xlabel="t")
axes[2].set(title=r"signal-to-noise $\alpha_t / \beta_t$", xlabel="t", yscale="log", ylim=(1e-3, 1e3))
fig.legend(loc="lower center", ncol=len(names), bbox_to_anchor=(0.5, -0.02))
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# CondOT and sqrt share $\alpha_t = t$: in the left panel the dashed sqrt
# line (with dots) runs inside the wide pale CondOT line. They differ only in
# the noise, which sqrt removes later.
#
# The right panel is the one to read: the signal-to-noise ratio says how much
# of the data a sample at time $t$ already shows. VP and polynomial keep it
# low for longer; cosine, CondOT and sqrt raise it early (sqrt a little below
# CondOT, since its noise falls later). The grid below shows what
# that does to the marginal density $p_t$ (blue) and its velocity $u_t$ (red
# arrows, on one scale in every panel), computed exactly by the oracle. Look
# down a column: at the same $t$, the schedules are at very different stages.

# %%
fig = path_grid(target, schedules=names)
plt.show()

# %% [markdown]
# ### Explore it yourself
#
# The explorer below draws the same exact panels for every schedule at
# $t = 0, 0.1, \dots, 1$: pick a schedule, slide $t$, then switch schedules
# at the same $t$. It is a slider in plain HTML with every frame embedded,
# in JupyterLab as on the course's web page, so a saved notebook reopens
# showing it; without JavaScript it shows one frame (the grid above is the
# static version).

# %%
path_explorer(target)

# %% [markdown]
# ## 3. The continuity equation
#
# Why does the marginal velocity carry $p_t$ along? Mass is conserved: the
# density at a point changes only by what flows in or out,
#
# $$\partial_t p_t(x) + \nabla \cdot \big(p_t(x)\, u_t(x)\big) = 0 .$$
#
# We check it on a grid with nothing but finite differences: the time
# derivative from $p_{t \pm \delta}$, the divergence of the flux $p_t u_t$
# from `np.gradient` (central differences). If $u_t$ is the right velocity,
# the two terms cancel up to the discretisation error.

# %%
extent = (-15.0, 15.0, -15.0, 15.0)


def continuity_terms(oracle, t, velocity=None, delta=1e-3, n=301):
    """d/dt p_t and div(p_t u_t) on an n x n grid; ``velocity`` defaults to the oracle's."""
    X, Y, pts = grid_points(extent, n)
    h = X[0, 1] - X[0, 0]
    velocity = velocity or oracle.velocity
    p = lambda s: torch.exp(oracle.log_prob(pts.double(), s)).numpy().reshape(X.shape)  # noqa: E731
    dp_dt = (p(t + delta) - p(t - delta)) / (2 * delta)
    flux = p(t)[..., None] * velocity(pts.double(), t).numpy().reshape(*X.shape, 2)
    div = np.gradient(flux[..., 0], h, axis=1) + np.gradient(flux[..., 1], h, axis=0)
    return dp_dt, div


def relative_residual(dp_dt, div):
    return np.linalg.norm(dp_dt + div) / np.linalg.norm(dp_dt)


residuals = {}
for name in ("condot", "cosine", "vp"):
    o = fm.MixtureOracle(target, fm.AffineGaussianPath(name))
    for t in (0.25, 0.5, 0.75):
        residuals[name, t] = relative_residual(*continuity_terms(o, t))
print("relative residual |dp/dt + div(p u)| / |dp/dt|:")
for (name, t), r in residuals.items():
    print(f"  {name:7s} t = {t}: {r:.1e}")

# %% [markdown]
# Residuals of a few parts in a thousand: the terms cancel to the accuracy of
# the finite differences. Central differences are second order, so doubling
# the grid spacing should make the residual about four times larger:

# %%
o = fm.MixtureOracle(target, path)
coarse = relative_residual(*continuity_terms(o, 0.5, n=151))
print(f"CondOT, t = 0.5: residual {coarse:.1e} at spacing 0.2, {residuals['condot', 0.5]:.1e} at spacing 0.1 "
      f"(ratio {coarse / residuals['condot', 0.5]:.2f})")

# %% [markdown]
# Does the check have teeth? Give it a velocity that is only slightly wrong,
# the oracle's times 1.05. The printed residual grows to about a twentieth of
# the terms. In the picture each panel has its own colour scale (compare the
# colour bars: the residuals are far smaller than $\partial_t p_t$). With the
# oracle's velocity what is left is finite-difference error, around the
# modes. With $1.05\,u_t$ the flux is 5% too large everywhere, so the residual
# is the left panel's pattern with its sign flipped: it sits exactly where
# the mass moves.

# %%
dp_dt, div = continuity_terms(o, 0.5)
dp_dt_bad, div_bad = continuity_terms(o, 0.5, velocity=lambda x, t: 1.05 * o.velocity(x, t))
r_good, r_bad = relative_residual(dp_dt, div), relative_residual(dp_dt_bad, div_bad)
print(f"CondOT, t = 0.5: relative residual {r_good:.1e} with u_t, {r_bad:.1e} (1/{1 / r_bad:.0f}) with 1.05 u_t")
X, Y, _ = grid_points(extent, 301)
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for ax, field, title in ((axes[0], dp_dt, r"$\partial_t p_t$"),
                         (axes[1], dp_dt + div, r"residual with the oracle's $u_t$"),
                         (axes[2], dp_dt_bad + div_bad, r"residual with $1.05\,u_t$")):
    lim = np.abs(field).max()  # each panel on its own symmetric colour scale
    im = ax.pcolormesh(X, Y, field, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto")
    ax.set(title=title, xlabel="coordinate 1", ylabel="coordinate 2", aspect="equal", xlim=(-9, 9), ylim=(-9, 9))
    fig.colorbar(im, ax=ax, shrink=0.85, format="%.1e")
fig.tight_layout()
plt.show()

# %%
assert max(residuals.values()) < 1e-2, residuals
assert 3 < coarse / residuals["condot", 0.5] < 5, coarse
assert r_bad > 5 * r_good, (r_good, r_bad)

# %% [markdown]
# ## 4. FM and CFM: same gradient
#
# The loss we would like to minimise compares the network with the marginal
# velocity; the loss we *can* minimise compares it with conditional velocities:
#
# $$\mathcal L_{\rm FM}(\theta) = \mathbb E\,\|u_\theta(x_t, t) - u_t(x_t)\|^2, \qquad
#   \mathcal L_{\rm CFM}(\theta) = \mathbb E\,\|u_\theta(x_t, t) - (\dot\alpha_t x_1 + \dot\beta_t x_0)\|^2 .$$
#
# Expand both squares: the $\|u_\theta\|^2$ terms are equal, the cross terms
# are equal because $u_t(x_t)$ is the conditional mean of the conditional
# velocity given $x_t$, and what is left does not depend on $\theta$. So
# $\mathcal L_{\rm CFM} = \mathcal L_{\rm FM} + C$ and the gradients agree.
# With the oracle we can compute both losses on the same samples.

# %%
def both_losses(model, n, seed):
    g = torch.Generator().manual_seed(seed)
    x0, x1, t = torch.randn(n, 2, generator=g), target.sample(n, generator=g), torch.rand(n, generator=g)
    ps = path.sample(x0, x1, t)
    pred = model(ps.xt, ps.t)
    fm_loss = ((pred - oracle.velocity(ps.xt, ps.t)) ** 2).sum(1).mean()
    cfm_loss = ((pred - ps.dxt) ** 2).sum(1).mean()
    return fm_loss, cfm_loss


print("         L_FM      L_CFM     L_CFM - L_FM")
fm_losses, gaps = [], []
for seed in range(4):  # four different networks, one set of samples
    torch.manual_seed(100 + seed)
    with torch.no_grad():
        l_fm, l_cfm = both_losses(fm.MLP(2, hidden=64), 100_000, seed=1)
    fm_losses.append(l_fm.item())
    gaps.append((l_cfm - l_fm).item())
    print(f"net {seed}: {l_fm.item():9.3f} {l_cfm.item():9.3f} {gaps[-1]:9.3f}")
print(f"from net to net, L_FM varies by {np.ptp(fm_losses):.3f}, the gap by {np.ptp(gaps):.3f}")

# %% [markdown]
# Four untrained networks give four different losses, while the gap between
# the two losses hardly moves (the last line compares how much each varies:
# what is left of the gap's variation is the Monte Carlo noise of the cross
# term on 100,000 samples). That gap is
# $C = \mathbb E\,\|\dot\alpha_t x_1 + \dot\beta_t x_0 - u_t(x_t)\|^2$, the
# variance of the conditional velocity around its mean. (For the sqrt path of
# chapter 1 this constant is infinite; the gradients still agree.)
#
# Now the gradients. We average $\nabla_\theta \mathcal L$ over many batches
# of fresh samples, both losses on the same samples, and compare the
# difference with its own Monte Carlo standard error.

# %%
def gradient(loss, params, retain_graph=False):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=retain_graph)])


torch.manual_seed(7)
net = fm.MLP(2, hidden=64)
params = list(net.parameters())
chunk = 8192
g_fm, diffs = [], []
for i in range(GRAD_SAMPLES // chunk):
    l_fm, l_cfm = both_losses(net, chunk, seed=1000 + i)
    gf = gradient(l_fm, params, retain_graph=True)  # the two losses share one forward pass
    gc = gradient(l_cfm, params)
    g_fm.append(gf)
    diffs.append(gc - gf)
g_fm, diffs = torch.stack(g_fm), torch.stack(diffs)
mean_fm, mean_diff = g_fm.mean(0), diffs.mean(0)
se_diff = diffs.std(0) / math.sqrt(len(diffs))
rel = (mean_diff.norm() / mean_fm.norm()).item()
z = (mean_diff.norm() / se_diff.norm()).item()
print(f"{GRAD_SAMPLES:,} samples: |grad CFM - grad FM| / |grad FM| = {rel:.2e}; "
      f"|difference| / its standard error = {z:.2f} (about 1 if the difference is pure noise)")

# %% [markdown]
# The difference between the two gradients is the size of its own standard
# error: Monte Carlo noise, nothing systematic, so more samples would shrink
# it further, like $1/\sqrt{n}$ with the number of samples $n$.

# %%
assert np.std(gaps) < 0.01 * np.mean(np.abs(gaps)), gaps
assert np.ptp(gaps) < 0.1 * np.ptp(fm_losses), (gaps, fm_losses)
assert z < 3, z
assert rel < fm.budget(default=0.02, quick=0.06), rel

# %% [markdown]
# ## 5. How close does training get?
#
# Train the chapter-1 network on the CondOT path and measure its relative
# error against the oracle, $\|u_\theta - u_t\| / \|u_t\|$ over samples of $p_t$,
# across $t$.

# %%
model = fm.MLP(2, hidden=256, depth=3)
run = fm.train(model, fm.CFMObjective(path, target), steps=TRAIN_STEPS, batch_size=256, lr=1e-3, seed=SEED)

t_grid = np.linspace(0.01, 0.99, 50)
errors = np.array([fm.velocity_error(model, oracle, float(t), n=4000, generator=gen) for t in t_grid])
t_speed = np.union1d(np.linspace(0, 0.05, 26), t_grid)  # finer near t = 0, where u_t changes fast
speed = np.array([oracle.velocity(oracle.marginal(float(t)).sample(4000, generator=gen), float(t))
                  .pow(2).sum(1).mean().sqrt().item() for t in t_speed])
print(f"RMS size of the exact u_t: {speed[0]:.2f} at t = 0, smallest {speed.min():.2f} at t = "
      f"{t_speed[speed.argmin()]:.3f}, {speed[-1]:.1f} at t = {t_speed[-1]:.2f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].plot(t_grid, errors[:, 1], marker=".", label=r"RMS error $|u_\theta - u_t|$")
axes[0].plot(t_speed, speed, color="gray", ls="--", label=r"RMS size of $u_t$")
axes[0].set(title=f"learned vs oracle velocity ({TRAIN_STEPS} steps)", xlabel="t", yscale="log")
axes[0].legend(fontsize=8)
inner = (t_grid >= 0.05) & (t_grid <= 0.95)
axes[1].plot(t_grid[inner], errors[inner, 0], marker=".")
axes[1].set(title="relative error, t in [0.05, 0.95]", xlabel="t", ylabel=r"$\|u_\theta - u_t\| / \|u_t\|$",
            ylim=(0, None))
fig.tight_layout()
plt.show()

# %% [markdown]
# Left: the error against the size of the velocity itself. Near $t = 0.02$ the
# exact velocity almost vanishes (the line printed before the figure): at
# $t = 0$ every particle heads for the data mean (the origin), $u_0(x) = -x$,
# and within a few hundredths of time the pull towards the nearest modes
# cancels that and takes over. There a relative error divides by nearly zero,
# so the right panel leaves the ends out. Inside, the relative error is a few
# percent over most of the path; it rises towards the left edge of the
# window, where $u_t$ is still small, and has a bump in the middle of the
# path, where the 11 streams separate. The next cell prints the numbers.

# %%
inner, middle = (t_grid >= 0.05) & (t_grid <= 0.95), (t_grid > 0.3) & (t_grid < 0.7)
rel_err = errors[:, 0]
print(f"relative error for t in [0.05, 0.95]: median {np.median(rel_err[inner]):.3f}, "
      f"largest {rel_err[inner].max():.3f} at t = {t_grid[inner][rel_err[inner].argmax()]:.2f}; "
      f"largest for 0.3 < t < 0.7: {rel_err[middle].max():.3f} at t = {t_grid[middle][rel_err[middle].argmax()]:.2f}")
assert rel_err[inner].max() <= VELOCITY_ERR_MAX, errors

# %% [markdown]
# ## Summary
#
# - The **marginal velocity** is the posterior mean of the conditional velocity;
#   for a Gaussian-mixture target it has a closed form, the oracle, which
#   matches a brute-force Monte Carlo average.
# - **Schedules** differ in when the signal arrives; their signal-to-noise
#   ratio $\alpha_t / \beta_t$ is the quantity to compare.
# - The marginal velocity satisfies the **continuity equation**; a velocity 5%
#   off does not.
# - **FM and CFM** differ by a constant; their gradients agree up to Monte
#   Carlo noise, which is why training on conditional velocities works.
#
# **Exercises:** [ex02_probability_paths.ipynb](../exercises/ex02_probability_paths.ipynb),
# graded tasks on this chapter, each followed by a check that gives a hint.
#
# Next, chapter 3: solving the ODE accurately and cheaply.

# %%
print(fm.config.run_time(T_START))

# %% [markdown]
# ## Further reading
#
# The papers this chapter follows, and what to read each one for. Full entries are on the
# [references page](../book/references.md) (from `book/references.bib`).
#
# - [Lipman2024] Lipman et al. 2024, *Flow Matching Guide and Code* (arXiv 2412.06264): probability paths,
#   affine schedulers and the continuity equation, and the marginalization trick; the source of this chapter's
#   notation.
# - [Lipman2023] Lipman et al. 2023, *Flow Matching for Generative Modeling* (arXiv 2210.02747): the marginal
#   velocity as a posterior average and the proof that FM and CFM have the same gradient (section 4).
# - [Albergo2023] Albergo and Vanden-Eijnden 2023, *Building Normalizing Flows with Stochastic Interpolants*
#   (arXiv 2209.15571): general schedules $(\alpha_t, \beta_t)$ and why they share marginals up to a change of
#   time and scale.
