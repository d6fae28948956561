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
# # Exercises for chapter 9 — Riemannian flow matching
#
# Four tasks: the exponential and logarithm maps of the sphere, the tangent
# projection (and why it divides by $|x|^2$), the velocity of a geodesic
# path, and the wrapped difference on the torus. The checks compare with the
# formulas written out, with finite differences, with a divergence computed
# by autograd and with a brute-force search over the $2\pi$ shifts.
#
# **Prerequisites:** chapter 9. **Run time:** a few seconds.

# %%
import math

import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import torch

from fmlearn.exercises.checks_manifolds import (check_geodesic_velocity, check_sphere_maps, check_tangent_projection,
                                                check_wrapped_difference)

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — exp and log on the sphere (3 points)
#
# Points are rows of `x` with $|x| = 1$, shape `(n, 3)`. Write
#
# $$\exp_x(v) = \cos(|v|)\,x + \sin(|v|)\,\frac{v}{|v|}, \qquad
#   \log_x(y) = \theta\,\frac{w}{|w|},\quad w = y - \langle x, y\rangle x,\ \theta = \arccos\langle x, y\rangle,$$
#
# row by row (norms and dot products with `keepdim=True`). `sphere_exp(x, 0)`
# must return `x`, not NaN: guard the division by $|v|$. (You may assume
# $y \ne -x$ in `sphere_log`.)

# %% nbgrader={"grade": false, "grade_id": "sphere_maps", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sphere_exp(x, v):
    ### BEGIN SOLUTION
    n = v.norm(dim=1, keepdim=True)
    return torch.cos(n) * x + torch.sin(n) * v / n.clamp_min(1e-12)
    ### END SOLUTION


def sphere_log(x, y):
    ### BEGIN SOLUTION
    cos = (x * y).sum(1, keepdim=True)
    w = y - cos * x
    return torch.arccos(cos.clamp(-1, 1)) * w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "sphere_maps_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_sphere_maps(sphere_exp, sphere_log)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
expect_close("exp from (1, 0, 0) along (0, pi/2, 0)", sphere_exp(_x, torch.tensor([[0.0, math.pi / 2, 0.0]],
             dtype=torch.float64)), torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64),
             "a quarter of a great circle from the x axis towards y lands on the y axis", atol=1e-12)
expect_close("log from (1, 0, 0) to (0, 0, 1)", sphere_log(_x, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)),
             torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64),
             "the north pole is a quarter circle (pi/2) from the x axis, in the direction of z", atol=1e-12)
### END HIDDEN TESTS

# %% [markdown]
# ## Task 2 — the tangent projection (2 points)
#
# $P(x)\,v = v - \frac{\langle x, v\rangle}{|x|^2}\,x$ removes the component of
# $v$ along $x$. On the unit sphere $|x|^2 = 1$, so why divide? Because the
# likelihood differentiates the projected field $P(x)\,u(x)$, and derivatives
# look at the field just off the sphere too: with the division, $P(x)\,u$ is
# tangent to *every* sphere $|x| = r$, and its ordinary divergence in
# $\mathbb R^3$ is the divergence on the sphere; without it, the divergence is
# off by $-2\,x\cdot u$. The check tests two things: your projection at points with
# $|x| = 2$, and, on the unit sphere, the divergence of $P(x)\,e_z$, which must be $-2z$.
# Write `tangent_proj(x, v)`.

# %% nbgrader={"grade": false, "grade_id": "tangent_projection", "locked": false, "schema_version": 3, "solution": true, "task": false}
def tangent_proj(x, v):
    ### BEGIN SOLUTION
    return v - (x * v).sum(1, keepdim=True) / (x * x).sum(1, keepdim=True) * x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "tangent_projection_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_tangent_projection(tangent_proj)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

expect_close("P(x) v at x = (0, 0, 3), v = (1, 2, 3)", tangent_proj(torch.tensor([[0.0, 0.0, 3.0]]),
             torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([[1.0, 2.0, 0.0]]),
             "at x = (0, 0, 3) the tangent plane is horizontal: the projection drops the z component "
             "(divide by |x|^2 = 9)")
### END HIDDEN TESTS

# %% [markdown]
# ## Task 3 — the velocity of a geodesic path (3 points)
#
# The conditional path of Riemannian flow matching is
# $x_t = \exp_{x_0}(t\,v) = \cos(t\theta)\,x_0 + \sin(t\theta)\,v/\theta$ with
# $v = \log_{x_0}(x_1)$ and $\theta = |v|$. Its velocity, the regression target,
# is the time derivative of that expression. (The formula
# $\log_{x_t}(x_1)/(1-t)$ gives the same vector for $t < 1$ but is $0/0$ at
# $t = 1$; the check tries $t = 1$.) Write `geodesic_velocity(x0, x1, t)` for a
# float `t`, using your `sphere_log`. The check takes your `sphere_log` too and
# judges the derivative on the curve your log gives, so a slip in task 1 costs
# task 1 only.

# %% nbgrader={"grade": false, "grade_id": "geodesic_velocity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def geodesic_velocity(x0, x1, t):
    ### BEGIN SOLUTION
    v = sphere_log(x0, x1)
    theta = v.norm(dim=1, keepdim=True)
    return torch.cos(t * theta) * v - theta * torch.sin(t * theta) * x0
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "geodesic_velocity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_geodesic_velocity(geodesic_velocity, sphere_log)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_x0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
_x1 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
_v = sphere_log(_x0, _x1)  # task 1's log (pi/2 e_y when right): a wrong one costs task 1, not this task
_theta = _v.norm(dim=1, keepdim=True)
expect_close("the velocity from the x axis to the y axis at t = 1", geodesic_velocity(_x0, _x1, 1.0),
             torch.cos(_theta) * _v - _theta * torch.sin(_theta) * _x0,
             "a quarter circle at constant speed pi/2 arrives at (0, 1, 0) moving in the direction -x: "
             "cos(t theta) v - theta sin(t theta) x0 at t = 1", atol=1e-12)
### END HIDDEN TESTS

# %% [markdown]
# ## Task 4 — the wrapped difference on the torus (2 points)
#
# On the flat torus $T^d = [0, 2\pi)^d$, the logarithm is the **wrapped
# difference**: the displacement from $x$ to $y$ the short way round, each
# entry in $[-\pi, \pi)$. From $0.1$ to $2\pi - 0.1$ it is $-0.2$, across the
# seam, not $2\pi - 0.2$. Write `wrapped_difference(x, y)` for batches of
# shape `(n, d)` (hint: `torch.remainder`).

# %% nbgrader={"grade": false, "grade_id": "wrapped_difference", "locked": false, "schema_version": 3, "solution": true, "task": false}
def wrapped_difference(x, y):
    ### BEGIN SOLUTION
    return torch.remainder(y - x + math.pi, 2 * math.pi) - math.pi
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "wrapped_difference_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_wrapped_difference(wrapped_difference)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

expect_close("the wrapped difference from 0.1 to 2 pi - 0.1", wrapped_difference(
    torch.tensor([[0.1]], dtype=torch.float64), torch.tensor([[2 * math.pi - 0.1]], dtype=torch.float64)),
    torch.tensor([[-0.2]], dtype=torch.float64), "across the seam the short way is 0.2 backwards", atol=1e-12)
### END HIDDEN TESTS

# %% [markdown]
# ## Your pieces as a conditional path
#
# Your exp, log and velocity make the geodesic path of the chapter: it must
# agree with `fmlearn.paths.GeodesicPath` on a batch of source points and
# samples of the chapter's target, and your wrapped difference with the
# torus's logarithm.

# %%
from fmlearn.manifolds import FlatTorus, Sphere, VonMisesFisherMixture
from fmlearn.paths import GeodesicPath

sphere = Sphere()
x0 = sphere.random_uniform(256, dtype=torch.float64)
x1 = VonMisesFisherMixture.tetrahedron(50.0).sample(256, dtype=torch.float64)
reference = GeodesicPath(sphere).sample(x0, x1, 0.6)
mine_xt, mine_dxt = sphere_exp(x0, 0.6 * sphere_log(x0, x1)), geodesic_velocity(x0, x1, 0.6)
print("max |x_t - package|:", (mine_xt - reference.xt).abs().max().item())
print("max |u_t - package|:", (mine_dxt - reference.dxt).abs().max().item())
assert torch.allclose(mine_xt, reference.xt, atol=1e-9) and torch.allclose(mine_dxt, reference.dxt, atol=1e-9)
torus = FlatTorus(2)
a, b = torus.random_uniform(256, dtype=torch.float64), torus.random_uniform(256, dtype=torch.float64)
assert torch.allclose(wrapped_difference(a, b), torus.log(a, b))
