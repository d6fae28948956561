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
# # Chapter 5 — Couplings and straight paths
#
# CFM pairs each data point with a source point, and so far the pairs were
# drawn independently. Independent pairs make the conditional lines cross, the
# network learns their average, and the average bends: sampling then needs
# many solver steps. Pair the points by **optimal transport** instead and the
# paths straighten, until a single Euler step lands almost on the data. This
# chapter measures that claim from a non-Gaussian source (8 Gaussians) to a
# target of two moons, and shows a second route to straight paths: **reflow**.
#
# **What you will learn**
# - why independent couplings make paths cross, and what the network learns there;
# - minibatch optimal transport: exact (a linear assignment) and entropic (Sinkhorn);
# - rectified flow and one round of reflow;
# - two measures of straightness: the deviation from straight lines and the path energy;
# - the exact 2-Wasserstein distance between sample sets, with its noise floor;
# - one-step and few-step Euler sampling.
#
# **Prerequisites:** chapters 1–3 (the CFM loss, the CondOT path, Euler steps).
#
# **Run time:** about 2 minutes on a 2-core laptop CPU at the default budget,
# under a minute in quick mode (`FMLEARN_QUICK=1`). The three training cells
# are the slow ones (the OT one most: it solves an assignment problem per
# batch); they show a progress bar.

# %%
import copy
import time

import matplotlib.pyplot as plt
import torch

import fmlearn as fm
from fmlearn.plotting import plot_loss, plot_samples, plot_trajectories

SEED = 0
fm.seed_everything(SEED)
gen = torch.Generator().manual_seed(SEED)
print(fm.describe())

TRAIN_STEPS = fm.budget(default=2000, quick=500)
REFLOW_STEPS = fm.budget(default=1500, quick=300)
N_PAIRS = fm.budget(default=10_000, quick=4000)  # (noise, sample) pairs for reflow
N_EVAL = fm.budget(default=1500, quick=600)      # samples per W2 (exact, O(n^3))
N_TRAJ = fm.budget(default=1000, quick=600)      # trajectories for the straightness measures
N_BIG = fm.budget(default=1024, quick=256)       # the "large" batch of section 2
W2SQ_RATIO_MIN = fm.budget(default=10.0, quick=4.0)  # one-step W2^2: independent / OT
U0_ERR_MAX = fm.budget(default=0.2, quick=0.35)       # learned u(x, 0) vs E[x1] - x, relative
W2_TARGET = fm.budget(default=0.4, quick=0.6)        # the few-step target, in data units
EXTENT = (-6.0, 6.0, -6.0, 6.0)

source, target = fm.EightGaussians(), fm.Moons()
path = fm.AffineGaussianPath("condot")

# %% [markdown]
# ## 1. Independent pairs cross
#
# On the CondOT path a pair $(x_0, x_1)$ moves along the straight line
# $x_t = (1 - t)\, x_0 + t\, x_1$ at constant velocity $x_1 - x_0$. The CFM
# loss makes the network learn the *marginal* velocity, the average of those
# conditional velocities over all pairs whose line passes through $x$ at time $t$:
#
# $$u_t(x) = \mathbb E\,[\,x_1 - x_0 \mid x_t = x\,].$$
#
# Where lines with different directions cross, the average points in a
# direction none of them takes, and the particle's path bends. Draw 64 source
# points (8 Gaussians on a circle of radius 4) and 64 data points (two moons),
# and pair them two ways: at random, and by **optimal transport**, the pairing
# $\sigma$ that minimises the total squared length
# $\frac1n\sum_j |x_0^{\sigma(j)} - x_1^j|^2$.

# %%
x0_demo, x1_demo = source.sample(64, generator=gen), target.sample(64, generator=gen)
perm = fm.ot_plan_exact(x0_demo, x1_demo)  # (x0_demo[perm[j]], x1_demo[j]) is the optimal pairing
pairings = {"independent": x0_demo, "optimal transport": x0_demo[perm]}
fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
for ax, (name, x0p) in zip(axes, pairings.items()):
    cost = (x0p - x1_demo).pow(2).sum(1).mean().item()
    for a, b in zip(x0p, x1_demo):
        ax.plot([a[0], b[0]], [a[1], b[1]], color="0.6", lw=0.7)
    plot_samples(x0p, ax=ax, extent=EXTENT, color="black", s=8, alpha=1, label="$x_0$")
    plot_samples(x1_demo, ax=ax, extent=EXTENT, color="C3", s=8, alpha=1,
                 title=f"{name} pairs: mean squared length {cost:.1f}", label="$x_1$")
    ax.legend(loc="upper right", fontsize=8)
plt.show()

# %% [markdown]
# Random pairs send points across the whole picture; their lines cross near
# the centre in every direction, and there the learned velocity is an average.
# The optimal pairs move each Gaussian to its nearest piece of the moons.
#
# **Check yourself.** An optimal pairing cannot be improved by swapping the
# partners of any two pairs $i, j$. Writing $a = x_0^i - x_0^j$ and
# $b = x_1^i - x_1^j$, a swap changes the cost by $2\,a\cdot b$, so optimality
# requires $a\cdot b \ge 0$ for every two pairs. Then two particles never meet
# at the same time: $|x_t^i - x_t^j|^2 = (1-t)^2|a|^2 + t^2|b|^2 + 2t(1-t)\,a\cdot b > 0$.
# Their lines may still cross on the page, at different times; that does not
# confuse the network, which also sees $t$. Count the pairs a swap would improve:

# %%
def improvable_swaps(x0p, x1):
    """Fraction of pairs (i, j) whose partners, swapped, would lower the total squared length."""
    a = x0p[:, None] - x0p[None]
    b = x1[:, None] - x1[None]
    dots = (a * b).sum(-1)
    off = ~torch.eye(len(x1), dtype=torch.bool)
    return (dots[off] < -1e-9).double().mean().item()


for name, x0p in pairings.items():
    print(f"{name:18s}: {100 * improvable_swaps(x0p, x1_demo):5.1f}% of the pairs of pairs gain from a swap")
assert improvable_swaps(pairings["optimal transport"], x1_demo) == 0.0
assert improvable_swaps(pairings["independent"], x1_demo) > 0.2
ot_cost = (pairings["optimal transport"] - x1_demo).pow(2).sum(1).mean().item()
assert abs(ot_cost - fm.w2_distance(x0_demo, x1_demo) ** 2) < 1e-5 * ot_cost

# %% [markdown]
# The last line checks the optimal cost against `fm.w2_distance`, which
# solves the same problem in its own code: the smallest mean squared length is
# the squared **2-Wasserstein distance** between the two sets of points,
#
# $$W_2(x, y)^2 = \min_\sigma \frac1n \sum_j |x^{\sigma(j)} - y^j|^2 .$$
#
# ## 2. Minibatch optimal transport: exact and entropic
#
# The OT pairing of the whole distributions is out of reach, but each
# training batch can be re-paired: draw $x_0$ and $x_1$ independently, then
# reorder the $x_0$ so the batch is optimally paired (Tong et al. 2023,
# Pooladian et al. 2023). `fm.OTCoupling()` does this with scipy's
# `linear_sum_assignment`, an exact $O(n^3)$ solver on the CPU.
#
# For larger batches, or to stay on a GPU, **entropic OT** trades exactness for
# speed: among plans $P$ (an $n\times m$ matrix with row sums $1/n$ and column
# sums $1/m$) it minimises
#
# $$\langle P, C\rangle - \varepsilon H(P), \qquad C_{ij} = |x_0^i - x_1^j|^2,\quad H(P) = -\textstyle\sum_{ij} P_{ij}(\log P_{ij} - 1).$$
#
# The solution has the form $P_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)$,
# and Sinkhorn's algorithm alternately fixes the row sums (a new $f$) and the
# column sums (a new $g$): a few matrix reductions per iteration, all on the
# device. `fm.sinkhorn_plan` runs them in the log domain, and
# `fm.SinkhornCoupling` draws, for each $x_1^j$, a partner from column $j$ of
# the plan. Number the optimal pairs $i = 0, \dots, 63$, grouped by source
# Gaussian, so that the exact plan is the diagonal, and watch the entropic plan
# spread as $\varepsilon$ grows ($\varepsilon$ is given as a fraction of the mean
# cost $\bar c$; the shade is $n P_{ij}$, the probability that $x_1^j$ gets $x_0^i$):

# %%
x0p = x0_demo[perm]
order = torch.argsort(torch.atan2(x0p[:, 1], x0p[:, 0]))  # group the pairs by source Gaussian
a, b = x0p[order].double(), x1_demo[order].double()       # the exact plan pairs a[i] with b[i]
mean_cost = fm.squared_distances(a, b).mean().item()
fractions = (0.3, 0.03, 0.003)
fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
axes[0].imshow(torch.eye(64), cmap="Greys", vmin=0, vmax=1)
axes[0].set(title="exact OT plan", xlabel="data point j", ylabel="source point i")
sink_costs = {}
for ax, frac in zip(axes[1:], fractions):
    plan = fm.sinkhorn_plan(a, b, reg=frac * mean_cost, iters=5000, tol=1e-6)
    sink_costs[frac] = (plan * fm.squared_distances(a, b)).sum().item()
    ax.imshow(64 * plan, cmap="Greys", vmin=0, vmax=1)
    ax.set(title=rf"Sinkhorn, $\varepsilon$ = {frac} $\bar c$", xlabel="data point j")
plt.show()
for frac, c in sink_costs.items():
    print(f"eps = {frac:5} x mean cost: transport cost <P, C> = {c:.3f} (exact optimum {ot_cost:.3f}, "
          f"independent {mean_cost:.3f})")
assert sink_costs[0.3] > sink_costs[0.03] > sink_costs[0.003] > ot_cost
assert sink_costs[0.003] < 1.01 * ot_cost

# %% [markdown]
# The cost of the entropic plan falls towards the exact optimum as
# $\varepsilon \to 0$ (and rises to the independent cost as
# $\varepsilon\to\infty$). Even a small $\varepsilon$ spreads the mass within
# the blocks along the diagonal: partners inside one Gaussian are nearly
# interchangeable, and the entropy term spreads over such near-ties first,
# at almost no cost. The price of a small $\varepsilon$ is iterations:
# Sinkhorn needs roughly $1/\varepsilon$ of them. On a larger batch, the two
# couplings against the independent one, with their time on this machine:

# %%
xb0, xb1 = source.sample(N_BIG, generator=gen), target.sample(N_BIG, generator=gen)
big_mean_cost = fm.squared_distances(xb0, xb1).mean().item()
couplings = {"independent": lambda x0, x1: x0, "exact OT": fm.OTCoupling(),
             "Sinkhorn": fm.SinkhornCoupling(reg=0.01 * big_mean_cost, iters=100, generator=gen)}
big_costs = {}
for name, coupling in couplings.items():
    start = time.perf_counter()
    paired = coupling(xb0, xb1)
    seconds = time.perf_counter() - start
    big_costs[name] = (paired - xb1).pow(2).sum(1).mean().item()
    print(f"{name:11s} batch {N_BIG}: mean squared length {big_costs[name]:6.3f}  ({seconds * 1e3:6.1f} ms)")
assert big_costs["exact OT"] < big_costs["Sinkhorn"] < 0.5 * big_costs["independent"]

# %% [markdown]
# Sinkhorn's pairs are a little longer than the exact ones (it samples from a
# blurred plan), and both are several times shorter than random pairs. On
# a CPU the exact solver is competitive at these sizes; on a GPU, where
# Sinkhorn's reductions run in parallel and the exact solver must copy the
# batch to the CPU, the balance turns (`benchmarks/ot_coupling.py` measures
# both against the cost of a training step).
#
# ## 3. Training with each coupling
#
# Two velocity networks, trained the same way on the same data: one on
# independent pairs (this is the **rectified flow** of Liu et al. 2022, the
# CondOT path with independent pairs), one on exact minibatch-OT pairs of
# batches of 256. The coupling is one argument of `fm.train`.

# %%
def new_model():
    torch.manual_seed(SEED)
    return fm.MLP(2, hidden=256, depth=3)


def fit(coupling=None, steps=TRAIN_STEPS):
    model = new_model()
    run = fm.train(model, path, target, source=source, steps=steps, batch_size=256, lr=2e-3, seed=SEED,
                   coupling=coupling)
    return model, run


model_ind, run_ind = fit()
model_ot, run_ot = fit(fm.OTCoupling())
print(f"trained in {run_ind.seconds:.0f} s (independent) and {run_ot.seconds:.0f} s (OT)")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.6))
plot_loss(run_ind.losses, ax=ax, label="independent", color="C0")
plot_loss(run_ot.losses, ax=ax, label="minibatch OT", color="C1", title="CFM loss with each coupling")
plt.show()

# %% [markdown]
# The loss never reaches zero: its floor is the variance of the conditional
# velocity $x_1 - x_0$ given $(x_t, t)$, what no function of $(x_t, t)$ can
# predict. With OT pairs, knowing where a particle is and when nearly tells
# where it goes, so that floor is far lower.
#
# ## 4. One step and a few steps
#
# The exact $W_2$ between equal-size sample sets (`fm.w2_distance`, in data
# units) measures the samples. Like any two-sample distance it is positive
# even for two sets of true samples: `fm.w2_floor` gives that floor at our
# sample size. We integrate both models with $1, 2, 4, \dots$ Euler steps from
# the same source points.

# %%
x0_eval = source.sample(N_EVAL, generator=gen)
x1_ref = target.sample(N_EVAL, generator=gen)
floor = fm.w2_floor(target, N_EVAL, repeats=4, generator=gen)
STEP_COUNTS = [1, 2, 4, 8, 16, 32, 64]


def w2_by_steps(model):
    return {k: fm.w2_distance(fm.sample(model, x0_eval, steps=k).x.cpu(), x1_ref) for k in STEP_COUNTS}


w2 = {"independent": w2_by_steps(model_ind), "minibatch OT": w2_by_steps(model_ot)}
print(f"W2 floor (two true sample sets of {N_EVAL}): {floor:.3f}")
for name, row in w2.items():
    print(f"{name:13s}" + "".join(f"  {k}: {v:.3f}" for k, v in row.items()))

# %% [markdown]
# Why does the independent model fail so badly in one step? At $t = 0$,
# $x_t = x_0$ tells nothing about $x_1$, so the exact marginal velocity is
# $u_0(x) = \mathbb E[x_1] - x$, and one Euler step of size 1 would send
# *every* point to the data mean. Compare the learned velocity at $t = 0$ with
# that formula, and the spread $\sqrt{\operatorname{tr}\operatorname{Cov}}$ of
# the one-step samples with the data's:

# %%
toward_mean = x1_ref.mean(0) - x0_eval
u0 = fm.sample(model_ind, x0_eval, steps=1).x.cpu() - x0_eval  # one Euler step of size 1 adds u(x0, 0)
rel_err = ((u0 - toward_mean).norm() / toward_mean.norm()).item()
spread_data = x1_ref.var(0).sum().sqrt().item()
spread_one_step = (x0_eval + u0).var(0).sum().sqrt().item()
print(f"learned u(x, 0) vs E[x1] - x: relative error {rel_err:.3f}")
print(f"spread: data {spread_data:.2f}, one-step samples of the independent model {spread_one_step:.2f}")
assert rel_err < U0_ERR_MAX
assert spread_one_step < 0.5 * spread_data

# %% [markdown]
# The network learns nearly that velocity. Not exactly: the exact field
# changes fast just after $t = 0$ (a little of $x_1$ shows in $x_t$ at once),
# and a smooth network blurs that. So the one-step samples huddle near the
# centre, and their $W_2$ is most of the data's spread. With OT pairs:

# %%
ratio_w2sq = w2["independent"][1] ** 2 / w2["minibatch OT"][1] ** 2
print(f"one step, OT vs independent: W2 {w2['minibatch OT'][1]:.3f} vs {w2['independent'][1]:.3f} "
      f"({w2['independent'][1] / w2['minibatch OT'][1]:.1f}x); W2^2 {ratio_w2sq:.1f}x smaller")
assert ratio_w2sq >= W2SQ_RATIO_MIN

# %% [markdown]
# **Which $W_2$.** We report $W_2$ itself, in data units, and state the
# course's "10 times better" target on $W_2^2$, the optimal transport cost.
# The reason is the floor: the independent model's one-step $W_2$ is most of
# the data's spread (about 1.5 of 2), while even a perfect sampler scores the
# floor, about 0.15 with 1500 samples: a ratio of 10 in $W_2$ is then out of
# reach of *any* sampler, and would test the sample size, not the model. In
# $W_2^2$ the floor is about 0.02 against 2 or more, and the ratio measures the
# model. (Published comparisons differ in scale and in which of the two they
# report, so compare ratios, not values.)
#
# Now the few-step question: the fewest Euler steps that bring each model
# within a stated target, $W_2 \le$ `W2_TARGET`.

# %%
def fewest_steps(row, target_w2=W2_TARGET):
    return next((k for k, v in row.items() if v <= target_w2), None)


needed = {name: fewest_steps(row) for name, row in w2.items()}
print(f"fewest Euler steps to W2 <= {W2_TARGET}: {needed}")
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, row in w2.items():
    ax.plot(list(row), list(row.values()), "o-", label=name)
ax.axhline(W2_TARGET, color="C2", ls="--", label=f"target {W2_TARGET}")
ax.axhline(floor, color="black", ls=":", label="floor (true vs true)")
ax.set(xscale="log", ylim=(0, None), xlabel="Euler steps", ylabel="$W_2$ to the moons",
       title="sample quality against the number of Euler steps", xticks=STEP_COUNTS, xticklabels=STEP_COUNTS)
ax.legend(fontsize=8)
plt.show()
assert needed["minibatch OT"] is not None and needed["independent"] is not None
assert 2 * needed["minibatch OT"] <= needed["independent"]

# %% [markdown]
# The OT model is close to its best after one or two steps; the independent
# one needs many, because its paths bend (next section). With enough steps the
# two meet: both learn a flow from the source to the data, and what is left is
# the network's error (for the OT model, its field must split each Gaussian
# sharply between different pieces of the moons, which a smooth network blurs).
#
# ## 5. Straightness, path energy, and reflow
#
# Two numbers describe a flow's trajectories $x_t$ on $[0, 1]$:
#
# - the **straightness** (Liu et al. 2022) $S = \mathbb E \int_0^1 |u_t(x_t) - (x_1 - x_0)|^2\, dt$,
#   zero exactly when every particle moves on a straight line at constant speed;
# - the **path energy** $E = \mathbb E \int_0^1 |u_t(x_t)|^2\, dt$, the kinetic energy.
#
# They are related: $E = S + \mathbb E|x_1 - x_0|^2$, and the last term is the
# cost of the coupling the flow itself defines, which is at least $W_2^2$ of
# the two distributions (Benamou–Brenier: no flow moves $p_0$ to $p_1$ with
# less energy). `fm.straightness` and `fm.path_energy` compute both from a
# trajectory as sums over its steps; with Euler steps the step velocity is
# exactly the network's.
#
# **Reflow** straightens a trained flow without OT: integrate it to get pairs
# $(x_0, x_1 = \text{flow}(x_0))$, then train again on those pairs. Those pairs
# never cross at equal times (they come from an ODE), so the new flow's paths
# are straighter, while it still maps $p_0$ to the same distribution. One round,
# starting from the independent model's weights:

# %%
pairs = fm.reflow_pairs(model_ind, N_PAIRS, source, steps=16, method="rk4", generator=gen)
model_reflow = copy.deepcopy(model_ind)
run_reflow = fm.train(model_reflow, path, pairs, steps=REFLOW_STEPS, batch_size=256, lr=1e-3, seed=SEED)
w2["reflow (1 round)"] = w2_by_steps(model_reflow)
print(f"reflow trained in {run_reflow.seconds:.0f} s on {len(pairs)} pairs")
print("reflow       " + "".join(f"  {k}: {v:.3f}" for k, v in w2["reflow (1 round)"].items()))

# %%
models = {"independent": model_ind, "minibatch OT": model_ot, "reflow (1 round)": model_reflow}
sols = {name: fm.sample(m, x0_eval[:N_TRAJ], steps=64, return_trajectory=True) for name, m in models.items()}
measures = {}
for name, sol in sols.items():
    traj = sol.trajectory.cpu()
    disp = (traj[-1] - traj[0]).pow(2).sum(1).mean().item()
    measures[name] = (fm.straightness(sol), fm.path_energy(sol), disp, fm.w2_distance(traj[0], traj[-1]) ** 2)
    s, e, d, w = measures[name]
    print(f"{name:17s} straightness {s:6.3f}   path energy {e:6.3f}   E|x1 - x0|^2 {d:6.3f}   W2^2 {w:6.3f}")
    assert abs(e - (s + d)) < 1e-6 * e and e >= d >= w

# %%
fig, axes = plt.subplots(2, 3, figsize=(13, 8.8))
for col, (name, sol) in enumerate(sols.items()):
    plot_trajectories(sol.trajectory.cpu(), ax=axes[0, col], n=200, extent=EXTENT,
                      title=f"{name}: S = {measures[name][0]:.2f}")
    plot_samples(x1_ref, ax=axes[1, col], extent=EXTENT, color="0.7", s=2, label="data")
    plot_samples(fm.sample(models[name], x0_eval, steps=1).x, ax=axes[1, col], extent=EXTENT, color="C3", s=2,
                 title=f"one Euler step: $W_2$ = {w2[name][1]:.2f}", label="one step")
    axes[1, col].legend(loc="upper right", fontsize=8)
plt.show()

# %% [markdown]
# Top: the independent model's particles first head for the centre, where the
# data mean is, then turn towards the moons; the OT and reflowed particles go
# almost straight. Bottom: so one Euler step leaves the independent model's
# samples in a blob at the centre, and puts the others' on the moons (a little
# blurred). The OT flow's path energy sits just above $W_2^2$ between
# its start and end points: it transports nearly optimally. The reflowed flow
# is about as straight, but its energy stays well above $W_2^2$: reflow keeps
# the pairing of the independent flow, and that pairing is not the optimal
# one. (Liu et al. prove that rectification never raises a convex transport
# cost; compare the $\mathbb E|x_1 - x_0|^2$ column: the reflowed pairs are a
# little shorter than the independent flow's.)
#
# **Check yourself.** One round of reflow must lower the straightness a lot,
# and the OT model must start straight.

# %%
s_ind, s_ot, s_reflow = (measures[k][0] for k in models)
print(f"straightness: independent {s_ind:.3f} -> reflowed {s_reflow:.3f}; OT {s_ot:.3f}")
assert s_reflow < 0.5 * s_ind
assert s_ot < 0.25 * s_ind

# %% [markdown]
# ## Summary
#
# - With independent pairs the conditional lines cross, the learned velocity
#   averages them, and the paths bend: one Euler step sends every point to the
#   data mean.
# - **Minibatch OT** re-pairs each batch: exactly with a linear assignment
#   (`fm.OTCoupling`), or approximately and on the device with Sinkhorn
#   (`fm.SinkhornCoupling`, `fm.sinkhorn_plan`). No two OT pairs meet at the
#   same time, the paths come out nearly straight, and one or two Euler steps
#   suffice.
# - **Reflow** straightens a trained flow by retraining it on its own
#   (noise, sample) pairs (`fm.reflow_pairs`).
# - **Straightness** and **path energy** (`fm.straightness`, `fm.path_energy`)
#   measure it; $E = S + \mathbb E|x_1-x_0|^2 \ge W_2^2$.
# - The exact $W_2$ (`fm.w2_distance`) is only meaningful next to its floor
#   (`fm.w2_floor`).
#
# Next, chapter 6: conditional generation and images. The exercise notebook of
# this chapter (ex05_couplings) is planned with the course's exercise set; it
# is not written yet.

# %%
print(f"one-step W2: independent {w2['independent'][1]:.3f}, OT {w2['minibatch OT'][1]:.3f}, "
      f"reflow {w2['reflow (1 round)'][1]:.3f} (floor {floor:.3f}); W2^2 ratio {ratio_w2sq:.1f}")
print(f"Euler steps to W2 <= {W2_TARGET}: {needed}; straightness {s_ind:.3f} -> reflow {s_reflow:.3f}, OT {s_ot:.3f}")
print(f"training: {run_ind.seconds:.0f} s, {run_ot.seconds:.0f} s (OT), {run_reflow.seconds:.0f} s (reflow)")
