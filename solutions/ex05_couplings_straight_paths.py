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
# # Exercises for chapter 5 — couplings and straight paths
#
# Three tasks: an exact minibatch optimal-transport pairing, counting the
# straight paths that cross (and seeing how OT pairing removes most of
# them), and Sinkhorn's entropic plan in the log domain.
#
# **Prerequisites:** chapter 5. **Run time:** a few seconds.

# %%
import math

import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import torch
from scipy.optimize import linear_sum_assignment

from fmlearn.exercises import check_count_crossings, check_ot_pairing, check_sinkhorn

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — an exact OT pairing (2 points)
#
# Given a batch of noise `x0` and a batch of data `x1`, both `(n, d)`, find
# the permutation that pairs them with the least total squared distance
# $\sum_j \|x_1^{(j)} - x_0^{(\pi(j))}\|^2$. Build the `(n, n)` cost matrix
# with `x1` along the rows and `x0` along the columns, solve the assignment
# problem with `scipy.optimize.linear_sum_assignment`, and return `perm` as a
# tensor so that `x0[perm[j]]` goes with `x1[j]`.

# %% nbgrader={"grade": false, "grade_id": "ot_pairing", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ot_pairing(x0, x1):
    ### BEGIN SOLUTION
    cost = torch.cdist(x1, x0).pow(2)
    _, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(cols, dtype=torch.int64)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ot_pairing_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_ot_pairing(ot_pairing)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_x = torch.randn(20, 2)
expect_close("the pairing of a batch of 20 points with itself", ot_pairing(_x, _x), torch.arange(20),
             "each point pairs with itself at cost 0, so perm = 0, 1, ..., 19; build the cost matrix with x1 "
             "along the rows and x0 along the columns and return the column indices", atol=0, rtol=0)
### END HIDDEN TESTS

# %% [markdown]
# ## Task 2 — crossing paths (3 points)
#
# With independent pairs, the straight paths $x_0 \to x_1$ cross each other
# all over the plane. At a crossing, the two conditional velocities point in
# different directions from the same place, so the marginal velocity there
# averages them, and the learned flow's paths bend. Write
# `count_crossings(x0, x1)`: the number of pairs $i < j$ whose segments
# $x_0^{(i)} \to x_1^{(i)}$ and $x_0^{(j)} \to x_1^{(j)}$ intersect, in 2-D.
# (Two segments cross when the ends of each lie on opposite sides of the
# line through the other: compare signs of 2-D cross products.)

# %% nbgrader={"grade": false, "grade_id": "count_crossings", "locked": false, "schema_version": 3, "solution": true, "task": false}
def count_crossings(x0, x1):
    ### BEGIN SOLUTION
    def side(p, q, r):  # > 0 when r is left of the line p -> q
        return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])
    a0, a1 = x0[:, None], x1[:, None]  # segment i
    b0, b1 = x0[None], x1[None]        # segment j
    crosses = (side(a0, a1, b0) * side(a0, a1, b1) < 0) & (side(b0, b1, a0) * side(b0, b1, a1) < 0)
    return int(torch.triu(crosses, diagonal=1).sum())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "count_crossings_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_count_crossings(count_crossings)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

expect_close("crossings of two parallel paths (0,0)->(1,0) and (0,1)->(1,1)",
             count_crossings(torch.tensor([[0.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])), 0,
             "parallel segments never cross: count a pair only when the ends of each segment lie on opposite "
             "sides of the line through the other (if you solve for the meeting point, skip a pair whose "
             "directions are parallel: the determinant is 0)",
             atol=0, rtol=0)
### END HIDDEN TESTS

# %% [markdown]
# **How much does OT help?** The same 200 noise points and 200 data points
# (8 Gaussians to moons, as in chapter 5), paired independently and by your
# OT pairing:

# %%
x0 = fm.EightGaussians().sample(200)
x1 = fm.Moons().sample(200)
independent = count_crossings(x0, x1)
optimal = count_crossings(x0[ot_pairing(x0, x1)], x1)
print(f"crossing pairs: independent {independent}, OT {optimal} (of {200 * 199 // 2} pairs)")
assert optimal < independent / 10

# %% [markdown]
# OT does not remove every crossing (the squared-distance cost allows two
# optimal segments to cross, just never at the same time), but it removes
# nearly all: the marginal velocity has little left to average, and the
# learned paths stay almost straight.
#
# ## Task 3 — Sinkhorn in the log domain (3 points)
#
# For larger batches, the entropic plan
# $P = \operatorname{diag}(e^{f/\varepsilon})\, e^{-C/\varepsilon}\, \operatorname{diag}(e^{g/\varepsilon})$
# with row sums $1/n$ and column sums $1/m$ is found by alternating two
# updates, starting from $f = g = 0$. Each of the `iters` iterations updates
# **$f$ first**, from the current $g$ (this makes the row sums exactly $1/n$),
#
# $$f_i = -\varepsilon \log n - \varepsilon \log\sum_j e^{(g_j - C_{ij})/\varepsilon},$$
#
# **then $g$**, from the $f$ just computed (this makes the column sums exactly $1/m$),
#
# $$g_j = -\varepsilon \log m - \varepsilon \log\sum_i e^{(f_i - C_{ij})/\varepsilon}$$
#
# (`torch.logsumexp`). The order matters before convergence: after a finite
# number of iterations only the marginals fixed last are exact, so with this
# order the returned plan's column sums are $1/m$ to rounding, and its row sums
# only approach $1/n$. Write `sinkhorn(cost, reg, iters)` returning the plan
# $P = \exp((f_i + g_j - C_{ij})/\varepsilon)$ after the last $g$ update.

# %% nbgrader={"grade": false, "grade_id": "sinkhorn", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sinkhorn(cost, reg, iters):
    ### BEGIN SOLUTION
    n, m = cost.shape
    f = torch.zeros(n, dtype=cost.dtype)
    g = torch.zeros(m, dtype=cost.dtype)
    for _ in range(iters):
        f = -reg * math.log(n) - reg * torch.logsumexp((g[None, :] - cost) / reg, dim=1)  # rows first
        g = -reg * math.log(m) - reg * torch.logsumexp((f[:, None] - cost) / reg, dim=0)  # then columns
    return torch.exp((f[:, None] + g[None, :] - cost) / reg)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "sinkhorn_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_sinkhorn(sinkhorn)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_plan = sinkhorn(torch.rand(5, 7, dtype=torch.float64), 1.0, 100)
expect_close("the column sums of a 5 x 7 plan (reg = 1, 100 iterations)", _plan.sum(0),
             torch.full((7,), 1 / 7, dtype=torch.float64),
             "the last update of each iteration is g, which makes every column sum exactly 1/m (m = 7, not n)",
             atol=1e-8, rtol=0)
expect_close("the row sums of a 5 x 7 plan (reg = 1, 100 iterations)", _plan.sum(1),
             torch.full((5,), 1 / 5, dtype=torch.float64),
             "the f update makes every row sum 1/n (n = 5 rows, the first dimension of the cost)",
             atol=1e-6, rtol=0)
### END HIDDEN TESTS
