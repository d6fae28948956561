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
# # Exercises for chapter 4 — likelihood
#
# Three tasks: the exact divergence of a velocity field by autograd,
# Hutchinson's estimator with given probes, and the paired KL estimator with
# its standard error. The checks compare with full Jacobians computed one
# sample at a time and with a loop written out in Python.
#
# **Prerequisites:** chapter 4. **Run time:** under a minute.

# %%
import math

import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import torch

from fmlearn.exercises import check_divergence, check_hutchinson, check_paired_kl

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — the exact divergence (3 points)
#
# $\nabla\cdot u(x) = \sum_i \partial u_i / \partial x_i$, the trace of the
# Jacobian. For `x` of shape `(n, d)`, one backward pass per dimension $i$
# gives $\partial u_i / \partial x$ for every sample at once (the samples do
# not interact, so the gradient of `u[:, i].sum()` holds each sample's own
# row); keep its column $i$. Write `divergence(u, x, t)` returning shape `(n,)`.

# %% nbgrader={"grade": false, "grade_id": "divergence", "locked": false, "schema_version": 3, "solution": true, "task": false}
def divergence(u, x, t):
    ### BEGIN SOLUTION
    x = x.detach().requires_grad_(True)
    v = u(x, t)
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        total = total + torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i]
    return total.detach()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "divergence_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_divergence(divergence)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_a = torch.tensor([[1.0, 2.0], [3.0, -5.0]], dtype=torch.float64)
expect_close("the divergence of the linear field u(x) = A x", divergence(lambda x, t: x @ _a.T,
             torch.randn(4, 2, dtype=torch.float64), 0.0), torch.full((4,), -4.0, dtype=torch.float64),
             "the divergence of A x is the trace of A, 1 - 5 = -4, at every point")
### END HIDDEN TESTS

# %% [markdown]
# ## Task 2 — Hutchinson's estimator (3 points)
#
# For probes $\varepsilon$ with $\mathbb E[\varepsilon\varepsilon^\top] = I$,
# $\mathbb E[\varepsilon^\top J \varepsilon] = \operatorname{tr} J$. With `eps`
# of shape `(k, n, d)` (k probes per sample), compute for each probe the
# vector–Jacobian product $\varepsilon^\top J$ (one backward pass:
# `torch.autograd.grad(v, x, grad_outputs=eps[j])`), take its dot product with
# $\varepsilon$, and average over the probes. Write `hutchinson(u, x, t, eps)`.

# %% nbgrader={"grade": false, "grade_id": "hutchinson", "locked": false, "schema_version": 3, "solution": true, "task": false}
def hutchinson(u, x, t, eps):
    ### BEGIN SOLUTION
    x = x.detach().requires_grad_(True)
    v = u(x, t)
    est = [(torch.autograd.grad(v, x, grad_outputs=e, retain_graph=True)[0] * e).sum(1) for e in eps]
    return torch.stack(est).mean(0).detach()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "hutchinson_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_hutchinson(hutchinson)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_x = torch.randn(3, 2, dtype=torch.float64)
_e = torch.ones(1, 3, 2, dtype=torch.float64)
expect_close("Hutchinson with the one probe eps = (1, 1) on u(x) = A x", hutchinson(
    lambda x, t: x @ torch.tensor([[1.0, 2.0], [3.0, -5.0]], dtype=torch.float64).T, _x, 0.0, _e),
    torch.full((3,), 1.0, dtype=torch.float64), "eps^T A eps = 1 + 2 + 3 - 5 = 1 for eps = (1, 1)")
### END HIDDEN TESTS

# %% [markdown]
# ## Task 3 — the paired KL estimator (2 points)
#
# With samples $x_i \sim p$ and both log-densities known at them,
# $\mathrm{KL}(p\,\|\,q) \approx \frac1n\sum_i (\log p(x_i) - \log q(x_i))$,
# with standard error $\mathrm{sd}(\log p - \log q)/\sqrt n$. Write
# `paired_kl(log_p, log_q)` returning the pair `(kl, se)`.

# %% nbgrader={"grade": false, "grade_id": "paired_kl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def paired_kl(log_p, log_q):
    ### BEGIN SOLUTION
    d = log_p - log_q
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "paired_kl_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_paired_kl(paired_kl)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_kl, _se = paired_kl(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 0.0]))
expect_close("the paired KL of differences 1, 2, 3", _kl, 2.0, "the KL estimate is the mean difference")
expect_close("its standard error", _se, 1 / math.sqrt(3),
             "the standard error is the (n - 1)-normalized std of the differences, 1, over sqrt(n)")
### END HIDDEN TESTS

# %% [markdown]
# ## Your estimators on an exact flow
#
# The oracle velocity of a Gaussian target is an exact flow, so its
# log-likelihood must reproduce the true density: your KL estimate should
# be zero within a few of your standard errors, with your divergence.

# %%
target = fm.GaussianMixture(torch.tensor([[2.0, -1.0]]), 0.6)
oracle = fm.MixtureOracle(target, fm.AffineGaussianPath("condot"))
x = target.sample(500).double()
log_q = fm.log_likelihood(oracle, x, steps=32, method="rk4")
kl, se = paired_kl(target.log_prob(x).double(), log_q.double())
print(f"KL = {kl:.5f} ± {se:.5f} nats (exact flow: should be 0)")
assert abs(kl) < 1e-3
div_mine = divergence(oracle, x[:50], 0.5)
_, div_ref = fm.divergence_exact(oracle, x[:50], 0.5)
assert torch.allclose(div_mine, div_ref.double(), atol=1e-6)
