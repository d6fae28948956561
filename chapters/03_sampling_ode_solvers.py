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
# # Chapter 3 — Sampling: ODE solvers
#
# A flow-matching model is a velocity field; a sample is the solution of
# $\dot x = u(x, t)$ from $t = 0$ to $t = 1$. Every evaluation of $u$ is a
# network call, so the question is how few calls buy how much accuracy. With
# the oracle of chapter 2 we know the exact velocity field, so we can measure
# the error of each solver against a reference solution instead of guessing.
#
# **What you will learn**
# - Euler, midpoint, Heun and RK4, and an adaptive Dormand–Prince solver with
#   error control;
# - error against the number of function evaluations (NFE), and the observed
#   order of convergence of each method;
# - where the orders come from (Taylor expansions, local and global error);
# - non-uniform time grids, and why this target's paths bend hardest at the
#   start, where the velocity reverses;
# - how the distribution of $t$ during training (uniform or logit-normal)
#   shapes where the learned velocity is accurate.
#
# **Prerequisites:** chapters 1 and 2.
#
# **Run time:** about a minute or two on a 2-core laptop CPU at the default
# budget, under half a minute in quick mode (`FMLEARN_QUICK=1`); the last cell
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
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from fmlearn.plotting import plot_trajectories, set_alt
from fmlearn.widgets import solver_explorer

T_START = time.perf_counter()
SEED = 0
fm.seed_everything(SEED)
gen = torch.Generator().manual_seed(SEED)
print(fm.describe())

TRAIN_STEPS = fm.budget(default=6000, quick=1200)
N_PARTICLES = fm.budget(default=2000, quick=500)   # source points integrated by every solver

target = fm.GaussianMixture.symmetric_2d()
path = fm.AffineGaussianPath("condot")
oracle = fm.MixtureOracle(target, path)

# %% [markdown]
# ## 1. Four fixed-step solvers
#
# A step of size $h$ from $(x, t)$. Every method starts from the slope where
# it stands, $k_1 = u(x, t)$; each then evaluates $u$ at trial points of its
# own, named in its row:
#
# | method | update | further evaluations | evaluations | order |
# |---|---|---|---|---|
# | Euler | $x + h k_1$ | none | 1 | 1 |
# | midpoint | $x + h\, k_{\rm mid}$ | $k_{\rm mid} = u(x + \tfrac h2 k_1,\ t + \tfrac h2)$ | 2 | 2 |
# | Heun | $x + \tfrac h2 (k_1 + \hat k)$ | $\hat k = u(x + h k_1,\ t + h)$ | 2 | 2 |
# | RK4 | $x + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4)$ | $k_2, k_3, k_4$ below | 4 | 4 |
#
# RK4's stages each take a trial step with the previous slope:
#
# $$k_2 = u\big(x + \tfrac h2 k_1,\ t + \tfrac h2\big), \quad
#   k_3 = u\big(x + \tfrac h2 k_2,\ t + \tfrac h2\big), \quad
#   k_4 = u\big(x + h k_3,\ t + h\big).$$
#
# (RK4's $k_2$ is the midpoint method's $k_{\rm mid}$; Heun's $\hat k$ is taken at the
# end of the step, a different point.) Heun's step, written by hand, against
# the package:
# %%
x = torch.randn(4, 2, generator=gen, dtype=torch.float64)
t, h = 0.3, 0.1
k1 = oracle(x, t)
k_hat = oracle(x + h * k1, t + h)
heun_by_hand = x + h / 2 * (k1 + k_hat)
heun_package = fm.odeint(oracle, x, times=[t, t + h], method="heun").x
print("max difference:", (heun_by_hand - heun_package).abs().max().item())
assert torch.allclose(heun_by_hand, heun_package, rtol=0, atol=1e-12)

# %% [markdown]
# ### Where the orders come from
#
# **Taylor.** The exact solution through $(x, t)$ satisfies
#
# $$x(t + h) = x + h\, u + \tfrac{h^2}{2}\, \ddot x + O(h^3), \qquad
#   \ddot x = \frac{d}{dt}\, u\big(x(t), t\big) = \partial_t u + (\nabla u)\, u ,$$
#
# with $u$ and its derivatives taken at $(x, t)$ (the chain rule gives
# $\ddot x$, the acceleration along the path). Euler keeps the first two
# terms, so one step from an exact point is off by its **local error**
# $\tfrac{h^2}{2}\ddot x + O(h^3)$. Heun's second slope, expanded to first order
# in $h$, is
#
# $$\hat k = u(x + h k_1, t + h) = u + h\,(\nabla u)\, k_1 + h\, \partial_t u + O(h^2) = k_1 + h\,\ddot x + O(h^2),$$
#
# so its update is $x + \tfrac h2 (2 k_1 + h\ddot x) + O(h^3) = x + h u + \tfrac{h^2}{2}\ddot x + O(h^3)$:
# it matches the exact solution through $h^2$, and its local error is $O(h^3)$.
# The same expansion with $\tfrac h2$ in place of $h$ gives
# $k_{\rm mid} = k_1 + \tfrac h2 \ddot x + O(h^2)$ and the same conclusion for the
# midpoint method. RK4 matches the Taylor series through $h^4$ (local error
# $O(h^5)$); the expansion is longer, and [HairerNorsettWanner1993] writes out
# its order conditions; section 3 measures it.
#
# **Local to global.** From $t = 0$ to $1$ takes $N = 1/h$ steps, each adding a
# local error of size $C h^{p+1}$. The exact flow (from where that step ended)
# carries each one to $t = 1$, and cannot stretch it by more than a fixed factor:
# two solutions $x, y$ obey
# $\frac{d}{dt}|x - y| \le |u_t(x) - u_t(y)| \le L |x - y|$, where $L$ bounds how
# fast $u$ changes with $x$, so (Grönwall's inequality) a gap grows at most like $e^{L}$ over the
# path. Adding up, the error at $t = 1$ is at most $N \cdot C h^{p+1} e^{L} = C e^{L} h^{p}$:
# a method of **order $p$** has global error $O(h^p)$, one power of $h$ less
# than its local error. "Order" in the table means this global order.

# %% [markdown]
# ## 2. A reference solution
#
# To measure errors we need the exact end point. The oracle gives the exact
# *velocity*, not the exact *solution*, so we solve with the adaptive solver
# at a very tight tolerance in float64, and cross-check it with RK4 at 1024
# steps: two different methods must agree far below any error we will measure.
# Every method goes through the one entry point `fm.odeint(field, x0, method=...)`:
# the fixed-step ones take `steps` (or a grid `times`), the adaptive `"dopri5"`
# takes tolerances instead.

# %%
x0 = torch.randn(N_PARTICLES, 2, generator=gen, dtype=torch.float64)
reference = fm.odeint(oracle, x0, method="dopri5", rtol=1e-10, atol=1e-10)
rk4_fine = fm.odeint(oracle, x0, steps=1024, method="rk4")


def error(x):
    """Mean distance to the reference end points."""
    return (x - reference.x).norm(dim=1).mean().item()


print(f"reference: {reference.nfe} evaluations; RK4 with 1024 steps differs by {error(rk4_fine.x):.1e}")
assert error(rk4_fine.x) < 1e-8

# %% [markdown]
# ## 3. Error against NFE
#
# Each fixed-step method at 8 to 256 steps; the cost is the number of
# velocity evaluations, NFE = steps × evaluations per step.

# %%
STEPS = [8, 16, 32, 64, 128, 256]
METHODS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}   # evaluations per step
results = {m: [error(fm.odeint(oracle, x0, steps=s, method=m).x) for s in STEPS] for m in METHODS}

# %% [markdown]
# The observed order is minus the slope of log(error) against log(steps). We
# fit it on the four finest step sizes, where the error has settled into its
# asymptotic rate.

# %%
orders = {m: -np.polyfit(np.log(STEPS[-4:]), np.log(errs[-4:]), 1)[0] for m, errs in results.items()}
for m, p in orders.items():
    print(f"{m:9s} observed order {p:.2f}")

# %% [markdown]
# The local error can be measured as well: one step of size $h$ from points of
# $p_{0.3}$, against the adaptive solver run over that one step at a tight
# tolerance. By the Taylor argument of section 1 its slope in $h$ should be one
# more than the global order: 2 for Euler, 3 for midpoint and Heun, 5 for RK4.

# %%
check_gen = torch.Generator().manual_seed(SEED + 1)  # its own stream: the chapter's later draws are unchanged
x_local = oracle.marginal(0.3).sample(200, generator=check_gen).double()
H = [0.04, 0.02, 0.01, 0.005]
one_step_exact = [fm.odeint(oracle, x_local, method="dopri5", times=(0.3, 0.3 + h), rtol=1e-12, atol=1e-12).x
                  for h in H]
local_errors = {m: [(fm.odeint(oracle, x_local, times=[0.3, 0.3 + h], method=m).x - ex).norm(dim=1).mean().item()
                    for h, ex in zip(H, one_step_exact)] for m in METHODS}
local_orders = {m: np.polyfit(np.log(H), np.log(e), 1)[0] for m, e in local_errors.items()}
for m in METHODS:
    print(f"{m:9s} local error ~ h^{local_orders[m]:.2f}, global error ~ h^{orders[m]:.2f}")
for m, p in {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}.items():
    assert abs(local_orders[m] - (p + 1)) <= 0.3, (m, local_orders[m])

# %% [markdown]
# Now the adaptive solver. Dormand–Prince takes steps of order 5 and, from an
# embedded order-4 solution, estimates the error of each step; it shrinks the
# step where the field changes fast and stretches it where it does not. The
# knob is the tolerance, not the number of steps.

# %%
TOLERANCES = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7]
adaptive = [fm.odeint(oracle, x0, method="dopri5", rtol=tol, atol=tol) for tol in TOLERANCES]
adaptive_nfe = [s.nfe for s in adaptive]
adaptive_err = [error(s.x) for s in adaptive]

fig, ax = plt.subplots(figsize=(7, 4.5))
for (m, errs), marker in zip(results.items(), "osD^v"):  # a marker each: the lines never rely on colour alone
    ax.plot([s * METHODS[m] for s in STEPS], errs, marker=marker, label=f"{m} (order {orders[m]:.2f})")
ax.plot(adaptive_nfe, adaptive_err, marker="*", ms=9, color="black", label="Dormand–Prince (adaptive)")
for tol, n, e in zip(TOLERANCES, adaptive_nfe, adaptive_err):
    ax.annotate(f"tol {tol:g}", (n, e), textcoords="offset points", xytext=(5, 3), fontsize=7)
ax.set(xscale="log", yscale="log", xlabel="function evaluations (NFE)", ylabel="mean error at t = 1",
       title="solver error against cost, exact velocity field")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Read the figure along a horizontal line: for a given accuracy, RK4 and the
# adaptive solver need far fewer evaluations than Euler. Read it along a
# vertical line: for a given budget, higher order wins once the steps are
# small enough. Midpoint and Heun have the same order and cost; their
# constants differ.
#
# **Check yourself:** the observed orders match the theory, and the adaptive
# solver reaches RK4's accuracy at 64 steps (256 evaluations) with fewer
# evaluations.

# %%
for m, p in {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}.items():
    assert abs(orders[m] - p) <= 0.3, (m, orders[m])
rk4_64 = results["rk4"][STEPS.index(64)]
cheapest = min(n for n, e in zip(adaptive_nfe, adaptive_err) if e <= rk4_64)
print(f"RK4 at 64 steps: error {rk4_64:.1e} with 256 evaluations; adaptive reaches it with {cheapest}")
assert cheapest < 256

# %% [markdown]
# ### Few steps, seen
#
# The curves above are averages over the particles. Below are the particles
# themselves, at the few steps a sampler is tempted to use. Pick a method and
# a number of steps (1 to 32, exact field): the explorer shows that solver's
# end points (blue) over the reference end points (grey), a dozen of its
# trajectories with a dot at every step, and each of those paths' error as a
# red segment; the title gives the evaluations and the mean error, the numbers
# of the table printed by the cell.
#
# One frame can be worked out by hand. At $t = 0$ the noise says nothing about
# the data point, so for CondOT $u_0(x) = \mathbb E[x_1 - x_0 \mid x_0 = x] = \mathbb E[x_1] - x = -x$
# (the target's mean is 0): **one Euler step sends every sample to the origin**,
# the mean of the target. With one or two steps the errors are too large to
# follow the asymptotic orders: midpoint's single step even lands closer than
# its two. From 2 steps on, each doubling cuts every method's error, by the
# largest factor for RK4 (the cell checks both). **What to look at:** at one
# method, raise the steps and watch the blue points settle on the grey ones.
# Switching method at a fixed number of steps compares runs of different cost
# (an RK4 step costs four evaluations, an Euler step one); at equal cost, 32
# evaluations each, the matching settings are Euler at 32 steps, midpoint and
# Heun at 16, and RK4 at 8 (the cell prints their errors).

# %%
FEW_STEPS = [1, 2, 4, 8, 16, 32]
runs = {(m, s): fm.odeint(oracle, x0, steps=s, method=m, return_trajectory=True) for m in METHODS for s in FEW_STEPS}
few = {m: np.array([error(runs[(m, s)].x) for s in FEW_STEPS]) for m in METHODS}
print("mean error at", FEW_STEPS, "steps")
for m, errs in few.items():
    print(f"{m:9s}" + "".join(f"{e:10.3g}" for e in errs))
print(f"one Euler step: the farthest end point is {runs[('euler', 1)].x.norm(dim=1).max():.1e} from the origin")
assert runs[("euler", 1)].x.norm(dim=1).max() < 1e-6 and few["midpoint"][0] < few["midpoint"][1]
cut = {m: errs[1:-1] / errs[2:] for m, errs in few.items()}   # error ratio per doubling, from 2 steps on
assert all((c > 1).all() for c in cut.values()), cut
assert all((cut["rk4"] >= c).all() for c in cut.values()), cut
EQUAL_COST = {"euler": 32, "midpoint": 16, "heun": 16, "rk4": 8}   # steps at 32 evaluations each
assert all(runs[(m, s)].nfe == 32 for m, s in EQUAL_COST.items())
at_equal_cost = ", ".join(f"{m} {s} steps (error {few[m][FEW_STEPS.index(s)]:.2g})" for m, s in EQUAL_COST.items())
print("at 32 evaluations each:", at_equal_cost)
solver_explorer(runs, reference.x,
                look="at one method, raise the steps from 2 on: the blue end points settle on the grey reference "
                     f"and the error falls, fastest for RK4; at equal cost (32 evaluations) compare {at_equal_cost}")

# %% [markdown]
# ## 4. Time grids
#
# Fixed-step solvers need not use equal steps. `fm.time_grid(N, kind=...)`
# warps the equal fractions $s_i = i/N$, $i = 0, \dots, N$, into the times
# $t_i = w(s_i)$:
#
# $$\text{uniform: } w(s) = s, \qquad \text{cosine: } w(s) = \frac{1 - \cos \pi s}{2}, \qquad
#   \text{power } p\text{: } w(s) = 1 - (1 - s)^p .$$
#
# A step near $s$ is about $w'(s)/N$ long. The cosine's $w'(s) = \tfrac\pi2 \sin \pi s$
# vanishes at both ends, so its first and last steps are short,
# $(1 - \cos\tfrac\pi N)/2 \approx \pi^2/(4N^2)$. The power grid's
# $w'(s) = p\,(1 - s)^{p-1}$ (with $p > 1$) is largest at $s = 0$ and vanishes at
# $s = 1$: for $p = 2$ its first step, $(2N - 1)/N^2$, is nearly twice the uniform
# one and its last is $1/N^2$. Which grid is best depends on where the field
# changes fastest; here is Euler with 16 steps on each (the cell prints each
# grid's first and last step).
#
# **Where small steps pay.** Euler's local error is $\tfrac{h^2}{2}\ddot x$
# (section 1), so steps should be short where the paths accelerate. We can
# measure the acceleration accurately: the particles at time $t$ are distributed
# as $p_t$, so we sample $p_t$ from the oracle and difference $u$ along the
# flow, $\ddot x \approx \big(u(x + \delta u, t + \delta) - u(x - \delta u, t - \delta)\big)/(2\delta)$.
#
# At $t = 0$ it can be worked out by hand, and that explains the picture. The target
# (chapter 1's) is 11 equally weighted Gaussian modes of std $s = 1$ evenly spaced on a
# circle of radius $R = 10$, so its mean is 0 and its covariance is isotropic; the
# path is CondOT, $x_t = (1 - t)\,x_0 + t\,x_1$ with $x_0 \sim \mathcal N(0, I)$, so
# $p_t(x \mid x_1) = \mathcal N(t x_1, (1-t)^2 I)$ and $x_1 - x_0 = (x_1 - x_t)/(1 - t)$, so
# $u_t(x) = \big(\mathbb E[x_1 \mid x_t = x] - x\big)/(1 - t)$. At $t = 0$ the noise says
# nothing about $x_1$: $\mathbb E[x_1 \mid x_0 = x] = \mathbb E[x_1] = 0$, hence $u_0(x) = -x$
# and $\nabla u_0 = -I$. As $t$ grows, the posterior of $x_1$ given $x_t = x$ is
# the data distribution reweighted by
# $\exp\big(t\, x\cdot x_1/(1-t)^2 - t^2|x_1|^2/(2(1-t)^2)\big)$ (expand the square in
# $p_t(x \mid x_1)$; the second term is of order $t^2$), and differentiating
# $\int x_1 e^{\theta\cdot x_1} p_1 / \int e^{\theta\cdot x_1} p_1$ at $\theta = 0$ shows that a
# weak tilt $e^{\theta\cdot x_1}$ moves the mean by $\mathrm{Cov}(x_1)\,\theta$ to first
# order. With $\theta = t x$ to first order and $\mathrm{Cov}(x_1) = \sigma_d^2 I$,
# $\frac{d}{dt}\mathbb E[x_1 \mid x_t = x] = \sigma_d^2 x$ at $t = 0$, where
# $\sigma_d^2 = s^2 + R^2/2 = 51$ is the target's variance per coordinate (mode
# variance 1 plus the spread of the modes on the circle of radius 10). The
# product rule then gives $\partial_t u_0(x) = \sigma_d^2 x - x$, and
#
# $$\ddot x(0) = \partial_t u_0 + (\nabla u_0)\, u_0 = (\sigma_d^2 - 1)\, x + x = \sigma_d^2\, x .$$
#
# The velocity starts at $-x$, pointing inward, and grows by $(\sigma_d^2 - 1)\,x = 50\,x$
# per unit time: it **reverses**, from inward to outward, near $t \approx 0.02$. Three
# nearby times make this precise: at a fixed point $x$ the linear estimate turns
# outward at $1/(\sigma_d^2 - 1) = 1/50$; along a particle ($\ddot x = \sigma_d^2 x$) at
# $1/\sigma_d^2 = 1/51$; and the cloud's mean square radius,
# $\mathbb E|x_t|^2 = 2(1-t)^2 + 2t^2\sigma_d^2$ (chapter 2 derives it), is smallest at
# $t^* = 1/(1 + \sigma_d^2) \approx 0.019$. A first step of length $h$ from $t = 0$: Euler
# moves every point inward, multiplying $|x|^2$ by $(1 - h)^2$, while over the same step
# the exact cloud's mean square radius is multiplied by $(1 - h)^2 + h^2\sigma_d^2$, which
# exceeds 1 once $h > 2/(1 + \sigma_d^2) = 2t^*$ (the uniform grid's $h = 1/16$ does). The split into
# 11 streams comes later, in the middle of the path (chapter 2's error bump),
# where the acceleration is many times smaller (the cell prints the factor).

# %%
grids = {"uniform": fm.time_grid(16), "cosine": fm.time_grid(16, kind="cosine"),
         "power 2 (dense near 1)": fm.time_grid(16, kind="power", power=2.0)}
grid_errors = {name: error(fm.odeint(oracle, x0, times=g, method="euler").x) for name, g in grids.items()}
for name, g in grids.items():
    print(f"{name:23s} first step {g[1] - g[0]:.4f}, last {g[-1] - g[-2]:.4f}, longest {g.diff().max():.4f}; "
          f"Euler's error {grid_errors[name]:.3f}")
print("the cosine grid's first six times:", np.round(grids["cosine"][:6].numpy(), 4).tolist())


def rms_acceleration(t, n=2000, delta=1e-5):
    """RMS over x ~ p_t of d/dt u(x(t), t), and RMS |x|: a difference along the flow (one-sided at t = 0, 1)."""
    x = oracle.marginal(t).sample(n, generator=check_gen).double()
    u = oracle(x, t)
    lo, hi = max(t - delta, 0.0), min(t + delta, 1.0)
    acc = (oracle(x + (hi - t) * u, hi) - oracle(x + (lo - t) * u, lo)) / (hi - lo)
    return acc.pow(2).sum(1).mean().sqrt().item(), x.pow(2).sum(1).mean().sqrt().item()


t_acc = np.union1d(np.linspace(0, 0.1, 21), np.linspace(0, 1, 41))
acc, rms_x = np.array([rms_acceleration(float(t)) for t in t_acc]).T

# %%
w, m, s2 = target.weights.double(), target.means.double(), target.stds.double() ** 2
sigma_d2 = (w[:, None] * (m**2 + s2)).sum(0)[0].item()   # E[x1_i^2], the target's variance per coordinate
t_star = 1 / (1 + sigma_d2)
mid = (t_acc >= 0.3) & (t_acc <= 0.7)
print(f"sigma_d^2 = {sigma_d2:.1f}, t* = 1/(1 + sigma_d^2) = {t_star:.4f}")
print(f"RMS acceleration at t = 0: {acc[0]:.2f}; sigma_d^2 x RMS|x| on the same points: {sigma_d2 * rms_x[0]:.2f} "
      f"(control, sigma_d^2 = 1: {rms_x[0]:.2f}); at t = 0.1: {acc[t_acc == 0.1][0]:.2f}; largest for "
      f"0.3 <= t <= 0.7: {acc[mid].max():.2f} at t = {t_acc[mid][acc[mid].argmax()]:.3f}, "
      f"{acc[0] / acc[mid].max():.0f} times smaller than at t = 0")
h = 1 / 16
first_exact = fm.odeint(oracle, x0, method="dopri5", times=(0.0, h), rtol=1e-8, atol=1e-8).x
grow_exact = (first_exact.pow(2).sum(1).mean() / x0.pow(2).sum(1).mean()).item()
print(f"first uniform step (h = {h}): mean |x|^2 multiplied by {grow_exact:.3f} along the exact flow "
      f"(prediction (1 - h)^2 + h^2 sigma_d^2 = {(1 - h) ** 2 + h**2 * sigma_d2:.3f}), by Euler (1 - h)^2 = {(1 - h) ** 2:.3f}")
assert abs(acc[0] - sigma_d2 * rms_x[0]) < 1e-3 * acc[0] and abs(acc[0] - rms_x[0]) > 0.5 * acc[0]
assert acc[0] > 5 * acc[mid].max() and grow_exact > 1 > (1 - h) ** 2
assert abs(grow_exact - ((1 - h) ** 2 + h**2 * sigma_d2)) < 0.02

# %%
fig, (ax_acc, ax_grid) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, gridspec_kw=dict(height_ratios=[2, 1]))
ax_acc.plot(t_acc, acc, marker=".")
ax_acc.axvline(t_star, color="gray", ls=":", label=f"$t^*$ = {t_star:.3f}: the velocity turns outward")
ax_acc.set(yscale="log", ylabel=r"RMS $|\ddot x|$", title="how fast the exact paths bend, and where each grid steps")
ax_acc.legend(fontsize=8)
for i, (name, g) in enumerate(grids.items()):
    ax_grid.plot(g, np.full(len(g), i), "|", markersize=14)
ax_grid.set(yticks=range(len(grids)), yticklabels=[f"{n}: error {e:.3f}" for n, e in grid_errors.items()],
            xlabel="t", ylim=(-0.6, len(grids) - 0.4))
fig.tight_layout()
set_alt(fig, "Top: root-mean-square acceleration of the exact CondOT paths against t, on a log scale, largest at "
        f"the start ({acc[0]:.0f} at t = 0) and {acc[0] / acc[mid].max():.0f} times smaller in the middle of the "
        f"path; a dotted line marks t* = {t_star:.3f}, where the velocity turns outward. Bottom: the time points "
        "of the uniform, cosine and power-2 grids of 16 steps, labelled with Euler's error on each.")
plt.show()

# %% [markdown]
# For this target the cosine grid, short-stepped at both ends, beats the
# uniform one, and the grid that crowds its steps near $t = 1$ is worst. The
# top panel says why: the paths bend hardest at the start, where the velocity
# swings from $-x$ through zero (at $t^*$) to outward, with the acceleration
# still within about a quarter of its $t = 0$ value at $t = 0.1$ (printed), and much less in the
# middle of the path where the 11 streams separate. Cosine's first step is
# shorter than $t^*$; the uniform grid's first step straddles the reversal
# and, as printed, moves the cloud inward while the exact cloud grows; the
# power grid's first step is longer still. Cosine wins only by a little
# (compare the printed errors): its steps grow fast, and its fourth step,
# which spans $t = 0.1$ where the paths still bend hard, is nearly as long as
# a uniform step (the printed grid times). Which grid wins is a property of the field, so it
# is worth measuring rather than assuming.

# %%
assert grid_errors["cosine"] < grid_errors["uniform"] < grid_errors["power 2 (dense near 1)"], grid_errors
assert grids["cosine"][1] < t_star < grids["uniform"][1] < grids["power 2 (dense near 1)"][1]

# %% [markdown]
# ## 5. Trained model against the oracle
#
# Now a trained network. The same source points through the learned flow and
# through the exact one, with RK4 at 32 steps:

# %%
model = fm.MLP(2, hidden=256, depth=3)
run_uniform = fm.train(model, fm.CFMObjective(path, target),
                       steps=TRAIN_STEPS, batch_size=256, lr=1e-3, seed=SEED)
start = x0[:300].float()
learned = fm.sample(model, start, steps=32, method="rk4", return_trajectory=True)
exact = fm.odeint(oracle, start, steps=32, method="rk4", return_trajectory=True)

fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
plot_trajectories(exact.trajectory, ax=axes[0], n=150, title="oracle trajectories")
plot_trajectories(learned.trajectory.cpu(), ax=axes[1], n=150, title="learned trajectories")
fig.tight_layout()
plt.show()
endpoint_gap = (learned.x.cpu() - exact.x).norm(dim=1).median().item()
print(f"median distance between learned and exact end points: {endpoint_gap:.2f} (mode std is 1)")
assert endpoint_gap < 1.0, endpoint_gap

# %% [markdown]
# The two pictures look alike, and the printed median says how alike: the
# end points of the learned flow land a fraction of a standard deviation from
# where the exact flow sends the same starting points.
#
# ## 6. Which times to train on
#
# Training draws $t \sim U[0, 1]$ by default. A **logit-normal** distribution,
# $t = \sigma(z)$ with $z \sim \mathcal N(0, 1)$, puts more training weight on the
# middle of the path and less on the ends. Train the same network with it and
# compare the velocity error against the oracle, time by time.

# %%
model_ln = fm.MLP(2, hidden=256, depth=3)
run_ln = fm.train(model_ln, fm.CFMObjective(path, target, time_sampler=fm.logit_normal_time(0.0, 1.0)),
                  steps=TRAIN_STEPS, batch_size=256, lr=1e-3, seed=SEED)
t_grid = np.linspace(0.01, 0.99, 50)


def error_over_t(model):
    """RMS error against the oracle at each t (absolute: the relative error is meaningless where u_t ~ 0)."""
    return np.array([fm.velocity_error(model, oracle, float(t), n=4000, generator=gen)[1] for t in t_grid])


err_uniform, err_ln = error_over_t(model), error_over_t(model_ln)
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(t_grid, err_uniform, marker="o", label="t ~ uniform")
ax.plot(t_grid, err_ln, marker="s", label="t ~ logit-normal(0, 1)")
ax2 = ax.twinx()
density = np.exp(-0.5 * np.log(t_grid / (1 - t_grid)) ** 2) / (np.sqrt(2 * np.pi) * t_grid * (1 - t_grid))
ax2.fill_between(t_grid, density, color="C1", alpha=0.12)
ax2.set_ylabel("logit-normal density (shaded)")
ax.set(xlabel="t", ylabel=r"RMS error $|u_\theta - u_t|$", yscale="log", title="where training time is spent shows")
ax.legend()
plt.show()

# %% [markdown]
# In the middle of the path, where its training times concentrate, the
# logit-normal model is about as accurate as the uniform one or better (how
# much better depends on the budget: the next cell prints the ratio). Near the
# ends, which it rarely visits (see the shaded density), its error is several
# times larger. Logit-normal sampling became popular for image models (Esser et
# al. 2024 chose it for Stable Diffusion 3 after comparing time samplers), where
# the middle of the path is where the hard decisions are made; on this target
# it buys little and costs the ends. Measure before you choose.

# %%
middle = (t_grid > 0.3) & (t_grid < 0.7)
ends = (t_grid < 0.1) | (t_grid > 0.9)
ratio_middle = err_ln[middle].mean() / err_uniform[middle].mean()
ratio_ends = err_ln[ends].mean() / err_uniform[ends].mean()
print(f"mean RMS error, middle: uniform {err_uniform[middle].mean():.3f}, logit-normal {err_ln[middle].mean():.3f} "
      f"(ratio {ratio_middle:.2f}); ends: uniform {err_uniform[ends].mean():.3f}, logit-normal "
      f"{err_ln[ends].mean():.3f} (ratio {ratio_ends:.1f})")
assert ratio_middle < 1.1 and ratio_ends > 2, (ratio_middle, ratio_ends)

# %% [markdown]
# ## Summary
#
# - Solver errors against the exact field show the textbook orders: about 1
#   (Euler), 2 (midpoint, Heun) and 4 (RK4).
# - An adaptive solver with error control spends evaluations where the field
#   needs them and reaches a given accuracy with fewer of them.
# - A method of order $p$ has local error $O(h^{p+1})$ (Taylor) and global error
#   $O(h^p)$ ($1/h$ steps); both are measured.
# - Non-uniform time grids help when they put steps where the paths bend. Here
#   that is the start: the velocity, $-x$ at $t = 0$, reverses near
#   $t^* = 1/(1 + \sigma_d^2)$, and the acceleration there dwarfs that of the
#   mid-path split into 11 streams.
# - The time-sampling distribution in training decides where the learned
#   velocity is accurate: logit-normal times leave the ends of this path poorly
#   learned.
#
# **Exercises:** [ex03_sampling_ode_solvers.ipynb](../exercises/ex03_sampling_ode_solvers.ipynb),
# graded tasks on this chapter, each followed by a check that gives a hint.
#
# Next, chapter 4: the same ODE, run backwards, gives the model's likelihood.

# %%
print(fm.config.run_time(T_START))

# %% [markdown]
# ## Further reading
#
# The papers this chapter follows, and what to read each one for. Full entries are on the
# [references page](../book/references.md) (from `book/references.bib`).
#
# - [Lipman2024] Lipman et al. 2024, *Flow Matching Guide and Code* (arXiv 2412.06264): sampling a flow model
#   by solving its ODE, and the trade-off between solver order and evaluations.
# - [HairerNorsettWanner1993] Hairer, Nørsett and Wanner 1993, *Solving Ordinary Differential Equations I*:
#   Taylor expansions of Runge–Kutta methods, RK4's order conditions, and why local error $O(h^{p+1})$ gives
#   global error $O(h^p)$.
# - [Chen2018] Chen et al. 2018, *Neural Ordinary Differential Equations* (arXiv 1806.07366): a network as an
#   ODE's velocity, adaptive solvers, and counting function evaluations (NFE).
# - [DormandPrince1980] Dormand and Prince 1980, *A Family of Embedded Runge-Kutta Formulae*: the embedded
#   order-5/4 pair behind `dopri5`, this chapter's reference solver and its error control.
# - [Esser2024] Esser et al. 2024, *Scaling Rectified Flow Transformers for High-Resolution Image Synthesis*
#   (arXiv 2403.03206): logit-normal training times, chosen for image models after a comparison of samplers.
