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
# # Exercises for chapter 11 — few steps
#
# Four tasks on the flow map, the object that few-step samplers learn: the
# average velocity read off a solved trajectory (the training examples of a
# distilled map), the MeanFlow target through one Jacobian–vector product,
# a sampler that takes a few steps with a flow map, and the semigroup defect
# that self-consistency methods train to zero. The checks compare with the
# closed-form flow of a Gaussian target, with finite differences of a random
# network, with a stepping loop of their own that records the times it was
# called at, and with an affine model's steps composed as matrices.
#
# **Prerequisites:** [chapter 11](../chapters/11_few_steps.ipynb) (and the
# ODE solvers of chapter 3). **Run time:** under half a minute.

# %%
import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import matplotlib.pyplot as plt
import torch

from fmlearn.exercises.checks_fewstep import (GaussianFlow, check_average_velocities, check_few_step_sampler,
                                              check_meanflow_target, check_semigroup_defect)

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## The flow map and the average velocity
#
# Time runs from the source $\mathcal N(0, I)$ at $t = 0$ to the data at
# $t = 1$, and the marginal velocity $v(x, t)$ moves the points along. The
# **flow map** $X_{s \to t}(x)$ is where the ODE $\dot x = v(x, \tau)$,
# started from $x$ at time $s$, is at time $t$ ($0 \le s \le t \le 1$).
# Writing the displacement as a time span times a velocity defines the
# **average velocity**, anchored at the start point $x$ (the point at time
# $s$):
#
# $$X_{s \to t}(x) = x + (t - s)\, u(x, s, t), \qquad
#   u(x, s, t) = \frac{X_{s \to t}(x) - x}{t - s}, \qquad u(x, s, s) = v(x, s).$$
#
# On a trajectory $x_\tau$, $u(x_s, s, t)$ is the slope of the chord from
# $(s, x_s)$ to $(t, x_t)$, and $v(x_s, s)$ the slope of the tangent at its
# start. Euler's step uses the tangent; a flow map takes the chord, and one
# step of an exact map lands exactly where the ODE does.

# %% [markdown]
# ## Task 1 — the average velocity from a trajectory (3 points)
#
# An ODE solve returns a trajectory: times $t_0 < t_1 < \dots < t_N$,
# shape `(N + 1,)`, and the states $x_{t_i}$ of $n$ points, shape
# `(N + 1, n, d)`. Any two states of it give an example of the average
# velocity, exact to the solver's accuracy; a network trained on such
# examples is a map *distilled* from the ODE (chapter 11). Write `average_velocities(times, states, pairs)`: for
# index pairs `pairs` of shape `(k, 2)`, each row $(i, j)$, return the four
# tensors `(x, s, t, u)` with
#
# - `x[p] =` $x_{t_i}$, shape `(k, n, d)`: the anchor, the state at the **start**;
# - `s[p] =` $t_i$ and `t[p] =` $t_j$, shape `(k,)`;
# - `u[p] =` $(x_{t_j} - x_{t_i}) / (t_j - t_i)$, shape `(k, n, d)`.
#
# $u(x, s, t)$ is defined for $s < t$ only: if any pair has $t_j \le t_i$,
# raise a `ValueError` whose message names the pair and its times (at
# $t_j = t_i$ the formula divides by zero; at $t_j < t_i$ it returns a
# plausible number for a question the map does not answer).

# %% nbgrader={"grade": false, "grade_id": "average_velocities", "locked": false, "schema_version": 3, "solution": true, "task": false}
def average_velocities(times, states, pairs):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "average_velocities_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_average_velocities(average_velocities)

# %% [markdown]
# **Why one Euler step fails with a perfect velocity.** Chapter 1's target,
# eleven modes on a circle, with the oracle's exact velocity: an adaptive
# solver (Dormand–Prince, tight tolerance) follows 2,000 points from $t = 0$
# to $1$ on its own, non-uniform grid. Your function reads the exact average
# velocity $u(x_0, 0, 1)$ off the end points; compare it with the velocity
# $v(x_0, 0)$ at the start, which is all that one Euler step knows.

# %%
target = fm.GaussianMixture.symmetric_2d()
oracle = fm.MixtureOracle(target, fm.AffineGaussianPath("condot"))
x0 = torch.randn(2000, 2, dtype=torch.float64)
solved = fm.odeint(oracle, x0, method="dopri5", rtol=1e-8, atol=1e-8, return_trajectory=True)
steps = solved.times.diff()
print(f"{len(solved.times) - 1} adaptive steps, from {float(steps.min()):.3f} to {float(steps.max()):.3f} long")
last = len(solved.times) - 1
_, _, _, u = average_velocities(solved.times, solved.trajectory, torch.tensor([[0, last]]))
v0 = oracle(x0, 0.0)
print(f"mean |u(x0, 0, 1) - v(x0, 0)| = {float((u[0] - v0).norm(dim=1).mean()):.2f} "
      f"(mean |u(x0, 0, 1)| = {float(u[0].norm(dim=1).mean()):.2f})")
print(f"one Euler step, x0 + v(x0, 0): largest distance from the origin {float((x0 + v0).norm(dim=1).max()):.1e}")
assert float((x0 + v0).norm(dim=1).max()) < 1e-6  # the mixture's means are float32: rounding

# %% [markdown]
# At $t = 0$ the velocity is $v(x, 0) = \mathbb E[x_1] - x$, the pull towards
# the data's mean, and the eleven modes on a circle have their mean at the
# origin: one Euler step sends *every* point to the origin, as printed. The
# chord knows which mode the trajectory ends in; the tangent at the start
# cannot. Below, eight trajectories (grey), their chords (dashed: one step of
# the exact map) and Euler's single step (red arrows, all ending at the
# origin).

# %%
fig, ax = plt.subplots(figsize=(5.5, 5.5))
ax.scatter(*target.sample(1500).T, s=2, color="lightgray", label="data")
for k in range(8):
    path = solved.trajectory[:, k]
    ax.plot(path[:, 0], path[:, 1], color="gray", lw=1)
    ax.plot([x0[k, 0], x0[k, 0] + u[0, k, 0]], [x0[k, 1], x0[k, 1] + u[0, k, 1]], "k--", lw=1)
    ax.annotate("", xy=(float(x0[k, 0] + v0[k, 0]), float(x0[k, 1] + v0[k, 1])), xytext=(float(x0[k, 0]),
                float(x0[k, 1])), arrowprops={"arrowstyle": "->", "color": "tab:red"})
ax.scatter(*x0[:8].T, s=12, color="black", zorder=3, label="$x_0$")
ax.set(title="trajectories, chords (one exact-map step) and Euler's step", xlabel="coordinate 1", ylabel="coordinate 2",
       aspect="equal")
ax.legend(loc="upper right");

# %% [markdown]
# ## Task 2 — the MeanFlow target (4 points)
#
# To *learn* a map without solving the ODE, differentiate the definition.
# Fix $t$ and follow one trajectory $x_s$, $\frac{d}{ds} x_s = v(x_s, s)$.
# Wherever on the trajectory you start, the map lands on the same point:
# $x_s + (t - s)\, u(x_s, s, t) = x_t$ for every $s \le t$, so the
# derivative in $s$ of the left side is zero:
#
# $$v(x_s, s) - u(x_s, s, t) + (t - s)\, \frac{d}{ds} u(x_s, s, t) = 0
#   \quad\Longrightarrow\quad
#   u(x_s, s, t) = v(x_s, s) + (t - s)\, \frac{d}{ds} u(x_s, s, t).$$
#
# By the chain rule $\frac{d}{ds} u(x_s, s, t) = (\nabla_x u)\, v + \partial_s u$:
# the derivative of $u(x, s, t)$ in the direction $(v, 1, 0)$ of its three
# arguments ($x$ moves with velocity $v$, $s$ with speed 1, $t$ is fixed).
# That is one forward-mode Jacobian–vector product,
# `torch.func.jvp(model, (x, s, t), (v, ones, zeros))`, which returns the
# model's output and its derivative in that direction in one forward-mode
# pass, without building the Jacobian.
#
# MeanFlow trains a network $u_\theta$ by regressing it onto the right side,
# with the network itself inside:
# $u_{\text{tgt}} = v + (t - s)\, \frac{d}{ds} u_\theta$, held fixed
# (stop-gradient: `.detach()`), so the loss is a plain regression, as in
# CFM. In training $v$ is the conditional velocity $x_1 - x_0$ at
# $x_s = s\, x_1 + (1 - s)\, x_0$, whose average given $x_s$ is the marginal
# velocity. Write `meanflow_target(model, x, s, t, v)` for a model called as
# `model(x, s, t)`, `x` and `v` of shape `(n, d)`, `s` and `t` of shape
# `(n,)`, returning the detached target, shape `(n, d)`. (The MeanFlow paper
# runs time the other way, data at 0 and noise at 1, and writes
# $u(z_t, r, t)$ with $r < t$: anchored at $z_t$, the noisy start of the
# sampling step, as here. Its identity has a minus sign,
# $u = v - (t - r)\frac{d}{dt}u$, because of the reversed time: in our time its
# $u$, $v$ and $\frac{d}{dt}$ are $-u$, $-v$ and $-\frac{d}{ds}$, and
# substituting gives the identity above.)

# %% nbgrader={"grade": false, "grade_id": "meanflow_target", "locked": false, "schema_version": 3, "solution": true, "task": false}
def meanflow_target(model, x, s, t, v):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "meanflow_target_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_meanflow_target(meanflow_target)

# %% [markdown]
# **The target's fixed point.** For the exact average velocity and the true
# velocity, the target is $u$ itself: that is the identity. For the Gaussian
# target $\mathcal N(m, 0.5^2 I)$ the flow is linear and its map is known in
# closed form (`GaussianFlow`, the check's reference):
# $X_{s \to t}(x) = t m + \frac{\sigma_t}{\sigma_s}(x - s m)$ with
# $\sigma_t = \sqrt{(1 - t)^2 + t^2\, 0.5^2}$. Feed your target the exact map,
# then Euler's model $u(x, s, t) = v(x, s)$ (the tangent, whatever $t$): the
# target of the first is itself, the target of the second is not; it is
# what MeanFlow's regression pulls the tangent towards.

# %%
flow = GaussianFlow(torch.tensor([2.0, -1.0], dtype=torch.float64), 0.5)
xg = torch.randn(1000, 2, dtype=torch.float64)
sg = 0.5 * torch.rand(1000, dtype=torch.float64)
tg = sg + (1 - sg) * torch.rand(1000, dtype=torch.float64)
vg = flow.velocity(xg, sg)
exact_u = flow.average_velocity(xg, sg, tg)
tangent = lambda x, s, t: flow.velocity(x, s)  # noqa: E731 - Euler's model: the tangent, whatever t
for name, model in (("exact map", flow), ("Euler's tangent", tangent)):
    gap = (meanflow_target(model, xg, sg, tg, vg) - model(xg, sg, tg)).norm(dim=1).max()
    to_exact = (meanflow_target(model, xg, sg, tg, vg) - exact_u).norm(dim=1).mean()
    print(f"{name:16s} largest |target - u| {float(gap):.1e}, mean |target - exact u| {float(to_exact):.3f}")
before = float((flow.velocity(xg, sg) - exact_u).norm(dim=1).mean())
after = float((meanflow_target(tangent, xg, sg, tg, vg) - exact_u).norm(dim=1).mean())
print(f"one application of the target moves Euler's tangent from a mean distance {before:.3f} to the exact average "
      f"velocity to {after:.3f} ({after / before:.0%} of it)")
assert float((meanflow_target(flow, xg, sg, tg, vg) - exact_u).abs().max()) < 1e-10 and after < before / 2

# %% [markdown]
# Training repeats this at every step, on the network's current guess,
# whose exact target is itself only where the guess is the exact map.

# %% [markdown]
# ## Task 3 — a few steps with a flow map (3 points)
#
# A flow-map model $u(x, s, t)$ samples in $k$ steps on the uniform grid
# $t_i = i / k$:
#
# $$x \leftarrow x + (t_{i+1} - t_i)\, u(x, t_i, t_{i+1}), \qquad i = 0, \dots, k - 1,$$
#
# starting from $x_0$; $k$ steps cost $k$ evaluations. Write
# `sample_flow_map(model, x0, steps)` returning the state at $t = 1$; call
# the model as `model(x, s, t)` with `s` and `t` floats. For an exact map
# every $k$ gives the same answer, $X_{0 \to 1}(x_0)$: each step lands on the
# trajectory, and the next starts from there (the semigroup property
# $X_{s \to t} = X_{r \to t} \circ X_{s \to r}$).

# %% nbgrader={"grade": false, "grade_id": "sample_flow_map", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sample_flow_map(model, x0, steps):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "sample_flow_map_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_few_step_sampler(sample_flow_map)

# %% [markdown]
# **Few steps with an exact map, and with an exact velocity.** On the
# Gaussian flow, your sampler with the exact map against Euler's model (the
# exact *velocity* used as if it were the average velocity), at 1, 2, 4 and
# 8 steps; then Euler on chapter 1's eleven modes with the oracle's exact
# velocity, against the end points of the adaptive solve of task 1.

# %%
x0g = torch.randn(2000, 2, dtype=torch.float64)
end = flow.map(x0g, 0.0, 1.0)
euler_mixture = lambda x, s, t: oracle(x, s)  # noqa: E731
rows = []
for k in (1, 2, 4, 8):
    errors = [float((sample_flow_map(m, x, k) - e).norm(dim=1).mean())
              for m, x, e in ((flow, x0g, end), (tangent, x0g, end), (euler_mixture, x0, solved.x))]
    rows.append(errors)
    print(f"{k} step{'s' if k > 1 else ' '}: mean distance to the exact end point: Gaussian, exact map {errors[0]:.1e}, "
          f"Euler {errors[1]:.3f}; eleven modes, Euler {errors[2]:.2f}")
rows = torch.tensor(rows)
assert rows[:, 0].max() < 1e-10 and bool((rows[1:, 1:] < rows[:-1, 1:]).all()) and rows[3, 2] > target.stds.max()
print(f"from 4 to 8 steps Euler's error falls {float(rows[2, 1] / rows[3, 1]):.2f}-fold on the Gaussian and "
      f"{float(rows[2, 2] / rows[3, 2]):.2f}-fold on the eleven modes (first order: 2); at 8 steps it is still "
      f"{float(rows[3, 2]):.2f} on the eleven modes, {float(rows[3, 2]) / float(target.stds.max()):.1f} times a "
      "mode's standard deviation")

# %% [markdown]
# The exact map is exact at every number of steps, and one step is as good
# as eight. Euler's error falls with the steps (the printed factors from 4
# to 8 steps; first order would give 2), but on the eleven modes it starts
# from the distance to the origin and, after eight steps, is still larger
# than a mode's width (printed above): the velocity along the trajectories
# changes too much in time for a few tangent steps (chapter 11 prints how
# it changes). That is the gap a learned map closes; chapter 11 learns one
# (by MeanFlow, with your target, and by distillation from trajectories, with
# your average velocities) and measures it against the exact map at 1, 2 and
# 4 steps.

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ks = [1, 2, 4, 8]
ax.loglog(ks, rows[:, 1], "o-", label="Euler, Gaussian")
ax.loglog(ks, rows[:, 2], "s-", label="Euler, eleven modes")
ax.loglog(ks, rows[:, 0].clamp_min(1e-16), "^-", label="exact map, Gaussian")
ax.set(title="mean distance to the exact end point", xlabel="steps (network evaluations)", ylabel="distance")
ax.set_xticks(ks, [str(k) for k in ks])
ax.legend();

# %% [markdown]
# ## Task 4 — the semigroup defect (2 points)
#
# An exact map can be taken in one step or in two: for $s \le r \le t$,
# $X_{s \to t} = X_{r \to t} \circ X_{s \to r}$ (two steps of the same ODE,
# the second from where the first ended). A learned map need not obey it,
# and how far it is off measures how much its few-step samples depend on the
# number of steps. With $X_{a \to b}(y) = y + (b - a)\, u(y, a, b)$, write
# `semigroup_defect(model, x, s, r, t)` returning, for each row of `x`
# (shape `(n, d)`; `s`, `r`, `t` floats),
#
# $$\big|X_{r \to t}(X_{s \to r}(x)) - X_{s \to t}(x)\big|, \qquad \text{shape } (n,).$$

# %% nbgrader={"grade": false, "grade_id": "semigroup_defect", "locked": false, "schema_version": 3, "solution": true, "task": false}
def semigroup_defect(model, x, s, r, t):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "semigroup_defect_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_semigroup_defect(semigroup_defect)

# %% [markdown]
# **Which maps keep the semigroup.** Divide the two-step displacement by
# $t - s$ and the semigroup becomes a statement about average velocities:
#
# $$u(x, s, t) = \frac{(r - s)\, u(x, s, r) + (t - r)\, u(x_r, r, t)}{t - s},
#   \qquad x_r = x + (r - s)\, u(x, s, r),$$
#
# the average of the two halves when $r$ is the midpoint. A shortcut model
# (chapter 11's self-consistency method) regresses $u_\theta(x, s, t)$ onto
# the right side computed with the network itself and held fixed
# (stop-gradient). Its residual, $u_\theta(x, s, t)$ minus that right side,
# has the length of your defect divided by $t - s$ (for the network's own
# two steps), so the regression pushes the defect towards zero, with the
# gradient through the one-step side only. On the Gaussian flow, the exact map against Euler's
# tangent, from $s = 0$ to $t = 1$ through each $r$:

# %%
rs = torch.linspace(0, 1, 21).tolist()
defects = {name: [float(semigroup_defect(m, x0g, 0.0, r, 1.0).mean()) for r in rs]
           for name, m in (("exact", flow), ("Euler", tangent))}
worst = max(range(len(rs)), key=lambda i: defects["Euler"][i])
print(f"largest mean defect: exact map {max(defects['exact']):.1e}, Euler's tangent {defects['Euler'][worst]:.3f} "
      f"at r = {rs[worst]:.2f}; Euler's tangent at r = 0 and r = 1: {defects['Euler'][0]:.0e} and "
      f"{defects['Euler'][-1]:.0e}")
assert max(defects["exact"]) < 1e-10 and defects["Euler"][worst] > 0.1
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, label in (("exact", "exact map"), ("Euler", "Euler's tangent")):
    ax.plot(rs, defects[name], "o-", ms=3, label=label)
ax.set(title="semigroup defect from s = 0 to t = 1 through r", xlabel="r", ylabel="mean defect")
ax.legend();

# %% [markdown]
# At $r = 0$ or $r = 1$ one of the two steps has length zero, so every map
# passes there; in between, Euler's tangent is off by the difference between
# its one-step and two-step samples, and the exact map by rounding only.
