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
# # Chapter 7 — Diffusion as a special case
#
# A flow matching model trained on a Gaussian path knows more than its
# velocity: the score $\nabla \log p_t$ of every intermediate marginal is a
# fixed affine function of it. With the score in hand, one network samples
# not only with the ODE but with a whole family of stochastic differential
# equations that share the ODE's marginals, and one member of that family is
# exactly the reverse process of a diffusion model. We derive each of these
# facts, and check each against the exact oracle of the 11-mode mixture.
#
# **What you will learn**
# - the four things a network can predict on a Gaussian path (velocity, score,
#   noise, data) and the exact formulas between them, with their singular ends;
# - the SDE family $dX_t = [u_t + \tfrac{g_t^2}{2} s_t]\,dt + g_t\, dW_t$ with the
#   flow's marginals, and its Euler–Maruyama sampler;
# - diffusion models as the choice $g_t^2 = 2\beta_t D_t / \alpha_t$, and the VP
#   and VE schedules;
# - why the noise must fade near the data end, and the Langevin corrector;
# - how to compare samples of a multi-modal target with the 2-Wasserstein
#   distance without drowning in its noise.
#
# **Prerequisites:** chapters 1–3 (section 7 reuses chapter 4's small MLP recipe, no more).
#
# **Run time:** about a minute on a 2-core laptop CPU at the default budget
# (a good part of it training a small network; the cell shows a progress
# bar), under half a minute in quick mode (`FMLEARN_QUICK=1`); the last cell
# prints how long your run took.

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
import torch

from fmlearn.plotting import FIRST, HIGHLIGHT, plot_samples, plot_trajectories, plot_vector_field
from fmlearn.schedules import VE
from fmlearn.widgets import noise_explorer

T_START = time.perf_counter()
SEED = 0
fm.seed_everything(SEED)
gen = torch.Generator().manual_seed(SEED)
print(fm.describe())

N = fm.budget(default=2000, quick=1000)             # samples per W2 comparison
SDE_STEPS = fm.budget(default=500, quick=300)       # Euler-Maruyama steps with the oracle
TRAIN_STEPS = fm.budget(default=4400, quick=1050)
W2_MARGIN = fm.budget(default=0.05, quick=0.08)     # oracle samplers: W2 within the floor + this
MODEL_MARGIN = fm.budget(default=0.10, quick=0.20)  # the trained model (quick mode trains 4x less)
FRACTION_TOL = fm.budget(default=0.03, quick=0.04)  # each mode's share within 1/11 +- this (4.4 std at n = 1000)

target = fm.GaussianMixture.symmetric_2d()
path = fm.AffineGaussianPath("condot")
oracle = fm.MixtureOracle(target, path)

# %% [markdown]
# ## 1. Four predictions, one quantity
#
# On the path $x_t = \alpha_t x_1 + \beta_t x_0$ with $x_0 \sim \mathcal N(0, I)$
# independent of the data $x_1$, write $\hat x_0(x) = \mathbb E[x_0 \mid x_t = x]$
# (the noise a network could predict) and $\hat x_1(x) = \mathbb E[x_1 \mid x_t = x]$
# (the data). Taking $\mathbb E[\,\cdot \mid x_t = x]$ of $x_t$ itself and of the
# conditional velocity (chapter 2: the marginal velocity is its conditional mean) gives
#
# $$x = \alpha_t \hat x_1 + \beta_t \hat x_0, \qquad u_t(x) = \dot\alpha_t \hat x_1 + \dot\beta_t \hat x_0 .$$
#
# The score follows from Tweedie's formula (Efron 2011): $p_t(x) = \mathbb E_{x_1} \mathcal N(x;\, \alpha_t x_1, \beta_t^2 I)$,
# so differentiating under the expectation and dividing by $p_t(x)$ turns the average over $x_1$ into the
# posterior average given $x_t = x$, and $x - \alpha_t x_1 = \beta_t x_0$ on the path:
#
# $$\nabla \log p_t(x) = \mathbb E\Big[-\frac{x - \alpha_t x_1}{\beta_t^2} \,\Big|\, x_t = x\Big] = -\frac{\hat x_0(x)}{\beta_t}.$$
#
# Solve the $2\times 2$ system, with $D_t = \dot\alpha_t \beta_t - \alpha_t \dot\beta_t$ (positive wherever the path moves, for the paths of this course: $\alpha_t, \beta_t \ge 0$, $\dot\alpha_t \ge 0 \ge \dot\beta_t$, not both zero):
#
# $$\hat x_1 = \frac{\beta_t u - \dot\beta_t x}{D_t}, \quad \hat x_0 = \frac{\dot\alpha_t x - \alpha_t u}{D_t}, \quad
# s_t = \frac{\alpha_t u - \dot\alpha_t x}{\beta_t D_t}, \quad u = \frac{\dot\alpha_t}{\alpha_t}(x + \beta_t^2 s) - \beta_t\dot\beta_t\, s .$$
#
# Velocity, score, noise and data predictions carry the same information: at
# each $(x, t)$ each is an affine function of any other (affine, not linear:
# $x$ enters with its own coefficient). For
# CondOT ($\alpha_t = t$, $\beta_t = 1 - t$, $D_t = 1$) the score is $s_t = (t\,u - x)/(1 - t)$.
# By hand, with the package, and against the oracle's score, computed separately
# from the mixture's posterior weights:

# %%
def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


t = 0.6
x = oracle.marginal(t).sample(N, generator=gen)
u = oracle.velocity(x, t)
by_hand = (t * u - x) / (1 - t)
print(f"by hand vs oracle score: {rel(by_hand, oracle.score(x, t)):.1e}; "
      f"package vs oracle score: {rel(path.score_from_velocity(u, x, t), oracle.score(x, t)):.1e}")
assert rel(by_hand, oracle.score(x, t)) < 1e-4
assert rel(path.score_from_velocity(u, x, t), oracle.score(x, t)) < 1e-4

# %% [markdown]
# The same check for four schedules (the VP and VE schedules are section 4's
# subject) at 19 times in $[0.05, 0.95]$, in float32, with the round trips
# velocity → score → velocity and velocity → noise → velocity:

# %%
SCHEDULES = {"CondOT": "condot", "cosine": "cosine", "VP": "vp", "VE": VE(0.01, 50.0)}
worst = {}
for name, sched in SCHEDULES.items():
    p, errs = fm.AffineGaussianPath(sched), []
    o = fm.MixtureOracle(target, p)
    for t in torch.linspace(0.05, 0.95, 19).tolist():
        x = o.marginal(t).sample(500, generator=gen)
        u, s = o.velocity(x, t), o.score(x, t)
        errs += [rel(p.score_from_velocity(u, x, t), s), rel(p.velocity_from_score(s, x, t), u),
                 rel(p.velocity_from_x0(p.x0_from_velocity(u, x, t), x, t), u)]
    worst[name] = max(errs)
print("worst relative error per schedule:", {k: f"{v:.1e}" for k, v in worst.items()})
assert max(worst.values()) <= 1e-3

# %% [markdown]
# Where the velocity points along the path, the score points towards the
# nearest high-density region of $p_t$. At $t = 0.6$ (arrows rescaled per panel; on the right the score
# computed from $u_t$ is drawn wide and the oracle's score narrow on top of it, so where they agree each wide
# arrow shows a narrow one down its middle):

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
plot_vector_field(oracle, 0.6, ax=axes[0], n=17, color=FIRST, title="velocity $u_t$ at t = 0.6")
plot_vector_field(lambda x, t: path.score_from_velocity(oracle(x, t), x, t), 0.6, ax=axes[1], n=17, color=FIRST,
                  width=0.006)
plot_vector_field(oracle.score, 0.6, ax=axes[1], n=17, color=HIGHLIGHT, width=0.0022,
                  title="score: from $u_t$ (wide, blue), oracle (narrow, red)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The red arrows cover the blue ones exactly. **The ends are singular.** The
# score divides by $\beta_t D_t$, which is $1 - t$ for CondOT: at $t = 1$ the
# velocity no longer says anything about the noise. The way back divides by
# $\alpha_t$, zero at $t = 0$, where the score of $\mathcal N(0, I)$ says nothing
# about the data. The package refuses these times with an error rather than
# return inf or NaN (VP and VE are regular at both ends: VP's $\alpha_t$ never reaches 0, VE's
# $\beta_t$ never does; their schedules are given in section 3 and 4):

# %%
try:
    path.score_from_velocity(u, x, 1.0)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 2. A family of samplers with the same marginals
#
# Add noise of scale $g_t \ge 0$ to the flow, and correct the drift with the score:
#
# $$dX_t = \Big[u_t(X_t) + \frac{g_t^2}{2}\, s_t(X_t)\Big] dt + g_t\, dW_t .$$
#
# Why does every $g$ keep the marginals? The density of an SDE
# $dX = b_t(X)\, dt + g_t\, dW$ obeys the **Fokker–Planck equation**
# $\partial_t p = -\nabla\cdot(p\, b) + \tfrac{g^2}{2} \Delta p$: the drift transports
# $p$, as in chapter 2's continuity equation, and the noise spreads it like
# heat. Start from that continuity equation, which the flow's $p_t$ obeys, add
# and subtract $\tfrac{g^2}{2}\Delta p$, and use $\Delta p = \nabla\cdot\nabla p = \nabla\cdot(p\, \nabla \log p)$:
#
# $$\partial_t p_t = -\nabla\cdot(p_t\, u_t)
#   = -\nabla\cdot(p_t\, u_t) - \tfrac{g_t^2}{2}\Delta p_t + \tfrac{g_t^2}{2}\Delta p_t
#   = -\nabla\cdot\Big(p_t \big[u_t + \tfrac{g_t^2}{2} \nabla \log p_t\big]\Big) + \tfrac{g_t^2}{2}\Delta p_t .$$
#
# The right-hand side is the Fokker–Planck equation of the SDE above, with drift
# $b = u + \tfrac{g^2}{2} s$. So the flow's $p_t$ solves it, from the same $p_0$;
# the equation is linear in $p$ once the drift is fixed, and (for a drift that is
# Lipschitz in $x$, as here for $t$ away from the ends) has one solution from a given
# start (Song et al. 2021, appendix, and any text on Fokker–Planck equations), so the SDE's marginals are the $p_t$ of the ODE
# ($g = 0$), for every $g$. Euler–Maruyama discretizes the SDE, with $z \sim \mathcal N(0, I)$:
#
# $$X_{t+h} = X_t + h\Big[u_t(X_t) + \frac{g_t^2}{2}\, s_t(X_t)\Big] + g_t \sqrt{h}\; z .$$
#
# `fm.sde_sample` does this, with the score from `path.score_from_velocity`, a
# seeded generator, and `g` a number or a function of $t$. The paths differ, the
# destinations agree:

# %%
fig, axes = plt.subplots(1, 3, figsize=(12.5, 4.3))
x0 = torch.randn(300, 2, generator=gen)
for ax, g in zip(axes, (0.0, 0.5, 1.0)):
    sol = fm.sde_sample(oracle, path, x0, steps=200, g=g, generator=gen, return_trajectory=True)
    plot_trajectories(sol.trajectory, ax=ax, n=60, title=f"g = {g}: {'ODE' if g == 0 else 'SDE'} paths")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Measuring samples with W2, honestly
#
# The exact 2-Wasserstein distance between two sets of $n$ samples, `fm.w2_distance`,
# is positive even for two sets from the target: `fm.w2_floor` averages that
# floor. On our target it is also very noisy: the number of points in each mode
# is multinomial, and the few points that must travel between modes 5.6 apart
# dominate $W_2^2$. Look at the spread of the floor:

# %%
raw = torch.tensor([fm.w2_distance(target.sample(N, generator=gen), target.sample(N, generator=gen))
                    for _ in range(4)])
print(f"W2 between two true sets of {N}: {raw.mean():.3f} ± {raw.std():.3f} (mean ± std of 4 draws; "
      f"fm.w2_floor averages the same draws)")

# %% [markdown]
# A spread of that size (the ± above) swamps a margin of 0.05. So we split the question in
# two. Are the modes weighted right? That is the mode fractions of chapter 1.
# Is the shape right? For that we draw the true comparison set with the *same
# number of points per mode* as the samples (each sample assigned to its most
# probable mode), so that $W_2$ compares within-mode shapes only. Its floor is
# computed the same way from true samples, and is far steadier (its ± is the spread
# of 4 draws of the floor: a single run can land a little below it, which is noise,
# not a sampler better than the data):

# %%
floor_draws = torch.tensor([fm.w2_mode_matched(target, target.sample(N, generator=gen), gen) for _ in range(4)])
FLOOR = floor_draws.mean().item()
print(f"floor of the mode-matched W2: {FLOOR:.3f} ± {floor_draws.std():.3f}")


def check_samples(x, label, margin):
    """Print and return (mode-matched W2, worst mode-fraction error); assert both against the thresholds."""
    w2, frac = fm.w2_mode_matched(target, x, gen), (fm.mode_fractions(target, x) - 1 / 11).abs().max().item()
    print(f"{label:>28}: W2 {w2:.3f} (floor {FLOOR:.3f}, difference {w2 - FLOOR:+.3f}), "
          f"worst mode fraction off by {frac:.3f}")
    assert w2 <= FLOOR + margin and frac <= FRACTION_TOL, (label, w2, frac)
    return w2, frac

# %% [markdown]
# **Check yourself.** With the exact velocity, the Euler–Maruyama samples for
# $g \in \{0, 0.25, 0.5, 0.75, 1, 1.5, 2\}$, all from the same starting points,
# are within the floor + 0.05, and every mode holds
# $1/11$ of them give or take 3 percentage points (quick mode, with half the
# samples and fewer steps: + 0.08 and 4 points). The raw
# $W_2$ against one true set is printed for comparison, and so is the mean
# length of the sample paths (the sum of their step lengths: for $g > 0$ it
# also grows with the number of steps, since a Brownian path has no finite
# length; compare it between values of $g$ at one step count).

# %%
G_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
x0 = torch.randn(N, 2, generator=gen)
oracle_runs, notes, lengths = {}, {}, {}
for g in G_VALUES:
    sol = fm.sde_sample(oracle, path, x0, steps=SDE_STEPS, g=g, generator=gen, return_trajectory=True)
    oracle_runs[g] = sol
    w2, _ = check_samples(sol.x, f"oracle, g = {g}", W2_MARGIN)
    lengths[g] = sol.trajectory.diff(dim=0).norm(dim=-1).sum(dim=0).mean().item()   # sum of |step| per path
    notes[g] = f"mean path length {lengths[g]:.1f}, W2 {w2:.3f} (floor {FLOOR:.3f})"
    print(f"{'':>28}  raw W2 against one true set: {fm.w2_distance(sol.x, target.sample(N, generator=gen)):.3f}; "
          f"mean path length {lengths[g]:.1f}")
assert all(lengths[a] < lengths[b] for a, b in zip(G_VALUES, G_VALUES[1:])), lengths

# %% [markdown]
# The same runs on a slider over $g$: on the left 30 of the sample paths, on
# the right all the end points, with the mean path length and $W_2$ of the
# run in the title. **What to look at:** as $g$ grows the paths wander more
# and grow longer, while the end points keep the same 11 modes and their
# $W_2$ stays at the floor.

# %%
noise_explorer(oracle_runs, centres=target.means, notes=notes,
               look="raise g: the paths (left) get rougher and longer while the end points (right) keep the same "
                    "11 modes, their W2 at the floor")

# %% [markdown]
# ## 3. Diffusion models are one member
#
# A diffusion model (DDPM, Ho et al. 2020; NCSN, Song and Ermon 2019; both
# as SDEs in Song et al. 2021) starts from a **noising process** that turns
# data into noise, and samples by running it backwards. Our path is one, read
# in reverse. Divide it by $\alpha_t$: $x_t / \alpha_t = x_1 + \lambda_t x_0$, with
# $\lambda_t = \beta_t / \alpha_t$ growing as $t$ decreases (from $0$ at $t = 1$ to $\infty$ at
# $t = 0$ for CondOT; VP's runs to about 150, VE's from 0.01 to 50). As $t$ decreases,
# $x_1 + \lambda_t x_0$ has the law of $x_1 + B(\lambda_t^2)$, $B$ a Brownian motion:
# Gaussian noise of variance $\lambda_t^2$ in all, added at the rate
# $-\frac{d}{dt}\lambda_t^2$. Multiplying back by $\alpha_t$ scales that noise by $\alpha_t$ and
# adds a drift, $\frac{\dot\alpha_t}{\alpha_t} x$ per unit of $t$. In diffusion time $\tau = 1 - t$ (so
# $\frac{d}{d\tau} = -\frac{d}{dt}$) the noising process is the SDE
# $dX = F(X)\, d\tau + g_t\, dW$ with
#
# $$F(x) = -\frac{\dot\alpha_t}{\alpha_t}\, x, \qquad g_t^2 = -\alpha_t^2 \frac{d\lambda_t^2}{dt} = \frac{2\beta_t D_t}{\alpha_t}$$
#
# (since $\dot\lambda_t = (\dot\beta_t \alpha_t - \beta_t \dot\alpha_t)/\alpha_t^2 = -D_t/\alpha_t^2$,
# so $-\alpha_t^2 \cdot 2\lambda_t \dot\lambda_t = 2\beta_t D_t/\alpha_t$).
#
# <details><summary><b>Derivation</b> (click to open): the reverse drift, in three lines</summary>
#
# *The reverse SDE.* The noising process's marginals obey its Fokker–Planck
# equation in $\tau$, $\partial_\tau p = -\nabla\cdot(p F) + \frac{g^2}{2}\Delta p$. Write it in our
# time $t$ (flip the sign), then add and subtract $g^2 \Delta p = \nabla\cdot(p\, g^2 \nabla\log p)$ as in section 2:
#
# $$\partial_t p = \nabla\cdot(p F) - \tfrac{g^2}{2}\Delta p
#   = -\nabla\cdot\big(p\, [-F + g^2 \nabla \log p]\big) + \tfrac{g^2}{2}\Delta p .$$
#
# This is the Fokker–Planck equation of $dX = [-F + g^2 s]\, dt + g\, dW$ run
# forwards in $t$: it has the noising process's marginals, from noise to data.
# (Anderson 1982 proves more: its whole path is the noising path reversed in time.)
#
# *Its drift is our family's.* Collect the $s$ terms of section 1's $u$:
#
# $$u = \frac{\dot\alpha_t}{\alpha_t}\, x + \Big(\frac{\dot\alpha_t \beta_t^2}{\alpha_t} - \beta_t\dot\beta_t\Big) s
#   = \frac{\dot\alpha_t}{\alpha_t}\, x + \frac{\beta_t D_t}{\alpha_t}\, s, \quad\text{so}\quad
#   \frac{g_t^2}{2}\, s = \frac{\beta_t D_t}{\alpha_t}\, s = u - \frac{\dot\alpha_t}{\alpha_t}\, x .$$
#
# Substitute into both drifts:
#
# $$-F + g_t^2 s = \frac{\dot\alpha_t}{\alpha_t} x + 2\Big(u - \frac{\dot\alpha_t}{\alpha_t} x\Big)
#   = 2u - \frac{\dot\alpha_t}{\alpha_t}\, x = u + \Big(u - \frac{\dot\alpha_t}{\alpha_t} x\Big) = u + \frac{g_t^2}{2}\, s .$$
#
# </details>
#
# So the reverse-time SDE of the noising process is our family's member with
# $g_t^2 = 2\beta_t D_t / \alpha_t$, and its drift is $2u - \frac{\dot\alpha_t}{\alpha_t} x$. A check
# of the three drifts on the oracle of the VP path below, at $t = 0.5$ (with a
# control that must differ: $u + g_t^2 s$, our drift with the reverse SDE's factor
# $g^2$ in place of $g^2/2$), and of $g_t^2$ against a finite difference of $\lambda_t^2$.
# On the variance-preserving (VP) path, with $\tau = 1 - t$, the noise rate $b(\tau) = b_{\min} + (b_{\max} - b_{\min})\tau$
# and $T(\tau) = \int_0^\tau b$, the schedule is $\alpha_t = e^{-T(1 - t)/2}$, $\beta_t = \sqrt{1 - \alpha_t^2}$
# (so $\alpha_0 = e^{-T(1)/2} \approx 6.6 \times 10^{-3}$ for $b$ from 0.1 to 20). Then $\dot\alpha_t = \alpha_t b(\tau)/2$,
# $\beta_t\dot\beta_t = -\alpha_t\dot\alpha_t$, so $D_t = \dot\alpha_t(\beta_t^2 + \alpha_t^2)/\beta_t = \dot\alpha_t/\beta_t$ and
# $g_t^2 = 2\beta_t D_t/\alpha_t = 2\dot\alpha_t/\alpha_t = b(\tau)$, that is $g_t^2 = b_{\min} + (b_{\max} - b_{\min})(1 - t)$:
# DDPM's noise rate (which Song et al. call $\beta(\tau)$; here $\beta_t$ is the noise's
# std, so `fm.VP(rate_min, rate_max)` names the rates $b$) at diffusion time
# $\tau = 1 - t$. `fm.diffusion_noise(path)` returns this $g_t$;
# check it against DDPM's formula and the drifts as promised, then sample the mixture with it:

# %%
vp = fm.AffineGaussianPath(fm.VP(rate_min=0.1, rate_max=20.0))
g_ddpm = fm.diffusion_noise(vp)
for t in (0.0, 0.5, 1.0):
    assert abs(g_ddpm(t) ** 2 - (0.1 + 19.9 * (1 - t))) < 1e-6 * 20
vp_oracle = fm.MixtureOracle(target, vp)
t, dt = 0.5, 1e-4
a_t, da_t = (f(torch.tensor(t, dtype=torch.float64)).item() for f in (vp.schedule.alpha, vp.schedule.d_alpha))
lam2 = [(vp.schedule.beta(tt) / vp.schedule.alpha(tt)).item() ** 2 for tt in torch.tensor([t + dt, t - dt]).double()]
g2_fd = -a_t ** 2 * (lam2[0] - lam2[1]) / (2 * dt)                  # -alpha^2 d(lambda^2)/dt, central difference
x = vp_oracle.marginal(t).sample(N, generator=gen)
u, s, g2 = vp_oracle.velocity(x, t), vp_oracle.score(x, t), g_ddpm(t) ** 2
reverse, family, simple = da_t / a_t * x + g2 * s, u + g2 / 2 * s, 2 * u - da_t / a_t * x
print(f"g^2 at t = {t}: diffusion_noise {g2:.4f}, -alpha^2 d(lambda^2)/dt by finite difference {g2_fd:.4f}")
print(f"reverse drift (alpha'/alpha) x + g^2 s vs u + g^2 s / 2: {rel(reverse, family):.1e}; "
      f"vs 2u - (alpha'/alpha) x: {rel(reverse, simple):.1e}; control u + g^2 s: {rel(u + g2 * s, reverse):.2f}")
assert abs(g2_fd / g2 - 1) < 1e-3 and rel(reverse, family) < 1e-4 and rel(reverse, simple) < 1e-4
assert rel(u + g2 * s, reverse) > 0.1
x = fm.sde_sample(vp_oracle, vp, torch.randn(N, 2, generator=gen), steps=SDE_STEPS, g=g_ddpm, generator=gen).x
_ = check_samples(x, "VP, DDPM reverse SDE", W2_MARGIN)

# %% [markdown]
# (On CondOT, $g_t^2 = 2(1 - t)/t$ is infinite at $t = 0$, since $\alpha_0 = 0$: a
# diffusion sampler on that path starts a little after $t = 0$. VP escapes this
# because its $\alpha_0 \approx 6.6 \times 10^{-3}$ is not quite zero.)
#
# ## 4. VP and VE schedules
#
# The **VP** schedule keeps $\alpha_t^2 + \beta_t^2 = 1$: the signal fades as the
# noise grows, and the noise end is $\mathcal N(0, I)$ up to $\alpha_0 \approx 6.6\times 10^{-3}$.
# The **variance-exploding** (VE, NCSN) schedule never scales the signal:
# $x_t = x_1 + \sigma_t x_0$, with $\sigma_t = \sigma_{\max}^{1-t}\sigma_{\min}^{t}$
# falling from $\sigma_{\max} = 50$ to $\sigma_{\min} = 0.01$. Its noise end is
# $p_{\rm data} * \mathcal N(0, \sigma_{\max}^2 I) \approx \mathcal N(0, \sigma_{\max}^2 I)$ when
# $\sigma_{\max}$ dwarfs the data.
#
# That breaks a rule the package checks: every `Schedule` asserts
# $\alpha_0 = 0, \beta_0 = 1$ when built. `fm.schedules.VE` is the documented
# exception. It checks its own ends ($\alpha = 1$, $\beta_0 = \sigma_{\max}$,
# $\beta_1 = \sigma_{\min}$), carries `source_std` $= \sigma_{\max}$, and is left out
# of the by-name registry, so code that assumes a $\mathcal N(0, I)$ source cannot
# pick it up by accident. Training, the oracle and the conversions need no
# change, because the conditional path still draws $x_0 \sim \mathcal N(0, I)$.

# %%
ts = torch.linspace(0, 1, 201, dtype=torch.float64)
ve = fm.AffineGaussianPath(VE(0.01, 50.0))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for (name, p), ls in zip((("CondOT", path), ("VP", vp), ("VE", ve)), ("-", "--", ":")):
    axes[0].plot(ts, p.schedule.alpha(ts), ls, color=FIRST, label=rf"$\alpha_t$ {name}")
    axes[0].plot(ts, p.schedule.beta(ts), ls, color=HIGHLIGHT, label=rf"$\beta_t$ {name}")
    axes[1].plot(ts, (p.schedule.alpha(ts) / p.schedule.beta(ts).clamp(min=1e-8)).log10(), ls, label=name)
axes[0].set(title="signal and noise scales", xlabel="t", ylim=(-0.05, 1.5))
axes[1].set(title=r"signal-to-noise ratio $\alpha_t / \beta_t$", xlabel="t", ylabel="log10", ylim=(-4, 4))
for ax in axes:
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# In the right panel, CondOT runs the signal-to-noise ratio from 0 to
# $\infty$. VP starts just above 0 and stays below CondOT almost all the way,
# spending more of its time at high noise. VE is a straight line, since its
# geometric $\sigma_t$ spends equal time on every decade of noise; it stops at
# $1/\sigma_{\max}$ and $1/\sigma_{\min}$, so neither end is pure noise or pure data
# (its $\beta_t$ starts at 50, off the left panel's scale). For VE,
# $g_t^2 = -\frac{d}{dt}\sigma_t^2$: the reverse SDE of NCSN. Both samplers, ODE and
# diffusion SDE, from $\sigma_{\max} z$:

# %%
ve_oracle = fm.MixtureOracle(target, ve)
x0 = ve.schedule.source_std * torch.randn(N, 2, generator=gen)
for g, label in ((0.0, "VE, ODE"), (fm.diffusion_noise(ve), "VE, NCSN reverse SDE")):
    check_samples(fm.sde_sample(ve_oracle, ve, x0, steps=SDE_STEPS, g=g, generator=gen).x, label, W2_MARGIN)

# %% [markdown]
# ## 5. The singular end: let the noise fade
#
# Take data from one mode, $x_1 \sim \mathcal N(m, \sigma^2 I)$. Then
# $x_t = \alpha_t x_1 + \beta_t x_0$ is a sum of independent Gaussians, so
# $p_t = \mathcal N\big(\alpha_t m,\, (\alpha_t^2\sigma^2 + \beta_t^2) I\big)$, and its score is exactly
#
# $$s_t(x) = -\frac{x - \alpha_t m}{\alpha_t^2 \sigma^2 + \beta_t^2} .$$
#
# Near a mode of the mixture the posterior puts almost all its weight on that
# mode, and this is the mixture's score too. Near $t = 1$, $\alpha_t \approx 1$ and
# the denominator is about $\sigma^2 + \beta_t^2$: as $\beta_t \to 0$ it shrinks to
# $\sigma^2$, so the score is steep when the data are narrow. The noise's share
# of the drift, $\frac{g_t^2}{2} s_t$, then multiplies the distance to the mode in
# one Euler–Maruyama step of size $h$ by
#
# $$1 - \frac{h\, g_t^2}{2(\alpha_t^2 \sigma^2 + \beta_t^2)} .$$
#
# With $\sigma = 1$ that is harmless. With narrow data and a constant $g$ the
# factor leaves $[-1, 1]$ in the last steps, and the sampler blows up. Check the
# score against the oracle, print the factor of the last step (from
# $t = 1 - h$), then run the same mixture with $\sigma = 0.01$ and 200 steps:

# %%
narrow = fm.GaussianMixture.symmetric_2d(std=0.01)
narrow_oracle = fm.MixtureOracle(narrow, path)
t, m = 0.9, narrow.means[0]
x = 0.9 * m + 0.1 * torch.randn(5, 2, generator=gen)                # near mode 0 at t = 0.9 (alpha = 0.9)
exact = -(x - t * m) / (t ** 2 * 0.01 ** 2 + (1 - t) ** 2)
print(f"score near a mode at t = {t}: formula vs oracle {rel(exact, narrow_oracle.score(x, t)):.1e}")
assert rel(exact, narrow_oracle.score(x, t)) < 1e-4
h = 1 / 200
t = 1 - h
for sigma, g2, label in ((1.0, 1.0, "sigma = 1, g = 1"), (0.01, 1.0, "sigma = 0.01, g = 1"),
                         (0.01, 1 - t, "sigma = 0.01, g = sqrt(1 - t)")):
    print(f"last step, {label:>30}: factor {1 - h * g2 / (2 * (t ** 2 * sigma ** 2 + (1 - t) ** 2)):+.3f}")
noises = {"g = 0 (ODE)": 0.0, "g = 0.5": 0.5, "g = 1": 1.0, "g = sqrt(1 - t)": lambda t: math.sqrt(1 - t)}
spread = {}
for label, g in noises.items():
    x = fm.sde_sample(narrow_oracle, path, torch.randn(N, 2, generator=gen), steps=200, g=g, generator=gen).x
    k = narrow.responsibilities(x).argmax(1)
    spread[label] = (x - narrow.means[k]).std().item()
    print(f"{label:>16}: within-mode std {spread[label]:.3g} (target 0.01)")
assert spread["g = 1"] > 1 and abs(spread["g = sqrt(1 - t)"] / 0.01 - 1) < 0.2

# %% [markdown]
# (The ODE's modes come out a little narrow: 200 Euler steps are not enough for
# such sharp modes either.) What matters is the last step's factor
# $1 - h g^2/(2(\alpha^2\sigma^2 + \beta^2))$: it must stay between $-1$ and $1$. A noise
# scale that vanishes with $\beta_t$ (here $g_t = \sqrt{\beta_t}$; on CondOT the diffusion choice
# of section 3, $g_t^2 = 2(1 - t)/t$, also fades like $\sqrt{\beta_t}$) keeps it there at any data
# width; that is sufficient, not necessary (VP's $g_t^2$ ends at $b_{\min} = 0.1$, stable here
# for these widths). A constant $g$ fails on narrow modes, $g = 0.5$ too, only less. A learned velocity adds a second reason,
# as section 7 shows: its errors reach the score multiplied by $1/\beta_t$.
#
# ## 6. The Langevin corrector
#
# Between two steps, the sampler can also move $x$ *at fixed* $t$ towards
# $p_t$ with Langevin steps, $x \leftarrow x + \epsilon\, s_t(x) + \sqrt{2\epsilon}\, z$.
# With an exact score they leave $p_t$ invariant as $\epsilon \to 0$ (the
# unadjusted Langevin algorithm; Song and Ermon 2019 use it as their sampler). For a
# finite step, on a Gaussian $\mathcal N(m, \sigma^2)$ the update is affine,
# $y - m \leftarrow (1 - \epsilon/\sigma^2)(y - m) + \sqrt{2\epsilon}\, z$, so a stationary variance $v$
# solves $v = (1 - \epsilon/\sigma^2)^2 v + 2\epsilon$: $v = \sigma^2 / (1 - \epsilon / (2\sigma^2))$. Check it.

# %%
y = 3.0 + torch.randn(20_000, 1, generator=gen)
for _ in range(100):
    y = fm.langevin_step(lambda v: -(v - 3.0), y, 0.2, generator=gen)
print(f"mean {y.mean():.3f} (3), variance {y.var():.3f} (closed form {1 / (1 - 0.1):.3f})")
assert abs(y.mean() - 3.0) < 0.03 and abs(y.var() / (1 / 0.9) - 1) < 0.04

# %% [markdown]
# As a **corrector**, a few Langevin steps after each predictor step pull the
# samples back to $p_t$ when coarse steps have pushed them off. With 10
# predictor steps (the corrector runs after each step but the last, at $t = 1$,
# where there is no score: 10 + 2 × 9 = 28 evaluations):

# %%
pc = {}
for cs in (0, 2):
    sol = fm.sde_sample(oracle, path, torch.randn(N, 2, generator=gen), steps=10, g=1.0, generator=gen,
                        corrector_steps=cs, corrector_eps=0.05)
    pc[cs] = fm.w2_mode_matched(target, sol.x, gen)
    print(f"10 steps, {cs} corrector steps ({sol.nfe} evaluations): W2 {pc[cs]:.3f} (floor {FLOOR:.3f})")
sol = fm.sde_sample(oracle, path, torch.randn(N, 2, generator=gen), steps=28, g=1.0, generator=gen)
plain_28 = fm.w2_mode_matched(target, sol.x, gen)
print(f"28 steps, no corrector (28 evaluations): W2 {plain_28:.3f}")
assert pc[2] < pc[0] - 0.05
print("at equal cost: " + ("the corrector is ahead" if pc[2] < plain_28 - 0.02 else
      "plain steps are ahead" if plain_28 < pc[2] - 0.02 else "a tie (within 0.02)"))

# %% [markdown]
# Two corrector steps remove most of the coarse predictor's error. At equal
# cost, against 28 plain predictor steps, the line above says how it fared on
# your run; either way, that is not the point of it: correctors earn their keep where the predictor cannot simply take
# more steps, or where the predictor's own errors pile up, as with the discrete samplers of chapter 8.
#
# ## 7. A trained model: ODE vs SDE
#
# Now a network. The same small MLP recipe as in chapter 4, trained on the
# CondOT path (the cell prints how long it took):

# %%
model = fm.MLP(2, hidden=96, depth=4, activation="gelu", n_freqs=2, max_freq=1.0)
run = fm.train(model, fm.CFMObjective(path, target), steps=TRAIN_STEPS, batch_size=1024, lr=3e-3, seed=SEED)
print(f"trained {TRAIN_STEPS} steps in {run.seconds:.0f} s on {run.device}")

# %% [markdown]
# Its velocity error is a few percent over most of the path (largest at the
# noise end, as in chapter 2). Its *score*, obtained from the velocity, is
# another matter near the data end (both printed under the figure):

# %%
t_grid = [0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.98]
errors = {"velocity": [], "score from the velocity": []}
for t in t_grid:
    x = oracle.marginal(t).sample(N, generator=gen)
    with torch.no_grad():
        u = model(x.to(run.device), t).cpu()
    errors["velocity"].append(rel(u, oracle.velocity(x, t)))
    errors["score from the velocity"].append(rel(path.score_from_velocity(u, x, t), oracle.score(x, t)))
fig, ax = plt.subplots(figsize=(6, 3.6))
for (name, e), marker in zip(errors.items(), "os"):
    ax.semilogy(t_grid, e, marker=marker, label=name)
ax.set(title="learned model vs oracle", xlabel="t", ylabel="relative L2 error")
ax.legend()
plt.show()
print(f"{'t':>24}:", "  ".join(f"{t:6.2f}" for t in t_grid))
for name, e in errors.items():
    print(f"{name:>24}:", "  ".join(f"{x:6.3f}" for x in e))

# %% [markdown]
# The score error grows at least like $1/(1 - t)$ (faster where the velocity's own
# error grows too, as the rows above show): an error $\delta$ in $u$ becomes
# $t\,\delta / (1 - t)$ in $s_t = (t u - x)/(1 - t)$. Every sampler with $g_t > 0$
# pays $\frac{g_t^2}{2}$ times that error in its drift. So we sample the model with the ODE, with
# $g = 0.5$ and $g = 1$, and with the fading $g_t = \sqrt{1 - t}$:

# %%
model_noises = {"ODE (g = 0)": 0.0, "g = 0.5": 0.5, "g = 1": 1.0, "g = sqrt(1 - t)": lambda t: math.sqrt(1 - t)}
model_samples, model_w2 = {}, {}
for label, g in model_noises.items():
    x = fm.sde_sample(model, path, torch.randn(N, 2, generator=gen), steps=200, g=g, generator=gen).x.cpu()
    model_samples[label] = x
    margin = MODEL_MARGIN if label != "g = 1" else float("inf")  # g = 1: reported, not asserted
    model_w2[label], _ = check_samples(x, f"model, {label}", margin)
    k = target.responsibilities(x).argmax(1)
    print(f"{'':>28}  within-mode std {(x - target.means[k]).std():.3f} (target 1)")

# %%
fig, axes = plt.subplots(1, 4, figsize=(15, 4))
for ax, (label, x) in zip(axes, model_samples.items()):
    plot_samples(x, ax=ax, title=f"{label}: W2 {model_w2[label]:.2f}")
fig.suptitle(f"the trained model, ODE and SDE samplers (floor {FLOOR:.2f})")
fig.tight_layout()
plt.show()

# %% [markdown]
# The ODE, $g = 0.5$ and the fading noise all land near the floor. The
# constant $g = 1$ pays the most: its modes come out too tight (within-mode
# standard deviation below 1; by far so after the short training of quick
# mode), because it multiplies the model's large score errors near $t = 1$ by
# $g^2/2 = 0.5$, right where no step is left to correct them. That the modes
# come out *tight*, not just wrong, says the learned score errs inwards there
# (the within-mode std falls steadily as $g$ grows, in the printout above). With an exact
# score (section 2) $g = 1$ was as good as any; with a learned one, noise helps
# only where the score can be trusted, and a fading $g_t$ is the safe default.
#
# ## Summary
#
# - On an affine Gaussian path, velocity, score, noise and data predictions are
#   affine functions of each other at each $(x, t)$; the score is
#   $(\alpha_t u - \dot\alpha_t x)/(\beta_t D_t)$, singular where $\beta_t D_t = 0$.
# - $dX = [u + \frac{g^2}{2} s]\,dt + g\, dW$ has the flow's marginals for every
#   $g_t \ge 0$; $g = 0$ is the ODE; $g_t^2 = 2\beta_t D_t/\alpha_t$ is the reverse
#   diffusion (DDPM on VP, NCSN on VE).
# - Near the data end let the noise fade: narrow data make a constant $g$
#   unstable, and a learned score is least accurate there.
# - Langevin steps correct samples at fixed $t$; they leave $p_t$ invariant up
#   to an $O(\epsilon)$ bias.
# - On a multi-modal target, compare samples with mode fractions and a
#   mode-matched $W_2$, whose floor is steady; the raw $W_2$ floor is not.
#
# **Exercises:** [ex07_diffusion_special_case.ipynb](../exercises/ex07_diffusion_special_case.ipynb),
# graded tasks on this chapter, each followed by a check that gives a hint.

# %%
print(fm.config.run_time(T_START))

# %% [markdown]
# ## Further reading
#
# The papers this chapter follows, and what to read each one for. Full entries are on the
# [references page](../book/references.md) (from `book/references.bib`).
#
# - [Lipman2024] Lipman et al. 2024, *Flow Matching Guide and Code* (arXiv 2412.06264): diffusion models as
#   flow models on Gaussian paths, and the conversions between velocity, score, noise and data predictions.
# - [Song2021] Song et al. 2021, *Score-Based Generative Modeling through Stochastic Differential Equations*
#   (arXiv 2011.13456): the reverse-time SDE, the probability flow ODE with the same marginals, VP and VE
#   schedules, and predictor-corrector sampling.
# - [Anderson1982] Anderson 1982, *Reverse-Time Diffusion Equation Models*: the reverse-time SDE of a
#   diffusion, whose drift section 3 derives at the level of the marginals; the paper reverses the whole path.
# - [Ho2020] Ho et al. 2020, *Denoising Diffusion Probabilistic Models* (arXiv 2006.11239): the noise
#   prediction and the discrete-time chain that the VP schedule comes from.
# - [SongErmon2019] Song and Ermon 2019, *Generative Modeling by Estimating Gradients of the Data
#   Distribution* (arXiv 1907.05600): score matching at many noise levels and annealed Langevin dynamics
#   (section 6).
# - [Efron2011] Efron 2011, *Tweedie's Formula and Selection Bias*: the posterior mean from the score, $E[x_1
#   \mid x_t]$ as the link between the four predictions.
