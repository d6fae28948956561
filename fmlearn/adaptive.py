"""The adaptive ODE method for dx/dt = u(x, t): Dormand-Prince 5(4) with error control,
``odeint(..., method="dopri5")`` (:mod:`fmlearn.solvers`).

One step of size h from (t, x) evaluates seven stages k_i = u(x + h sum_j a_ij k_j, t + c_i h) and forms

    x_new = x + h sum_i b_i k_i             the 5th-order solution, which is kept
    e     = h sum_i (b_i - b*_i) k_i        5th minus the embedded 4th order: the local error estimate

The last stage is evaluated at (x_new, t + h), so it is the first stage of the next step
("first same as last", FSAL): a step costs 6 evaluations, accepted or rejected.

Error control (Hairer, Norsett & Wanner, Solving Ordinary Differential Equations I, Sec. II.4):
with the scale s = atol + rtol * max(|x|, |x_new|), entry by entry,

    err = sqrt(mean((e / s)^2))             mean over ALL entries of the batch,

and for a tuple state the mixed norm err = max over its tensors of each one's RMS (as torchdiffeq's), so a small
leaf, such as the log-density (batch,) beside the points (batch, *data) of :func:`fmlearn.log_likelihood`,
counts as much as a large one instead of being drowned in a pooled mean. The step is accepted when err <= 1 and
the next step size is h * clamp(0.9 * err^(-1/5), 0.2, 10).
The whole batch therefore shares one step size: the least smooth sample sets it for all.

Coefficients: J. R. Dormand and P. J. Prince (1980), A family of embedded Runge-Kutta formulae,
J. Comput. Appl. Math. 6(1), 19-26 (the method RK5(4)7M).
"""

from __future__ import annotations

import math
from fractions import Fraction as F

import torch

from ._checks import check_positive_int, check_real
from .spaces import EUCLIDEAN, Space
from .stepping import Field, Solution, State, leaves, stack_states, tree_map

# The Butcher tableau, as exact fractions (the tests check the order conditions on them).
C = (F(0), F(1, 5), F(3, 10), F(4, 5), F(8, 9), F(1), F(1))
A = (
    (),
    (F(1, 5),),
    (F(3, 40), F(9, 40)),
    (F(44, 45), F(-56, 15), F(32, 9)),
    (F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
    (F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
    (F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84)),
)
B5 = A[6] + (F(0),)  # the 5th-order weights are the last stage's row: FSAL
B4 = (F(5179, 57600), F(0), F(7571, 16695), F(393, 640), F(-92097, 339200), F(187, 2100), F(1, 40))

_A = tuple(tuple(float(a) for a in row) for row in A)
_C = tuple(float(c) for c in C)
_E = tuple(float(b - b4) for b, b4 in zip(B5, B4))


def _combine(weights, ks):
    """sum_i w_i k_i over the nonzero weights (leaf by leaf for tuple states)."""
    return tree_map(lambda *leaf: sum(w * k for w, k in zip(weights, leaf) if w != 0), *ks)


def _times(h, k):
    return tree_map(lambda a: h * a, k)


def _step(u, step, x, t, h, t_next, k1):
    """One Dormand-Prince step: (x_new, the last stage u(x_new, t_next), the error estimate e)."""
    ks = [k1]
    for i in range(1, 7):
        xi = step(x, _times(h, _combine(_A[i], ks)))  # for i = 6 this is x_new: the last row of A is B5
        ks.append(u(xi, t_next if _C[i] == 1 else t + _C[i] * h))
    return xi, ks[6], _times(h, _combine(_E, ks))


def _rms(state) -> torch.Tensor:
    """The error norm of a state, at least in float32: the root mean square over a tensor's entries; for a tuple
    state the mixed norm, the largest of its tensors' root mean squares."""
    parts = [v.to(torch.promote_types(v.dtype, torch.float32)).pow(2).mean().sqrt() for v in leaves(state)]
    return parts[0] if len(parts) == 1 else torch.stack(parts).max()


def _ratio(e, scale):
    return tree_map(torch.div, e, scale)


@torch.no_grad()
def _initial_step(u, step, x0, t0, k1, direction, span, rtol, atol):
    """Hairer, Norsett & Wanner's starting step (Sec. II.4), one extra evaluation, two host syncs.

    With the RMS norm scaled by atol + rtol |x0|: d0 = ||x0||, d1 = ||u(x0, t0)||,
    h0 = 0.01 d0 / d1 (1e-6 when either is below 1e-5), d2 = ||u(x0 + h0 u(x0, t0), t0 + h0) - u(x0, t0)|| / h0,
    h1 = (0.01 / max(d1, d2))^(1/5) (max(1e-6, h0 / 1000) when that max is below 1e-15); the step is min(100 h0, h1).
    """
    scale = tree_map(lambda a: atol + rtol * a.abs(), x0)
    d0, d1 = torch.stack([_rms(_ratio(x0, scale)), _rms(_ratio(k1, scale))]).tolist()
    h0 = 0.01 * d0 / d1 if d0 >= 1e-5 and 1e-5 <= d1 < math.inf else 1e-6
    h0 = min(h0, span)  # never evaluate the velocity outside [t0, t1]
    k = u(step(x0, _times(direction * h0, k1)), t0 + direction * h0)
    d2 = float(_rms(_ratio(tree_map(torch.sub, k, k1), scale))) / h0
    dmax = max(d1, d2)
    h1 = (0.01 / dmax) ** 0.2 if 1e-15 < dmax < math.inf else max(1e-6, 1e-3 * h0)
    return min(100 * h0, h1)


def dopri5(field: Field, x0: State, t0: float = 0.0, t1: float = 1.0, *, rtol: float = 1e-5, atol: float = 1e-5,
           first_step: float | None = None, max_steps: int = 10_000, return_trajectory: bool = False,
           space: Space = EUCLIDEAN) -> Solution:
    """Integrate dx/dt = field(x, t) from t0 to t1 with Dormand-Prince 5(4), choosing the steps.

    Called by ``fmlearn.odeint(..., method="dopri5")``, which documents the arguments; here ``field`` is
    already checked (its first value by the space) and ``space.step(x, dx)`` applies every increment.
    x0 is a floating tensor of any shape, or a tuple of them.

    Returns a :class:`~fmlearn.stepping.Solution`: ``times`` holds t0, the accepted step times and t1
    (float64, CPU), ``nfe`` every evaluation (1 + 6 per attempted step, + 1 for the automatic first step),
    and the counts of accepted and rejected steps. One host sync per step reads err for the controller
    (the first step's heuristic adds two). Gradients flow through the accepted steps if enabled; the step
    sizes are not differentiated.

    Raises:
        RuntimeError: after max_steps attempted steps, or if the step size falls to the rounding
            level of t (the velocity is not finite there, or the problem is too stiff for an explicit solver).
    """
    for leaf in leaves(x0):
        if not isinstance(leaf, torch.Tensor):
            raise TypeError(f"x0 must be a tensor (or a tuple of them), got {type(leaf).__name__}")
        if not leaf.is_floating_point():
            raise TypeError(f"x0 must be a floating tensor for method='dopri5', got dtype {leaf.dtype}")
    t0, t1 = check_real("t0", t0), check_real("t1", t1)
    if t0 == t1:
        raise ValueError(f"t1 must differ from t0, got t0 = t1 = {t0}")
    rtol = check_real("rtol", rtol, positive=True)
    atol = check_real("atol", atol, positive=True)
    if first_step is not None:
        first_step = check_real("first_step", first_step, positive=True)
    check_positive_int("max_steps", max_steps)

    step = space.step
    direction, span = math.copysign(1.0, t1 - t0), abs(t1 - t0)
    min_step = 8 * math.ulp(max(abs(t0), abs(t1)))
    k1 = field(x0, t0)
    nfe = 1
    if first_step is None:
        h_abs = _initial_step(field, step, x0, t0, k1, direction, span, rtol, atol)
        nfe += 1
    else:
        h_abs = first_step
    t, x = t0, x0
    times, traj = [t0], ([x0] if return_trajectory else None)
    accepted = rejected = 0
    while t != t1:
        if accepted + rejected == max_steps:
            raise RuntimeError(f"dopri5 took max_steps={max_steps} steps ({accepted} accepted, {rejected} "
                               f"rejected) and reached t = {t}, not t1 = {t1}: loosen rtol/atol or raise max_steps")
        t_next = t1 if h_abs >= abs(t1 - t) else t + direction * h_abs
        h = t_next - t
        if abs(h) < min_step:
            raise RuntimeError(f"dopri5: the step size fell to {abs(h):.3g} at t = {t}, the rounding level "
                               "of t: the velocity is probably not finite there, or the problem is too stiff")
        x_new, k_last, e = _step(field, step, x, t, h, t_next, k1)
        nfe += 6
        with torch.no_grad():
            scale = tree_map(lambda a, b: atol + rtol * torch.maximum(a.abs(), b.abs()), x, x_new)
            err = float(_rms(_ratio(e, scale)))  # the one host sync of the step
        if err <= 1:  # False for NaN: rejected
            accepted += 1
            t, x, k1 = t_next, x_new, k_last
            times.append(t)
            if traj is not None:
                traj.append(x)
        else:
            rejected += 1
        if err == 0:
            factor = 10.0
        elif math.isfinite(err):
            factor = min(10.0, max(0.2, 0.9 * err ** -0.2))
        else:
            factor = 0.2
        h_abs = abs(h) * factor
    return Solution(x=x, times=torch.tensor(times, dtype=torch.float64), nfe=nfe,
                    trajectory=stack_states(traj) if traj is not None else None,
                    accepted_steps=accepted, rejected_steps=rejected)
