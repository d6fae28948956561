"""Checks for the exercises of chapter 11 (few steps): the average velocity read off a trajectory, the MeanFlow
target through a Jacobian-vector product, and a k-step sampler from a flow map.

Conventions (chapter 11): t = 0 is the source N(0, I), t = 1 the data, x_t = t x1 + (1 - t) x0. The flow map
X_{s->t} carries the point at time s to time t, and the average velocity is anchored at the start,

    X_{s->t}(x) = x + (t - s) u(x, s, t),   0 <= s < t <= 1,

so along a trajectory u(x_s, s, t) = v(x_s, s) + (t - s) d/ds u(x_s, s, t).

Each check compares with a reference computed another way: the closed-form flow of a Gaussian target
(:class:`GaussianFlow`, whose map is linear), central finite differences of a small random float64 network along
the trajectory's direction, and the check's own stepping loop with the times it was called at recorded. A wrong
answer that matches a known slip gets that slip's hint.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._base import brief, call, fail, max_err, ok, show, tensor_of, worst_row
from ._forbid import ForbiddenCall
from .forbidden import guarded_for

_EXERCISE = "ex11_few_steps"

D64 = torch.float64


def _time(s, x: torch.Tensor) -> torch.Tensor:
    """A time as a column that broadcasts against x (n, d): a float or 0-d tensor stays a scalar tensor; (n,) and
    (n, 1) become (n, 1)."""
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    return s if s.ndim == 0 else s.reshape(-1, 1)


class GaussianFlow:
    """The CondOT flow from N(0, I) to N(mean, scale^2 I), in closed form.

    Independent pairs on x_t = t x1 + (1 - t) x0 give the marginal N(t m, sigma_t^2 I) with
    sigma_t = sqrt((1 - t)^2 + t^2 scale^2); the flow moves each point linearly, x_t = t m + sigma_t x0, so

        X_{s->t}(x) = t m + (sigma_t / sigma_s) (x - s m),
        v(x, s) = m + (sigma_s' / sigma_s) (x - s m),   sigma_s' = (s scale^2 - (1 - s)) / sigma_s,
        u(x, s, t) = (X_{s->t}(x) - x) / (t - s).

    Times are floats or (n,) tensors (one per row of x, shape (n, d)); everything is written with torch operations,
    so ``torch.func.jvp`` differentiates through it.

    Args:
        mean: the target's mean m, a (d,) tensor.
        scale: the target's standard deviation, a positive float.
    """

    def __init__(self, mean: torch.Tensor, scale: float):
        self.mean = torch.as_tensor(mean, dtype=D64)
        if self.mean.ndim != 1:
            raise ValueError(f"mean must be a (d,) tensor, got shape {tuple(self.mean.shape)}")
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.scale = float(scale)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((1 - t) ** 2 + t ** 2 * self.scale ** 2)

    def velocity(self, x: torch.Tensor, s) -> torch.Tensor:
        """v(x, s), the marginal velocity at time s."""
        s, m = _time(s, x), self.mean.to(x)
        sigma = self.sigma(s)
        return m + (s * self.scale ** 2 - (1 - s)) / sigma ** 2 * (x - s * m)

    def map(self, x: torch.Tensor, s, t) -> torch.Tensor:
        """X_{s->t}(x): where the flow carries x, the point at time s, by time t."""
        s, t, m = _time(s, x), _time(t, x), self.mean.to(x)
        return t * m + self.sigma(t) / self.sigma(s) * (x - s * m)

    def average_velocity(self, x: torch.Tensor, s, t) -> torch.Tensor:
        """u(x, s, t) = (X_{s->t}(x) - x) / (t - s), for s < t; its limit v(x, s) where t = s."""
        gap = _time(t, x) - _time(s, x)
        same = gap == 0
        chord = (self.map(x, s, t) - x) / torch.where(same, torch.ones_like(gap), gap)
        return torch.where(same, self.velocity(x, s), chord) if bool(same.any()) else chord

    def __call__(self, x: torch.Tensor, s, t) -> torch.Tensor:
        """The exact flow-map model: u(x, s, t)."""
        return self.average_velocity(x, s, t)


def _flow() -> GaussianFlow:
    return GaussianFlow(torch.tensor([3.0, -1.5], dtype=D64), 0.5)


class _RandomMap(nn.Module):
    """A small random float64 network u(x, s, t) on [x, s, t] (weights that require grad, as a model in training)."""

    def __init__(self, seed: int, dim: int = 2, hidden: int = 32):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(dim + 2, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, dim)).to(D64)
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=D64) / math.sqrt(p.shape[-1]))

    def forward(self, x, s, t):
        n = x.shape[0]
        s, t = (_time(a, x).expand(n, 1) for a in (s, t))
        return self.net(torch.cat([x, 3 * s, 3 * t], dim=1))


def _close(got: torch.Tensor, want: torch.Tensor, tol: float) -> bool:
    return got.shape == want.shape and max_err(got, want) <= tol * (1 + float(want.abs().max()))


# --- task 1: the average velocity from a trajectory -----------------------------------------------------------------

_AVERAGE_HINT = ("the average velocity between the states at times t_i < t_j of one trajectory is the slope of the "
                 "chord, (x_{t_j} - x_{t_i}) / (t_j - t_i), anchored at the start: x = x_{t_i}, s = t_i, t = t_j")
_PAIRS_HINT = ("check every pair before computing, `if (t <= s).any(): raise ValueError(...)`, with a message "
               "that names the pair and its times (u(x, s, t) needs s < t; at s = t it divides by zero)")


def _trajectory():
    """Six points of the Gaussian flow followed on a non-uniform grid from t = 0 to 1: (times, states, x0)."""
    flow = _flow()
    times = torch.tensor([0.0, 0.05, 0.15, 0.3, 0.5, 0.75, 0.9, 1.0], dtype=D64)
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(11), dtype=D64)
    states = torch.stack([flow.map(x0, 0.0, float(t)) for t in times])
    return flow, times, states


def _four(out, k: int, n: int, d: int):
    if not (isinstance(out, tuple) and len(out) == 4):
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        fail("average_velocities must return four tensors (x, s, t, u)", "a tuple (x, s, t, u)", got,
              "return x, s, t, u: the anchor points x = x_{t_i}, shape (k, n, d); the times s = t_i and t = t_j, "
              "shape (k,); and the average velocities u, shape (k, n, d)")
    shapes = ((k, n, d), (k,), (k,), (k, n, d))
    return [tensor_of(o, shape, f"average_velocities' {name}") for o, shape, name in zip(out, shapes, "xstu")]


def _expect_refusal(average_velocities, times, states, pairs, why: str):
    try:
        average_velocities(times, states, pairs)
    except ValueError as err:
        if not str(err).strip():
            fail(f"the ValueError for {why} carries no message", "a message that names the pair and its times",
                  "ValueError()", _PAIRS_HINT)
        return
    except (NotImplementedError, ForbiddenCall):
        raise
    except Exception as err:  # noqa: BLE001 - any other error is the wrong kind of refusal
        fail(f"average_velocities must refuse {why} with a ValueError", "ValueError",
              f"{type(err).__name__}: {err}", _PAIRS_HINT)
    fail(f"average_velocities accepted {why}", "a ValueError (u(x, s, t) needs s < t)", "a result",
          "a pair with t_j <= t_i gives a meaningless target, silently: " + _PAIRS_HINT)


def check_average_velocities(average_velocities, tol: float = 1e-9) -> bool:
    """The learner's ``average_velocities(times, states, pairs) -> (x, s, t, u)``: from a trajectory (times (N+1,),
    states (N+1, n, d)) and index pairs (k, 2), the anchors x = states[i], s = times[i], t = times[j] and
    u = (states[j] - states[i]) / (times[j] - times[i]); against the closed-form average velocity of a Gaussian
    flow on a non-uniform grid; and a ValueError for a pair whose t_j <= t_i (alone, or among valid pairs)."""
    average_velocities = guarded_for(average_velocities, _EXERCISE, "average_velocities_check")
    flow, times, states = _trajectory()
    pairs = torch.tensor([[0, 7], [0, 1], [2, 5], [3, 4], [1, 6], [4, 7], [5, 6]])
    i, j = pairs[:, 0], pairs[:, 1]
    try:
        out = call(average_velocities, times, states, pairs, what="average_velocities")
    except ValueError as err:
        fail("average_velocities refused valid pairs (each with t_i < t_j)", "(x, s, t, u)",
              f"ValueError: {err}", "refuse a pair only when t_j <= t_i, comparing the times of that pair")
    x, s, t, u = _four(out, len(pairs), *states.shape[1:])
    s_want, t_want = times[i], times[j]
    if not (_close(s, s_want, tol) and _close(t, t_want, tol)):
        swapped = _close(s, t_want, tol) and _close(t, s_want, tol)
        fail("the times (s, t) of the pairs are wrong", f"s = {show(s_want)}, t = {show(t_want)}",
              f"s = {show(s)}, t = {show(t)}",
              "s and t are swapped: s is the start time t_i and t the end time t_j (s < t)" if swapped else
              "s = times[i] and t = times[j] for each pair (i, j)")
    x_want = states[i]
    if not _close(x, x_want, tol):
        hint = ("x is the state at the end of each pair; the average velocity is anchored at the start, "
                "X_{s->t}(x) = x + (t - s) u(x, s, t) with x the point at time s: x = states[i]"
                if _close(x, states[j], tol) else "x is the state at time s, states[i], for each pair (i, j)")
        fail("the anchor points x are wrong", *worst_row(x_want, x), hint)
    want = torch.stack([flow.average_velocity(states[a], times[a], times[b]) for a, b in pairs.tolist()])
    if not _close(u, want, tol):
        chord = states[j] - states[i]
        uniform = chord / ((j - i).to(D64) / (len(times) - 1))[:, None, None]
        slips = [(-want, "the sign is flipped: divide x_{t_j} - x_{t_i} by t_j - t_i (both differences end minus "
                         "start), not by t_i - t_j"),
                 (chord, "divide by the time between the two states, t_j - t_i: u is a velocity, not a displacement"),
                 (uniform, "divide by the time between the states, times[j] - times[i], not by (j - i) / N: the grid "
                           "is not uniform (an adaptive solver's never is)")]
        hint = next((h for value, h in slips if _close(u, value, tol)), _AVERAGE_HINT)
        fail("the average velocities differ from the exact (X_{s->t}(x) - x) / (t - s) of the flow", *worst_row(want, u),
              hint)
    _expect_refusal(average_velocities, times, states, torch.tensor([[5, 2]]), "the pair (5, 2) (t_j < t_i)")
    _expect_refusal(average_velocities, times, states, torch.tensor([[3, 3]]), "the pair (3, 3) (t_j = t_i)")
    _expect_refusal(average_velocities, times, states, torch.tensor([[0, 4], [1, 6], [6, 2]]),
                    "the pairs (0, 4), (1, 6), (6, 2): the last has t_j < t_i")
    return ok("your average velocities match the exact flow map's on a non-uniform grid, anchored at the start, "
              "and pairs with t_j <= t_i are refused")


# --- task 2: the MeanFlow target --------------------------------------------------------------------------------------

_TARGET_HINT = ("d/ds u(x_s, s, t) along the trajectory is one jvp: torch.func.jvp(model, (x, s, t), (v, "
                "torch.ones_like(s), torch.zeros_like(t))) returns (u, du); the target is "
                "(v + (t - s)[:, None] * du).detach()")


def _directional(model, x, s, t, a, b, c, h: float = 1e-5) -> torch.Tensor:
    """The derivative of model along the direction (a, b, c) of (x, s, t), by central differences (float64)."""
    with torch.no_grad():
        return (model(x + h * a, s + h * b, t + h * c) - model(x - h * a, s - h * b, t - h * c)) / (2 * h)


def _target_points(seed: int, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(n, 2, generator=g, dtype=D64)
    s = 0.8 * torch.rand(n, generator=g, dtype=D64)
    t = s + (1 - s) * (0.2 + 0.8 * torch.rand(n, generator=g, dtype=D64))
    return x, s, t


def _call_target(meanflow_target, model, x, s, t, v):
    try:
        return call(meanflow_target, model, x, s, t, v, what="meanflow_target")
    except RuntimeError as err:
        if "dtype" not in str(err):
            raise
        fail("meanflow_target failed with a dtype error", "tangents of the same dtype as the inputs (float64 here)",
              f"RuntimeError: {err}", "build the tangents from the inputs: torch.ones_like(s), torch.zeros_like(t) "
              "(torch.ones(n) is float32 whatever the inputs are)")


def check_meanflow_target(meanflow_target, tol: float = 1e-7) -> bool:
    """The learner's ``meanflow_target(model, x, s, t, v)`` -> v + (t - s) d/ds u(x_s, s, t), detached, with the
    derivative along the trajectory (tangents v for x, 1 for s, 0 for t): against central finite differences of a
    random float64 network in that direction; then, for the Gaussian flow's exact average velocity and its true
    velocity v(x, s), the target must equal u itself (the identity's fixed point); and the target must carry no
    gradient to the model's weights."""
    meanflow_target = guarded_for(meanflow_target, _EXERCISE, "meanflow_target_check")
    model = _RandomMap(21)
    x, s, t = _target_points(22)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(23), dtype=D64)
    out = _call_target(meanflow_target, model, x, s, t, v)
    got = tensor_of(out, x.shape, "meanflow_target")
    gap = (t - s)[:, None]
    one, zero = torch.ones_like(s), torch.zeros_like(t)
    along = _directional(model, x, s, t, v, one, zero)
    want = v + gap * along
    if not _close(got, want, tol):
        with torch.no_grad():
            u = model(x, s, t)
        slips = [
            (v - gap * along, "the sign of the (t - s) term is flipped: differentiating X_{s->t}(x_s) = x_s + "
                              "(t - s) u(x_s, s, t) = x_t in s gives 0 = v - u + (t - s) du/ds, so u = v + (t - s) "
                              "du/ds (the (s - t) form flips it too)"),
            (v - gap * _directional(model, x, s, t, v, zero, one),
             "this is the MeanFlow paper's form copied without turning its time round: there data sit at time 0 "
             "and noise at 1, so its u, v and d/dt are -u, -v and -d/ds here; in this course's time differentiate "
             "in s, tangents (v, 1, 0), and add (t - s) du/ds"),
            (v + gap * _directional(model, x, s, t, v, one, one),
             "the end time t is held fixed along the trajectory: its tangent is 0 (torch.zeros_like(t)), not 1"),
            (v + gap * _directional(model, x, s, t, v, zero, zero),
             "the start time s moves along the trajectory too: its tangent is 1 (torch.ones_like(s)), not 0"),
            (v + gap * _directional(model, x, s, t, torch.zeros_like(v), one, zero),
             "x moves with the trajectory at velocity v: its tangent is v, not 0"),
            (v + along, "the derivative term is multiplied by (t - s): u = v + (t - s) du/ds"),
            (u, "you returned the model's own output u(x, s, t); the target is v + (t - s) du/ds, built from the model"),
        ]
        hint = next((h for value, h in slips if _close(got, value, 1e-6)), _TARGET_HINT)
        fail("the MeanFlow target differs from v + (t - s) d/ds u (d/ds by finite differences along (v, 1, 0))",
              *worst_row(want, got), hint)
    if got.requires_grad:
        fail("the target is still attached to the model's graph", "a tensor with requires_grad = False",
              "requires_grad = True",
              "stop the gradient: return target.detach(). MeanFlow regresses u_theta onto a fixed target; "
              "without it the loss also back-propagates through the jvp, a second-order term that MeanFlow drops")
    flow = _flow()
    x, s, t = _target_points(24)
    exact = flow.average_velocity(x, s, t)
    got = tensor_of(_call_target(meanflow_target, flow, x, s, t, flow.velocity(x, s)), x.shape,
                    "meanflow_target for the exact flow map")
    if not _close(got, exact, 1e-8):
        fail("for the exact average velocity of a Gaussian flow and its true velocity, the target must be u itself",
              *worst_row(exact, got), "u(x_s, s, t) = v(x_s, s) + (t - s) d/ds u(x_s, s, t) holds exactly for the "
              "exact map: if the random network passed, look for a step that uses the model's weights (only the "
              "model's call may differ)")
    return ok("your MeanFlow target matches finite differences along (v, 1, 0), is a fixed point for the exact "
              "map, and carries no gradient")


# --- task 3: a k-step sampler from a flow map --------------------------------------------------------------------

def _scalar_time(a) -> float:
    """A time passed to the model as one number (a float, a 0-d tensor, or a tensor of equal entries); nan if the
    entries differ."""
    a = (a.detach() if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=D64)).reshape(-1).double()
    return float(a[0]) if a.numel() and bool((a == a[0]).all()) else math.nan


class _Recorded:
    """A flow-map model that records the (s, t) of each call (it stays on the grader's side of the sandbox, so the
    calls are recorded where the check reads them)."""

    _grader_side = True

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, x, s, t):
        self.calls.append((_scalar_time(s), _scalar_time(t)))
        return self.model(x, s, t)


def _reference_sample(model, x0, steps: int) -> torch.Tensor:
    x = x0
    for i in range(steps):
        s, t = i / steps, (i + 1) / steps
        x = x + (t - s) * model(x, s, t)
    return x


def _calls_hint(calls, steps: int) -> str | None:
    """The slip the recorded (s, t) of a sampler's calls show, or None if they are the uniform grid's."""
    want = [(i / steps, (i + 1) / steps) for i in range(steps)]
    if len(calls) == len(want) and all(abs(a - c) < 1e-6 and abs(b - d) < 1e-6 for (a, b), (c, d) in zip(calls, want)):
        return None
    shown = ", ".join(f"({a:.3g}, {b:.3g})" for a, b in calls[:4]) + (", ..." if len(calls) > 4 else "")
    if any(math.isnan(a) or math.isnan(b) for a, b in calls):
        return (f"the model was called with times that differ between rows: pass s and t as floats (or tensors full "
                f"of one value) for the whole batch; calls (s, t): {shown}")
    if len(calls) == steps and all(abs(b - 1) < 1e-6 for _, b in calls) and steps > 1:
        return ("every call asks for u(x, t_i, 1), the average velocity all the way to t = 1, but the step only "
                f"goes to t_(i+1): ask for u(x, t_i, t_(i+1)); calls (s, t): {shown}")
    if len(calls) != steps:
        return (f"with steps = {steps} the model is called once per step, {steps} in all, from t_i = i / {steps} "
                f"to t_(i+1) = (i + 1) / {steps}; it was called {len(calls)} times, with (s, t): {shown} (an "
                "off-by-one in the grid or the loop?)")
    if all(abs(a - b) < 1e-6 for a, b in calls):
        return ("the model was called with s = t, its instantaneous velocity: that is Euler's step; a flow map steps "
                f"with u(x, t_i, t_(i+1)); calls (s, t): {shown}")
    return (f"step i goes from t_i = i / {steps} to t_(i+1) = (i + 1) / {steps} and calls u(x, t_i, t_(i+1)); the "
            f"calls (s, t) were: {shown}")


def check_few_step_sampler(sample, tol: float = 1e-9) -> bool:
    """The learner's ``sample(model, x0, steps)``: x <- x + (t_(i+1) - t_i) model(x, t_i, t_(i+1)) on the uniform
    grid t_i = i / steps. With the exact average velocity of a Gaussian flow, every number of steps must land on
    the exact map X_{0->1}(x0) (the semigroup property), calling the model once per step at (t_i, t_(i+1)); with
    a random network map it must equal the check's own loop for 1, 2 and 4 steps."""
    sample = guarded_for(sample, _EXERCISE, "sample_flow_map_check")
    flow = _flow()
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(31), dtype=D64)
    exact = flow.map(x0, 0.0, 1.0)
    for steps in (1, 2, 3, 5):
        model = _Recorded(flow)
        got = tensor_of(call(sample, model, x0, steps, what="sample"), x0.shape, f"sample with {steps} steps")
        hint = _calls_hint(model.calls, steps)
        if hint is not None or not _close(got, exact, tol):
            fail(f"{steps} steps with the exact flow map must land on the exact map X_0->1(x0)", *worst_row(exact, got),
                  hint or "each step moves by (t_(i+1) - t_i) u(x, t_i, t_(i+1)) = 1 / steps times the model's output, "
                  "starting from x0 (start from x0, step x = x + h * model(x, s, t), return the last x)")
    net = _RandomMap(32)
    for steps in (1, 2, 4):
        with torch.no_grad():
            want = _reference_sample(net, x0, steps)
            got = tensor_of(call(sample, net, x0, steps, what="sample"), x0.shape, f"sample with {steps} steps")
        if not _close(got, want, tol):
            fail(f"{steps} steps with a random network map differ from x <- x + (t_(i+1) - t_i) u(x, t_i, t_(i+1))",
                  *worst_row(want, got), "the exact map forgives some slips (any chain of its steps lands on the "
                  "same point); a network does not: use the state of the previous step, and the step size 1 / steps")
    return ok("your sampler lands on the exact map for 1, 2, 3 and 5 steps of an exact flow map, and follows a "
              "network map's steps on the uniform grid")


# --- task 4: the semigroup defect --------------------------------------------------------------------------------

class _AffineMap(nn.Module):
    """u(x, a, b) = M(a, b) x + c(a, b) with M = [[a + b, 1], [-b, a - 1]], c = (a b, a - b): a flow-map model
    whose steps are affine, so the check can compose them as matrices."""

    @staticmethod
    def parts(a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
        m = torch.tensor([[a + b, 1.0], [-b, a - 1.0]], dtype=D64)
        return m, torch.tensor([a * b, a - b], dtype=D64)

    def forward(self, x, a, b):
        m, c = self.parts(_scalar_time(a), _scalar_time(b))
        return x @ m.T.to(x) + c.to(x)


def _affine_defect(x: torch.Tensor, s: float, r: float, t: float) -> torch.Tensor:
    """|X_{r->t}(X_{s->r}(x)) - X_{s->t}(x)| for :class:`_AffineMap`, from the matrices of its steps: a step
    a -> b is y -> P y + q with P = I + (b - a) M(a, b), q = (b - a) c(a, b); composed, P2 P1 x + P2 q1 + q2."""
    def step(a, b):
        m, c = _AffineMap.parts(a, b)
        return torch.eye(2, dtype=D64) + (b - a) * m, (b - a) * c

    (p1, q1), (p2, q2), (p, q) = step(s, r), step(r, t), step(s, t)
    return (x @ (p2 @ p1 - p).T + (p2 @ q1 + q2 - q)).norm(dim=1)


def check_semigroup_defect(semigroup_defect, tol: float = 1e-9) -> bool:
    """The learner's ``semigroup_defect(model, x, s, r, t)`` -> |X_{r->t}(X_{s->r}(x)) - X_{s->t}(x)| per row,
    shape (n,), with X_{a->b}(y) = y + (b - a) model(y, a, b): zero for the Gaussian flow's exact map, and equal
    to the defect of an affine model computed from the matrices of its steps, at three (s, r, t)."""
    semigroup_defect = guarded_for(semigroup_defect, _EXERCISE, "semigroup_defect_check")
    x = torch.randn(24, 2, generator=torch.Generator().manual_seed(41), dtype=D64)
    model = _AffineMap()
    for s, r, t in ((0.0, 0.5, 1.0), (0.1, 0.7, 0.8), (0.25, 0.5, 0.6)):
        want = _affine_defect(x, s, r, t)
        got = tensor_of(call(semigroup_defect, model, x, s, r, t, what="semigroup_defect"), (24,), "semigroup_defect",
                        "return one number per row: the norm over the last axis, shape (n,)")
        if not _close(got, want, tol):
            def X(y, a, b):  # noqa: N802 - the map's name in the text
                return y + (b - a) * model(y, a, b)

            with torch.no_grad():
                one = X(x, s, t)
                slips = [
                    ((X(X(x, r, t), s, r) - one).norm(dim=1), "the steps are composed in the wrong order: first "
                     "s -> r, then r -> t from the point it reached, X_{r->t}(X_{s->r}(x))"),
                    ((x + (r - s) * model(x, s, r) + (t - r) * model(x, r, t) - one).norm(dim=1),
                     "the second step starts from x; it starts from the point the first step reached, "
                     "y = x + (r - s) u(x, s, r), and moves by (t - r) u(y, r, t)"),
                    (want ** 2, "that is the squared norm: return the norm |.| (torch.linalg.vector_norm over the "
                     "last axis), not its square"),
                ]
            hint = next((h for value, h in slips if _close(got, value, tol)),
                        "X_{a->b}(y) = y + (b - a) u(y, a, b); the defect is the norm, per row, of "
                        "X_{r->t}(X_{s->r}(x)) - X_{s->t}(x)")
            fail(f"the semigroup defect of an affine model at (s, r, t) = ({s}, {r}, {t}) differs from the one its "
                  "matrices give", show(want), show(got), hint)
    flow = _flow()
    for s, r, t in ((0.0, 0.5, 1.0), (0.2, 0.3, 0.9)):
        got = tensor_of(call(semigroup_defect, flow, x, s, r, t, what="semigroup_defect"), (24,), "semigroup_defect",
                        "return one number per row: the norm over the last axis, shape (n,)")
        if not float(got.abs().max()) <= tol * (1 + float(x.abs().max())):
            fail(f"the exact map of a Gaussian flow must have no semigroup defect at (s, r, t) = ({s}, {r}, {t})",
                  "zeros", brief(got), "two steps of an exact map, s -> r then r -> t (from the point the first "
                  "step reached), land where one step s -> t does; check the order of the steps and their times")
    return ok("your semigroup defect is zero for an exact map and matches an affine model's, composed as matrices")


__all__ = ["GaussianFlow", "check_average_velocities", "check_few_step_sampler", "check_meanflow_target",
           "check_semigroup_defect"]
