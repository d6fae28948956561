"""Checks for the exercises of chapter 9 (Riemannian flow matching): exp and log on the sphere, the tangent
projection, the geodesic velocity, the wrapped difference on the torus. Each compares with a reference computed
another way (the package's maps, the divergence in float64, finite differences, a brute-force search over the
2 pi shifts) and names the usual slip in its hint."""

from __future__ import annotations

import itertools
import math

import torch

from ..manifolds import Sphere
from ._base import call, fail, max_err, ok, tensor_of, worst_row
from .forbidden import guarded_for

_EXERCISE = "ex09_riemannian_flow_matching"

D64 = torch.float64


def _unit(n: int, seed: int) -> torch.Tensor:
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=D64)
    return z / z.norm(dim=1, keepdim=True)


def check_sphere_maps(sphere_exp, sphere_log, tol: float = 1e-8) -> bool:
    """The learner's ``sphere_exp(x, v)`` and ``sphere_log(x, y)`` on S^2 (batches of shape (n, 3)): against
    cos|v| x + sin|v| v/|v| and arccos<x, y> (y - <x, y> x)/|y - <x, y> x| written out, the round trip
    exp(x, log(x, y)) = y, and exp(x, 0) = x without NaN."""
    sphere_exp = guarded_for(sphere_exp, _EXERCISE, "sphere_maps_check")
    sphere_log = guarded_for(sphere_log, _EXERCISE, "sphere_maps_check")
    x, y = _unit(8, 1), _unit(8, 2)
    sphere = Sphere()
    want_log = sphere.log(x, y)
    got_log = tensor_of(call(sphere_log, x, y, what="sphere_log"), (8, 3), "sphere_log")
    if not max_err(got_log, want_log) <= tol:
        chord = y - (x * y).sum(1, keepdim=True) * x
        if max_err(got_log, y - x) < 1e-8:
            hint = "y - x is the chord through the ball, not a tangent vector at x: remove its component along x"
        elif max_err(got_log, chord) < 1e-8:
            hint = ("y - <x, y> x points the right way, but its length is sin(theta), not the distance theta = "
                    "arccos <x, y>: normalise it and multiply by theta")
        elif max_err(got_log.norm(dim=1), sphere.dist(x, y)) > 1e-6:
            hint = "|log(x, y)| must be the great-circle distance arccos <x, y>"
        else:
            hint = "log(x, y) must be tangent at x (orthogonal to x) and point along the great circle towards y"
        fail("sphere_log(x, y) differs from the tangent vector at x that points to y", *worst_row(want_log, got_log),
              hint)
    v = sphere.proj(x, torch.randn(8, 3, generator=torch.Generator().manual_seed(3), dtype=D64))
    got_exp = tensor_of(call(sphere_exp, x, v, what="sphere_exp"), (8, 3), "sphere_exp")
    want_exp = sphere.exp(x, v)
    if not max_err(got_exp, want_exp) <= tol:
        n = v.norm(dim=1, keepdim=True)
        if max_err(got_exp, torch.cos(n) * x + torch.sin(n) * v) < 1e-8:
            hint = "multiply sin(|v|) by the unit vector v / |v|, not by v itself"
        elif max_err(got_exp, x + v) < 1e-8 or max_err(got_exp, (x + v) / (x + v).norm(dim=1, keepdim=True)) < 1e-8:
            hint = "x + v (even normalised) leaves along the tangent plane; exp follows the great circle: " \
                   "cos(|v|) x + sin(|v|) v / |v|"
        else:
            hint = "exp(x, v) = cos(|v|) x + sin(|v|) v / |v|, with |v| the norm of each row (keepdim=True)"
        fail("sphere_exp(x, v) differs from following the great circle from x along v", *worst_row(want_exp, got_exp),
              hint)
    zero = call(sphere_exp, x, torch.zeros_like(x), what="sphere_exp")
    if not (isinstance(zero, torch.Tensor) and torch.isfinite(zero).all() and max_err(zero, x) < tol):
        shown = worst_row(x, zero) if isinstance(zero, torch.Tensor) and zero.shape == x.shape else \
            (x[0].tolist(), type(zero).__name__)
        fail("sphere_exp(x, 0) must be x", *shown,
              "v / |v| is 0 / 0 at v = 0: divide by |v|.clamp_min(1e-12) (sin(0) = 0 then makes the term vanish)")
    back = tensor_of(call(sphere_exp, x, call(sphere_log, x, y, what="sphere_log"), what="sphere_exp"), (8, 3),
                   "sphere_exp")
    if not max_err(back, y) <= 1e-7:
        fail("exp(x, log(x, y)) must give y back", *worst_row(y, back),
              "exp and log must be inverse maps; check both against the formulas")
    return ok("your exp and log maps match the great-circle formulas and invert each other")


def check_tangent_projection(tangent_proj, tol: float = 1e-10) -> bool:
    """The learner's ``tangent_proj(x, v)`` = v - <x, v> x / |x|^2 for any x != 0: tangent (orthogonal to x) at
    points off the unit sphere too, idempotent, and with the intrinsic divergence -2 z for the field P(x) e_z
    (by central differences of the learner's function in float64, so it works through the grader's sandbox;
    without the division by |x|^2 it is -4 z)."""
    tangent_proj = guarded_for(tangent_proj, _EXERCISE, "tangent_projection_check")
    g = torch.Generator().manual_seed(4)
    x = 2.0 * _unit(6, 5)  # off the unit sphere on purpose: the projection must hold on every sphere |x| = r
    v = torch.randn(6, 3, generator=g, dtype=D64)
    got = tensor_of(call(tangent_proj, x, v, what="tangent_proj"), (6, 3), "tangent_proj")
    want = v - (x * v).sum(1, keepdim=True) / (x * x).sum(1, keepdim=True) * x
    if not max_err(got, want) <= tol:
        hint = ("you dropped the division by |x|^2: v - <x, v> x is the projection only where |x| = 1, and the "
                "likelihood differentiates the field off the sphere too (its divergence would be off by -2 x . v)"
                if max_err(got, v - (x * v).sum(1, keepdim=True) * x) < 1e-8 else
                "P(x) v = v - <x, v> x / |x|^2, with the dot product per row (keepdim=True)")
        fail("tangent_proj(x, v) differs from v - <x, v> x / |x|^2 at points with |x| = 2", *worst_row(want, got), hint)
    y = _unit(10, 6)
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=D64).expand(10, 3).contiguous()
    h, div = 1e-5, torch.zeros(10, dtype=D64)
    for i in range(3):  # central differences: the learner's function is only called, never differentiated
        e = torch.zeros(3, dtype=D64)
        e[i] = h
        up = tensor_of(call(tangent_proj, y + e, ez, what="tangent_proj"), (10, 3), "tangent_proj")
        down = tensor_of(call(tangent_proj, y - e, ez, what="tangent_proj"), (10, 3), "tangent_proj")
        div = div + (up[:, i] - down[:, i]) / (2 * h)
    if not max_err(div, -2 * y[:, 2]) <= 1e-6:
        fail("the ambient divergence of P(x) e_z must equal its divergence on the sphere, -2 z",
              *worst_row(-2 * y[:, 2], div), "divide by |x|^2: the field must be tangent to "
              "every sphere |x| = r, not only to the unit one, for its ambient divergence to be the intrinsic one")
    return ok("your projection is tangent on every sphere, and its divergence is the intrinsic one")


def check_geodesic_velocity(geodesic_velocity, sphere_log=None, tol: float = 1e-6) -> bool:
    """The learner's ``geodesic_velocity(x0, x1, t)`` -> d/dt exp_{x0}(t log_{x0}(x1)) at t (a float), shape (n, 3):
    against central finite differences of the package's slerp, at several t including t = 1.

    The task builds on the learner's ``sphere_log`` (task 1). Given it, a wrong log is not blamed on the derivative:
    where it differs from the true log, the velocity is checked against finite differences of the curve
    cos(t theta) x0 + sin(t theta) v / theta with the learner's own v = sphere_log(x0, x1), theta = |v| (a log that
    vanishes, which would make any constant curve pass, is refused), and the verdict says that task 1 is wrong."""
    geodesic_velocity = guarded_for(geodesic_velocity, _EXERCISE, "geodesic_velocity_check")
    x0, x1 = _unit(7, 7), _unit(7, 8)
    sphere, h = Sphere(), 1e-5
    v, theirs = sphere.log(x0, x1), ""
    if sphere_log is not None:
        sphere_log = guarded_for(sphere_log, _EXERCISE, "sphere_maps_check")
        mine = tensor_of(call(sphere_log, x0, x1, what="sphere_log"), x0.shape, "sphere_log")
        if not max_err(mine, v) <= 1e-8:
            if not bool((mine.norm(dim=1) > 1e-3).all()):
                fail("your sphere_log (task 1) returns 0 for points that differ", *worst_row(v, mine),
                      "fix sphere_log first: this task's velocity is built on it")
            v, theirs = mine.double(), " of the curve built on your sphere_log"
    theta = v.norm(dim=1, keepdim=True)

    def curve(s: float) -> torch.Tensor:
        if not theirs:
            return sphere.geodesic(x0, x1, s)[0]
        return torch.cos(s * theta) * x0 + torch.sin(s * theta) * v / theta

    wrong_log = ("; and your sphere_log (task 1) differs from the true log: this velocity was judged on the curve "
                 "it gives, fix task 1 too") if theirs else ""
    for t in (0.0, 0.4, 0.8, 1.0):
        fd = (curve(t + h) - curve(t - h)) / (2 * h)
        got = call(geodesic_velocity, x0, x1, t, what="geodesic_velocity")
        if isinstance(got, torch.Tensor) and got.shape == fd.shape and not torch.isfinite(got).all() and t == 1.0:
            fail("the velocity at t = 1 is not finite", *worst_row(fd, got),
                  "log_{x_t}(x1) / (1 - t) is 0 / 0 at t = 1; write the velocity in closed form, "
                  "cos(t theta) v - theta sin(t theta) x0 with v = log_{x0}(x1), theta = |v|" + wrong_log)
        got = tensor_of(got, fd.shape, "geodesic_velocity")
        if not max_err(got, fd) <= tol:
            hint = ("log_{x0}(x1) is the velocity at t = 0 only; at x_t the velocity is that vector carried along the "
                    "great circle (parallel transport): cos(t theta) v - theta sin(t theta) x0"
                    if max_err(got, v) < 1e-8 else
                    "differentiate x_t = cos(t theta) x0 + sin(t theta) v / theta in t, with v = log_{x0}(x1), "
                    "theta = |v|")
            fail(f"geodesic_velocity differs from the derivative{theirs or ' of the great circle'} at t = {t}",
                  *worst_row(fd, got), hint + wrong_log)
    if theirs:
        return ok("your velocity is the derivative of the curve exp_x0(t v) built on your sphere_log, at every t, "
                   "t = 1 included; but your sphere_log (task 1) is wrong: fix it there")
    return ok("your velocity is the derivative of the geodesic at every t, t = 1 included")


def check_wrapped_difference(wrapped_difference, tol: float = 1e-10) -> bool:
    """The learner's ``wrapped_difference(x, y)`` on T^d: the shortest displacement from x to y, each entry in
    [-pi, pi), against a brute-force search over the shifts y + 2 pi k, k in {-1, 0, 1}^d."""
    wrapped_difference = guarded_for(wrapped_difference, _EXERCISE, "wrapped_difference_check")
    g = torch.Generator().manual_seed(9)
    x, y = (2 * math.pi * torch.rand(12, 2, generator=g, dtype=D64) for _ in "xy")
    x[0], y[0] = torch.tensor([0.1, 3.0]), torch.tensor([6.2, 3.5])  # across the seam in angle 1
    shifts = torch.tensor(list(itertools.product((-1, 0, 1), repeat=2)), dtype=D64) * 2 * math.pi
    cand = y[:, None] + shifts[None] - x[:, None]
    want = cand[torch.arange(12), cand.norm(dim=-1).argmin(1)]
    got = tensor_of(call(wrapped_difference, x, y, what="wrapped_difference"), (12, 2), "wrapped_difference")
    if not max_err(got, want) <= tol:
        if max_err(got, y - x) < 1e-8:
            hint = "y - x goes the long way round when the points sit on either side of the seam 0 = 2 pi"
        elif max_err(got, -want) < 1e-8:
            hint = "the displacement from x to y is y - x, wrapped; you have x - y"
        elif max_err(got, torch.remainder(y - x, 2 * math.pi)) < 1e-8:
            hint = "x mod 2 pi lies in [0, 2 pi): shift by pi before and after, ((y - x + pi) mod 2 pi) - pi"
        else:
            hint = "wrap each entry of y - x into [-pi, pi): ((y - x + pi) mod 2 pi) - pi (torch.remainder)"
        fail("wrapped_difference(x, y) is not the shortest displacement on the torus", *worst_row(want, got), hint)
    return ok("your wrapped difference takes the short way round, across the seam too")
