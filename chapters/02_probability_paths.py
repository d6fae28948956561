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
#   velocity of a Gaussian-mixture target (the *oracle*), derived step by step;
# - five schedules side by side: CondOT, sqrt, cosine, polynomial and VP, and
#   why their signal-to-noise ratios, not their formulas, are what to compare;
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
# The data $p_1$ is chapter 1's target: 11 equally weighted Gaussian modes of standard
# deviation $s = 1$, evenly spaced on a circle of radius $R = 10$; the source is $\mathcal N(0, I)$.
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
# The conditional velocity is what a point moves at when its data point is
# known: on the conditional path $x_0 = (x - \alpha_t x_1)/\beta_t$, so
# $\dot\alpha_t x_1 + \dot\beta_t x_0$ takes the form on the right. The next
# subsection shows why the average is the right velocity, and works it out for a
# mixture. First, the integral is a posterior average, and we can estimate it by
# brute force: draw many data points, weight each by how likely it makes $x$,
# average. For a mixture target it also has a closed form (derived below),
# which is what `fm.MixtureOracle` computes. Here are both, at a few points
# drawn from $p_t$ (where the estimate has enough data points nearby to be
# accurate):

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
# ### The oracle, derived
#
# **Step 1: the posterior average carries $p_t$.** Given $x_1$, the
# conditional path is the noise $\mathcal N(0, I)$ moved by the map
# $x_0 \mapsto \alpha_t x_1 + \beta_t x_0$, whose points move at
# $u_t(x \mid x_1)$; mass moved by a velocity obeys the continuity equation
# (section 3; in one line: for any smooth test function $\varphi$,
# $\frac{d}{dt}\mathbb E\,\varphi(x_t) = \mathbb E\,\nabla\varphi(x_t)\cdot u_t(x_t) = \int \nabla\varphi\cdot u_t\, p_t
# = -\int \varphi\, \nabla\cdot(p_t u_t)$, integrating by parts; as this holds for every $\varphi$,
# $\partial_t p_t = -\nabla\cdot(p_t u_t)$), so
# $\partial_t p_t(x \mid x_1) = -\nabla\cdot\big(p_t(x \mid x_1)\, u_t(x \mid x_1)\big)$.
# Multiply by $p_1(x_1)$ and integrate over $x_1$; the derivatives in $t$ and
# $x$ pass outside the integral:
#
# $$\partial_t p_t(x) = -\nabla\cdot \int u_t(x \mid x_1)\, p_t(x \mid x_1)\, p_1(x_1)\, dx_1
#   = -\nabla\cdot\big(p_t(x)\, u_t(x)\big),$$
#
# with $u_t$ the ratio above. By Bayes' rule
# $p_t(x \mid x_1)\, p_1(x_1) / p_t(x) = p(x_1 \mid x_t = x)$, so $u_t(x)$ is the
# posterior mean of the conditional velocity: a velocity that carries the
# marginal path, and the one CFM regresses onto (any $u_t + w_t$ with
# $\nabla\cdot(p_t w_t) = 0$ would carry it too).
#
# **Step 2: everything hangs on $\mathbb E[x_1 \mid x_t = x]$.** Put
# $x_0 = (x - \alpha_t x_1)/\beta_t$ into the conditional velocity and take the
# posterior mean; it is affine in the posterior mean of the data point:
#
# $$u_t(x) = \frac{\dot\beta_t}{\beta_t}\, x + \Big(\dot\alpha_t - \frac{\alpha_t \dot\beta_t}{\beta_t}\Big)\,
#   \mathbb E[x_1 \mid x_t = x].$$
#
# **Step 3: one Gaussian component.** Let $x_1 \sim \mathcal N(m, s^2 I)$.
# Then $x_t = \alpha_t x_1 + \beta_t x_0$ and $x_1$ are jointly Gaussian, with
# $x_t \sim \mathcal N(\alpha_t m, v_t I)$, $v_t = \alpha_t^2 s^2 + \beta_t^2$, and
# covariance $\mathrm{Cov}(x_1, x_t) = \alpha_t s^2 I$ ($x_0$ is independent of
# $x_1$). Conditioning a Gaussian is linear regression, slope = covariance /
# variance:
#
# $$\mathbb E[x_1 \mid x_t = x] = m + \frac{\alpha_t s^2}{v_t}\,(x - \alpha_t m).$$
#
# Put it into step 2 and write $x = \alpha_t m + \delta$: the coefficient of
# $m$ is $\dot\alpha_t$, and that of $\delta$ is
# $\big(\dot\beta_t v_t/\beta_t + \alpha_t \dot\alpha_t s^2 - \alpha_t^2 s^2 \dot\beta_t/\beta_t\big)/v_t
#  = (\alpha_t\dot\alpha_t s^2 + \beta_t\dot\beta_t)/v_t$. So
#
# $$u_t(x) = \dot\alpha_t m + \frac{\alpha_t\dot\alpha_t s^2 + \beta_t\dot\beta_t}{v_t}\,(x - \alpha_t m),$$
#
# which reads: the Gaussian's centre $\alpha_t m$ moves at $\dot\alpha_t m$, and
# its spread $\sqrt{v_t}$ grows at the relative rate
# $\dot v_t / (2 v_t) = (\alpha_t\dot\alpha_t s^2 + \beta_t\dot\beta_t)/v_t$.
#
# **Step 4: the mixture** $p_1 = \sum_k w_k\, \mathcal N(m_k, s_k^2 I)$. Given the
# component $k$, step 3 applies with $(m_k, s_k)$. Averaging over $k$ with its
# posterior probability (Bayes' rule again),
#
# $$r_k(x) = \frac{w_k\, \mathcal N(x;\, \alpha_t m_k, v_{k,t} I)}{\sum_j w_j\, \mathcal N(x;\, \alpha_t m_j, v_{j,t} I)},
#   \qquad v_{k,t} = \alpha_t^2 s_k^2 + \beta_t^2,$$
#
# gives $\mathbb E[x_1 \mid x_t = x] = \sum_k r_k(x)\, \mathbb E[x_1 \mid x_t = x, k]$,
# and since step 2 is affine with the same coefficients for every $k$ and the
# $r_k$ sum to 1:
#
# $$\boxed{\,u_t(x) = \sum_k r_k(x) \Big[\dot\alpha_t m_k
#   + \frac{\alpha_t\dot\alpha_t s_k^2 + \beta_t\dot\beta_t}{v_{k,t}}\,(x - \alpha_t m_k)\Big]\,}$$
#
# The marginal itself is the mixture $p_t = \sum_k w_k\, \mathcal N(\alpha_t m_k, v_{k,t} I)$.
# (With a different std per coordinate, the same holds coordinate by coordinate.)
# The oracle's velocity is this formula; here it is again, written from the box
# in a few lines, against the oracle for two schedules. The control uses the
# prior weights $w_k$ instead of the posterior $r_k$ and must miss.

# %%
def velocity_by_formula(x, t, schedule, weights="posterior"):
    """The boxed formula in float64 for the chapter's mixture (stds per coordinate, shape (K, d))."""
    tt = torch.tensor(t, dtype=torch.float64)
    a, b, da, db = schedule.alpha(tt), schedule.beta(tt), schedule.d_alpha(tt), schedule.d_beta(tt)
    m, s2, w = target.means.double(), target.stds.double() ** 2, target.weights.double()
    v = a**2 * s2 + b**2                                                    # v_k, (K, d)
    delta = x[:, None, :] - a * m[None]                                     # x - alpha m_k, (n, K, d)
    log_r = torch.log(w) - 0.5 * (torch.log(v).sum(-1) + (delta**2 / v).sum(-1))   # log w_k N(x; ...) + const
    r = torch.softmax(log_r, dim=1) if weights == "posterior" else w.expand(len(x), -1)
    u_k = da * m + (a * da * s2 + b * db) / v * delta                       # step 3 per component, (n, K, d)
    return (r[:, :, None] * u_k).sum(1)


check_gen = torch.Generator().manual_seed(SEED + 1)  # its own stream: the chapter's later draws are unchanged
for name in ("condot", "cosine"):
    o = fm.MixtureOracle(target, fm.AffineGaussianPath(name))
    for t in (0.1, 0.5, 0.9):
        pts = o.marginal(t).sample(5, generator=check_gen).double()
        gap = (velocity_by_formula(pts, t, o.path.schedule) - o.velocity(pts, t)).abs().max().item()
        miss = (velocity_by_formula(pts, t, o.path.schedule, "prior") - o.velocity(pts, t)).abs().max().item()
        print(f"{name:6s} t = {t}: |formula - oracle| = {gap:.1e}; control with the prior weights: {miss:.1f}")
        assert gap < 1e-6 and miss > 0.1, (name, t, gap, miss)

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
# time (Ho et al. 2020; Song et al. 2021), with $T(s) = \int_0^s b = 0.1\,s + 9.95\,s^2$ for the noise
# rate $b$ rising linearly from 0.1 to 20; its $\alpha_0 \approx 0.0066$, not exactly 0.)

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
axes[2].set(title=r"$\sqrt{\mathrm{SNR}_t} = \alpha_t / \beta_t$", xlabel="t", yscale="log", ylim=(1e-3, 1e3))
fig.legend(loc="lower center", ncol=len(names), bbox_to_anchor=(0.5, -0.02))
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# CondOT and sqrt share $\alpha_t = t$: in the left panel the dashed sqrt
# line (with dots) runs inside the wide pale CondOT line. They differ only in
# the noise, which sqrt removes later.
#
# The right panel is the one to read: the signal-to-noise ratio
# $\mathrm{SNR}_t = \alpha_t^2/\beta_t^2$ (the panel plots its square root) says how
# much of the data a sample at time $t$ already shows. VP and polynomial keep it
# low for longer; cosine, CondOT and sqrt raise it early (sqrt a little below
# CondOT, since its noise falls later).
#
# ### Why the signal-to-noise ratio is the quantity to compare
#
# Every affine path is the CondOT path, rescaled and run on another clock.
# Factor out $c_t = \alpha_t + \beta_t$:
#
# $$\alpha_t x_1 + \beta_t x_0 = c_t\,\big(\tau_t x_1 + (1 - \tau_t)\, x_0\big), \qquad
#   \tau_t = \frac{\alpha_t}{\alpha_t + \beta_t}, \qquad \frac{\tau_t}{1 - \tau_t} = \frac{\alpha_t}{\beta_t} = \sqrt{\mathrm{SNR}_t}.$$
#
# The bracket is the CondOT point $z_{\tau}$ at time $\tau_t$, and $\tau_t$ is
# fixed by the SNR alone. So **the SNR fixes $p_t$ up to a scaling of space**:
# $p_t$ is CondOT's marginal at time $\tau_t$, stretched by $c_t$, and two
# schedules that reach the same SNR have the same marginal there up to the
# factor $x \mapsto (c'_{t'}/c_t)\,x$ ($c'$ the other schedule's $\alpha + \beta$, at its time $t'$ of equal SNR).
#
# The velocities follow. For one pair $(x_0, x_1)$, the chain rule gives
# $\dot\alpha_t x_1 + \dot\beta_t x_0 = \frac{d}{dt}\big(c_t z_{\tau_t}\big) = \dot c_t z_{\tau_t} + c_t\dot\tau_t (x_1 - x_0)$;
# conditioning on $x_t = y$ is conditioning on $z_{\tau_t} = y / c_t$, so
#
# $$u_t(y) = \frac{\dot c_t}{c_t}\, y + c_t \dot\tau_t\, u^{\rm OT}_{\tau_t}(y / c_t).$$
#
# If $z(\tau)$ solves CondOT's ODE, then $y(t) = c_t\, z(\tau_t)$ solves this one
# (differentiate: $\dot y = \dot c_t z + c_t \dot\tau_t u^{\rm OT}_{\tau_t}(z)$, the
# same right-hand side). When $\alpha_0 = 0$, $\beta_0 = 1$, $\alpha_1 = 1$,
# $\beta_1 = 0$, we have $\tau_0 = 0$, $\tau_1 = 1$ and $c_0 = c_1 = 1$, and an SNR
# that rises all the way makes $\tau_t$ a valid clock. Then $y(0) = z(0)$ and
# $y(1) = z(1)$: **with exact velocities, every such schedule sends each noise
# point to the same data point.** The schedules differ in what happens on the
# way, and that is what matters in practice: a solver with steps equal in $t$
# takes steps of very different size in $\tau$ (its discretisation error
# changes, chapter 3), and training that draws $t$ uniformly spends its samples
# on a different spread of noise levels $\tau_t$ and regresses onto a target
# scaled by $c_t\dot\tau_t$ (the learning problem changes).
#
# The run checks it with the oracle: the same 300 noise points, solved to
# $t = 1$ under each schedule at a tight tolerance, should land on the same
# end points, while half-way they are in different places. VP is the control:
# its $\alpha_0 \approx 0.0066$ is not 0, so its sampler, started from the noise,
# follows CondOT's flow from $\tau_0 = \alpha_0/(\alpha_0 + \beta_0)$ starting at
# $x_0 / c_0$, a slightly different map, which the run predicts too. The last
# column, Euler's error with 16 equal steps, is the discretisation the schedule
# changes.

# %%
x0_sched = torch.randn(300, 2, generator=check_gen, dtype=torch.float64)
ends, halfway, euler16 = {}, {}, {}
for name in names:
    o = fm.MixtureOracle(target, fm.AffineGaussianPath(name))
    ends[name] = fm.odeint(o, x0_sched, method="dopri5", rtol=1e-10, atol=1e-10).x
    halfway[name] = fm.odeint(o, x0_sched, method="dopri5", times=(0.0, 0.5), rtol=1e-7, atol=1e-7).x
    euler16[name] = (fm.odeint(o, x0_sched, steps=16, method="euler").x - ends[name]).norm(dim=1).mean().item()
end_gap = {n: (ends[n] - ends["condot"]).norm(dim=1).max().item() for n in names}
half_gap = {n: (halfway[n] - halfway["condot"]).norm(dim=1).mean().item() for n in names}
print("schedule    largest end-point gap to CondOT   mean gap at t = 0.5   Euler, 16 steps: mean error")
for n in names:
    print(f"{n:11s} {end_gap[n]:18.1e} {half_gap[n]:24.2f} {euler16[n]:22.3f}")

vp = fm.get_schedule("vp")
a0, b0 = (float(f(torch.tensor(0.0, dtype=torch.float64))) for f in (vp.alpha, vp.beta))
tau0 = a0 / (a0 + b0)
vp_predicted = fm.odeint(oracle, x0_sched / (a0 + b0), method="dopri5", times=(tau0, 1.0), rtol=1e-10, atol=1e-10).x
vp_gap = (vp_predicted - ends["vp"]).norm(dim=1).max().item()
print(f"VP: alpha_0 = {a0:.4f}, tau_0 = {tau0:.4f}; CondOT from (tau_0, x0 / c_0) lands within {vp_gap:.1e} of VP's end points")

# %%
same_map = ["condot", "sqrt", "cosine", "polynomial"]
assert all(end_gap[n] < 1e-6 for n in same_map), end_gap
assert all(half_gap[n] > 0.1 for n in same_map[1:]), half_gap
assert end_gap["vp"] > 1e-3 and vp_gap < 1e-6, (end_gap["vp"], vp_gap)

# %% [markdown]
# Four schedules, one end-point map, to the solver's tolerance; half-way their
# particles are apart (by the printed mean gaps: far for some schedules, close for
# sqrt, whose clock runs close to CondOT's), and 16 Euler steps miss by amounts that differ
# from one schedule to the next (last column). VP's end points differ, exactly
# as the shifted start predicts.
#
# The grid below shows what
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
# Four untrained networks give slightly different losses (untrained networks
# output nearly 0, so $\mathcal L_{\rm FM} \approx \mathbb E|u_t|^2$ for all of them), while the gap between
# the two losses hardly moves (the last line compares how much each varies:
# what is left of the gap's variation is the Monte Carlo noise of the cross
# term on 100,000 samples). That gap is
# $C = \mathbb E\,\|\dot\alpha_t x_1 + \dot\beta_t x_0 - u_t(x_t)\|^2$, the
# variance of the conditional velocity around its mean. (For the sqrt path of
# chapter 1, $\beta_t = \sqrt{1-t}$, $\dot\beta_t = -1/(2\sqrt{1-t})$, so $C$ contains
# $\int d/(4(1-t))\,dt = \infty$; the expected gradients still agree, but the
# per-sample CFM gradient then has unbounded variance near $t = 1$.)
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
# exact velocity almost vanishes (the line printed before the figure; the
# next subsection derives why there). Where $u_t$ nearly vanishes a relative
# error divides by nearly zero, so the right panel leaves the ends out. Inside,
# the relative error is a few percent over most of the path; it rises towards
# the left edge of the window, where $u_t$ is still small, and has a bump in
# the middle of the path, where the 11 streams separate. The next cell prints
# the numbers.

# %%
inner, middle = (t_grid >= 0.05) & (t_grid <= 0.95), (t_grid > 0.3) & (t_grid < 0.7)
rel_err = errors[:, 0]
print(f"relative error for t in [0.05, 0.95]: median {np.median(rel_err[inner]):.3f}, "
      f"largest {rel_err[inner].max():.3f} at t = {t_grid[inner][rel_err[inner].argmax()]:.2f}; "
      f"largest for 0.3 < t < 0.7: {rel_err[middle].max():.3f} at t = {t_grid[middle][rel_err[middle].argmax()]:.2f}")
assert rel_err[inner].max() <= VELOCITY_ERR_MAX, errors

# %% [markdown]
# ### Why the velocity vanishes near t = 0.02
#
# At $t = 0$ the noise says nothing about the data point, so
# $u_0(x) = \mathbb E[x_1] - x = -x$ (the target's mean is 0): every particle
# heads for the origin and the cloud contracts. Later it must expand onto the
# modes, so the radial part of the velocity turns around. When, follows from
# the cloud's mean square radius, exactly and for any target. In our 2
# coordinates, with $x_0$ independent of $x_1$ and $\mathbb E|x_1|^2 = 2\sigma_d^2$
# ($\sigma_d^2$ the target's variance per coordinate), CondOT gives
#
# $$\mathbb E|x_t|^2 = 2(1-t)^2 + 2t^2\sigma_d^2, \qquad
#   \mathbb E\big[x_t \cdot u_t(x_t)\big] = \tfrac12 \tfrac{d}{dt}\mathbb E|x_t|^2 = 2\big(t\sigma_d^2 - (1-t)\big).$$
#
# The middle step: for each pair, $\frac{d}{dt}|x_t|^2 = 2\, x_t \cdot (x_1 - x_0)$,
# and averaging $x_1 - x_0$ over the pairs that pass through $x_t$ gives
# $u_t(x_t)$ (section 1). So the average radial velocity changes sign at
#
# $$t^* = \frac{1}{1 + \sigma_d^2}.$$
#
# For our mixture $\sigma_d^2 = s^2 + R^2/2 = 1 + 10^2/2 = 51$ (each mode adds its
# own variance $s^2$; over modes evenly spread on a circle of radius $R$,
# $\cos^2$ of the angle averages to $\tfrac12$), so $t^* = 1/52 \approx 0.019$.
#
# Not only the average vanishes there. A point that is still mostly noise
# cannot see the individual modes: by Bayes' rule the posterior of $x_1$ given
# $x_t = x$ is $p_1(x_1)$ reweighted by
# $\exp\big(t\, x\cdot x_1/(1-t)^2 - t^2 |x_1|^2 / (2(1-t)^2)\big)$ (expand the square in
# $p_t(x \mid x_1)$). For small $t$ this is a weak tilt $e^{\theta\cdot x_1}$,
# $\theta = t x/(1-t)^2$, plus a term of order $t^2$, and a weak tilt moves the
# mean by $\mathrm{Cov}(x_1)\,\theta$ plus terms of order $\theta^2$ (differentiate
# $\int x_1 e^{\theta\cdot x_1} p_1 \,/ \int e^{\theta\cdot x_1} p_1$ at $\theta = 0$). So,
# to first order, every target with mean 0 and covariance $\sigma_d^2 I$ has the
# velocity of the Gaussian $\mathcal N(0, \sigma_d^2 I)$, which is section 1's box
# with one component, $m = 0$ and $s^2 = \sigma_d^2$:
#
# $$u_t(x) \approx \frac{t\sigma_d^2 - (1-t)}{(1-t)^2 + t^2\sigma_d^2}\; x ,$$
#
# which vanishes at every $x$ near $t^*$ (exactly at $\sigma_d^2 t = (1-t)^2$ in this
# first-order surrogate, $t \approx 0.0189$; the exact $t^*$ comes from the radial identity
# above; the surrogate only explains why the velocity is small at every $x$ there,
# not zero: the printed RMS speed is small, not 0). The cell computes $\sigma_d^2$ and $t^*$ from the
# target, checks the radial identity on samples at four times (the $\pm$ is one
# standard error), and checks that the smallest RMS speed found on the grid
# above lies within one grid step of $t^*$. The control, $\sigma_d^2 = s^2 = 1$
# (forgetting that the modes are spread out), must miss.

# %%
w, m, s2 = target.weights.double(), target.means.double(), target.stds.double() ** 2
sigma_d2 = (w[:, None] * (m**2 + s2)).sum(0)            # E[x1_i^2] per coordinate (the mean is 0)
assert torch.allclose(sigma_d2, sigma_d2[0]), sigma_d2   # the same for both coordinates
sigma_d2 = sigma_d2[0].item()
t_star = 1 / (1 + sigma_d2)
grid_step = t_speed[1] - t_speed[0]
t_rms_min = t_speed[speed.argmin()]
x_star = oracle.marginal(t_star).sample(4000, generator=check_gen)
rms_star = oracle.velocity(x_star, t_star).pow(2).sum(1).mean().sqrt().item()
print(f"sigma_d^2 = {sigma_d2:.1f}, t* = 1/(1 + sigma_d^2) = {t_star:.4f}; smallest RMS speed on the grid at "
      f"t = {t_rms_min:.3f} (grid step {grid_step:.3f}); RMS speed at t* itself {rms_star:.3f}, {speed[0]:.2f} at t = 0")
print("t         E[x . u_t(x)], 100,000 samples    2 (t sigma_d^2 - (1 - t))    control, sigma_d^2 = 1")
for t in (0.01, t_star, 0.03, 0.3):
    x = oracle.marginal(t).sample(100_000, generator=check_gen).double()
    xu = (x * oracle.velocity(x, t)).sum(1)
    mean, se = xu.mean().item(), xu.std().item() / 100_000**0.5
    exact, control = 2 * (t * sigma_d2 - (1 - t)), 2 * (t - (1 - t))
    print(f"{t:.4f} {mean:14.3f} ± {se:.3f} {exact:26.3f} {control:26.3f}")
    assert abs(mean - exact) < 4 * se + 1e-9, (t, mean, exact)
assert abs(mean - control) > 100 * se, (mean, control)   # at t = 0.3 the control is far off
assert abs(t_rms_min - t_star) <= grid_step, (t_rms_min, t_star)

# %% [markdown]
# ## Summary
#
# - The **marginal velocity** is the posterior mean of the conditional velocity
#   (that average is what carries $p_t$); it is affine in $\mathbb E[x_1 \mid x_t = x]$,
#   which Gaussian conditioning gives per component, so a Gaussian-mixture
#   target has a closed form, the oracle. It matches a brute-force Monte Carlo
#   average, and the formula written from the page matches the package.
# - **Schedules** differ in when the signal arrives. Their signal-to-noise
#   ratio $\alpha_t^2 / \beta_t^2$ is the quantity to compare: it fixes $p_t$ up to
#   a scaling of space, so with exact velocities every schedule with
#   $\alpha_0 = 0$, $\beta_0 = 1$, $\alpha_1 = 1$, $\beta_1 = 0$ and an increasing SNR has the
#   same end-point map. The schedule changes the
#   velocity on the way, hence the training problem and the discretisation error.
# - The exact CondOT velocity of this target almost vanishes at
#   $t^* = 1/(1 + \sigma_d^2)$, where the cloud stops contracting and starts to
#   expand; chapter 3 shows what that costs a solver.
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
# - [Kingma2021] Kingma et al. 2021, *Variational Diffusion Models* (arXiv 2107.00630): the signal-to-noise
#   ratio as the one quantity a noise schedule sets, and why the continuous-time objective depends on the
#   schedule only through its end points.
