"""Log-likelihoods of a flow by the instantaneous change of variables.

If dx/dt = u_t(x) with x_0 ~ p_0, then d/dt log p_t(x_t) = -div u_t(x_t), so

    log p_1(x_1) = log p_0(x_0) - int_0^1 div u_t(x_t) dt,

x_0 found by integrating x backwards from t = 1 to 0. div u = tr(du/dx) is exact
(``divergence_exact``, D derivative passes) or Hutchinson's unbiased estimate
E[eps^T (du/dx) eps] with E[eps eps^T] = I (``divergence_hutchinson``, one per probe).
Shapes: x is (batch, *data), D = prod(data) (vectors or images); velocities have
x's shape; divergences and log-likelihoods are (batch,). Both take derivatives of
sum_b v[b] through the batch, so samples must not interact (true in eval mode).
Dtypes: results have x's dtype; a module with floating parameters gets x cast to
their dtype and its velocity cast back (a float32 network, float64 divergences).

On a manifold (``space=``, e.g. :class:`fmlearn.manifolds.Sphere`) the same formula holds with the
Riemannian divergence and the volume of the manifold. For a manifold embedded in R^D with tangent
projection P(x), the divergence of a tangent field u is the trace over tangent directions only,

    div_M u = tr(P J P) = sum_i (P e_i)^T J (P e_i),    J = du/dx (ambient),

so the basis vectors (or Hutchinson's probes) are projected, ``space.proj(x, e)``, before the
vector-Jacobian product (E[(P eps)(P eps)^T] = P keeps Hutchinson unbiased). The likelihood integrates
the projected field P u with the space's step, so x stays on the manifold, and the source density is
the space's uniform one. The ambient divergence tr(J) of P(x) v equals div_M only when P = I - x x^T / |x|^2
(the sphere's proj); with I - x x^T it is off by -2 x . v. For the flat torus in angle coordinates P = I:
the Euclidean divergence. In R^D (:class:`~fmlearn.spaces.Euclidean`, proj(x, v) = v) the same code is the
computation of Part I, bit for bit. ``space=None`` means the model's own space (a
:class:`~fmlearn.manifolds.ProjectedVelocity` declares it), else R^D; a ``space=`` that contradicts the model's
is refused, and so is a ``source=`` density of another space (a Gaussian of R^3 is no density on S^2).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch.func import vjp, vmap

from ._checks import (as_tensor, at_dtype, check_finite, check_positive_int, check_time, model_context,
                      model_dtype_device)
from ._random import draw_device
from .solvers import odeint
from .spaces import EUCLIDEAN, Manifold, check_manifold, declared_space, resolve_space
from .stepping import time_grid

IMPLS = ("auto", "func", "loop")
KINDS = ("rademacher", "gaussian")
DIVERGENCES = ("exact", "hutchinson")
CHUNK_ELEMENTS = 1 << 25


def _check_x(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of shape (batch, *data), got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (batch, *data) with batch >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor, got dtype {x.dtype}")
    return x


def _check_velocity(velocity, name="velocity"):
    if not callable(velocity):
        raise TypeError(f"{name} must be callable as {name}(x, t), got {type(velocity).__name__}")


def _check_out(v, shape):
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(shape):
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"velocity must return a tensor of the shape of x {tuple(shape)}, got {got}")


def _tangent(proj, x):
    """The projection of vectors of x's shape onto the tangent space at x (the identity in R^D)."""
    return lambda e: proj(x.detach(), e)


def _exact_func(velocity, x, t, create_graph, proj):
    """torch.func: one forward pass on the batch, then the D vector-Jacobian products with
    the basis vectors e_i (the same in every sample; projected at each x_b on a manifold)
    vmapped into batched backward passes."""
    batch, d = x.shape[0], x[0].numel()
    tangent = _tangent(proj, x)
    with torch.enable_grad() if create_graph else torch.no_grad():
        v, vjp_fn = vjp(lambda y: velocity(y, t), x)
        _check_out(v, x.shape)

        def diagonal(e):  # e_i^T (dv[b]/dx[b]) e_i = d v[b, i] / d x[b, i], shape (batch,)
            e = tangent(e.expand(batch, d).reshape(x.shape))
            return (vjp_fn(e)[0] * e).reshape(batch, d).sum(1)

        chunk = max(1, CHUNK_ELEMENTS // (batch * d))  # bounds the (chunk, batch, D) intermediates
        div = vmap(diagonal, chunk_size=chunk)(torch.eye(d, dtype=x.dtype, device=x.device)).sum(0)
    return v, div


def _vjp_forms(velocity, x, t, vectors, n, create_graph):
    """v and sum_j e_j^T (dv/dx) e_j per sample: one autograd backward (a vector-Jacobian
    product e_j^T dv/dx, summed over the batch) per vector e_j of x's shape; n vectors."""
    batch = x.shape[0]
    with torch.enable_grad():
        xr = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        v = velocity(xr, t)
        _check_out(v, x.shape)
        total = torch.zeros(batch, dtype=v.dtype, device=v.device)
        for j, e in enumerate(vectors if v.requires_grad else ()):
            (g,) = torch.autograd.grad(v, xr, e, retain_graph=create_graph or j < n - 1,
                                       create_graph=create_graph, allow_unused=True)
            if g is not None:
                total = total + (g * e).reshape(batch, -1).sum(1)
    return (v, total) if create_graph else (v.detach(), total.detach())


def _exact_loop(velocity, x, t, create_graph, proj):
    """autograd: e_i = the i-th basis vector in every sample gives d v[b, i] / d x[b, i] (samples must not interact)."""
    d, basis = x[0].numel(), torch.eye(x[0].numel(), dtype=x.dtype, device=x.device)
    tangent = _tangent(proj, x)
    vectors = (tangent(basis[i].expand(x.shape[0], d).reshape(x.shape)) for i in range(d))
    return _vjp_forms(velocity, x, t, vectors, d, create_graph)


def _exact(velocity, x, t, create_graph, impl, proj):
    """(v, div, the implementation that ran): "auto" tries "func" and falls back to "loop"."""
    if impl in ("auto", "func"):
        try:
            return (*_exact_func(velocity, x, t, create_graph, proj), "func")
        except Exception:
            if impl == "func":
                raise
    return (*_exact_loop(velocity, x, t, create_graph, proj), "loop")


def _manifold(velocity, space, owner: str = "velocity") -> Manifold:
    """The space the field lives on (``space``, else the velocity's declared one, else R^D), as a Manifold."""
    return check_manifold(resolve_space(velocity, space, owner=owner))


def divergence_exact(velocity: Callable[..., torch.Tensor], x: torch.Tensor, t: float | torch.Tensor, *,
                     create_graph: bool = False, impl: str = "auto",
                     space: Manifold | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """v = velocity(x, t) and its exact divergence div_b = sum_i d v[b, i] / d x[b, i]; on a manifold the
    Riemannian divergence div_b = sum_i (P e_i)^T (dv[b]/dx[b]) (P e_i) = tr(P J P), P = ``space.proj(x[b], .)``.

    Args:
        velocity: ``velocity(x, t)`` of x's shape; x: (batch, *data), D = prod(data);
        t: a float, or a (batch,) tensor with values in [0, 1].
        create_graph: keep the autograd graph (default: detached values).
        impl: ``"func"``: torch.func, one forward pass, v, vjp_fn = vjp(velocity, x),
            then vmap of vjp_fn over the D basis cotangents e_i (in chunks of at most
            2^25 elements): batched backward passes, and div = sum_i (e_i . vjp_fn(e_i)).
            ``"loop"``: plain autograd, one backward per dimension i, of sum_b v[b, i]; for
            velocities torch.func cannot transform (e.g. a torch.autograd.Function without
            setup_context). ``"auto"`` (default): "func", and "loop" if that raises.
        space: a :class:`~fmlearn.spaces.Manifold` (module docstring): the divergence of v as a field on the
            manifold, right for a v tangent at the points x (its values off the manifold do not matter); None:
            the velocity's own space (its ``space`` attribute), else R^D.

    Returns (v, div), shapes (batch, *data) and (batch,), in x's dtype (a module with floating
    parameters is called on x cast to their dtype). Cost: one forward pass and
    D vector-Jacobian products. Works under torch.no_grad().
    """
    _check_velocity(velocity)
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {list(IMPLS)}, got {impl!r}")
    check_time(t, _check_x(x))  # values in [0, 1] (a tensor's: one host sync, at this entry point only)
    return _exact(at_dtype(velocity, model_dtype_device(velocity)[0]), x, t, create_graph, impl,
                  _manifold(velocity, space).proj)[:2]


def _draw_probes(x, probes, kind, generator):
    """Probes drawn on the generator's device (a CPU generator works for CUDA data: the same
    seed then gives the same probes on every machine), then moved to x's device."""
    shape = (probes, *x.shape)
    dev = draw_device(generator, x.device)
    if kind == "gaussian":
        eps = torch.randn(shape, generator=generator, device=dev, dtype=x.dtype)
    else:
        eps = torch.randint(0, 2, shape, generator=generator, device=dev).to(x.dtype) * 2 - 1
    return eps.to(x.device)


def divergence_hutchinson(velocity: Callable[..., torch.Tensor], x: torch.Tensor, t: float | torch.Tensor,
                          probes: int = 1, generator: torch.Generator | None = None,
                          kind: str = "rademacher", noise: torch.Tensor | None = None, *,
                          create_graph: bool = False,
                          space: Manifold | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """v = velocity(x, t) and Hutchinson's estimate of its divergence,

        div_b ~ (1/k) sum_{j=1}^k eps_j[b]^T (dv[b]/dx[b]) eps_j[b],   E[eps eps^T] = I,

    unbiased, of variance Var(eps^T J eps) / k: 2 |S|_F^2 for Gaussian probes,
    2 sum_{i != j} S_ij^2 for Rademacher (+-1) ones, S = (J + J^T) / 2. One autograd
    backward (vector-Jacobian product) per probe.

    Args: x: (batch, *data); t: a float or a (batch,) tensor; probes: k >= 1 per sample;
        generator: seeds them; kind: ``"rademacher"`` or ``"gaussian"``;
        noise: the probes themselves, shape (probes, *x.shape), e.g. the same ones at
        every step of an ODE solve (then generator and kind are unused);
        create_graph: keep the autograd graph (default: detached values);
        space: a :class:`~fmlearn.spaces.Manifold` (None: the velocity's own, else R^D): each probe is
        projected, P eps, at its point first, an unbiased estimate of tr(P J P) (see :func:`divergence_exact`).

    Returns (v, div_estimate), shapes (batch, *data) and (batch,), in x's dtype (as :func:`divergence_exact`).
    """
    _check_velocity(velocity)
    x = _check_x(x)
    check_positive_int("probes", probes)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if noise is None:
        noise = _draw_probes(x, probes, kind, generator)
    elif not isinstance(noise, torch.Tensor) or tuple(noise.shape) != (probes, *x.shape):
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor of shape (probes, *x.shape) = {(probes, *x.shape)}, got {got}")
    noise = noise.to(dtype=x.dtype, device=x.device)
    proj = _manifold(velocity, space).proj
    noise = torch.stack([proj(x.detach(), e) for e in noise])
    v, total = _vjp_forms(at_dtype(velocity, model_dtype_device(velocity)[0]), x, t, noise, probes, create_graph)
    return v, total / probes


class _WithLogDensity:
    """The space of the likelihood's state (x, a): x steps on ``space``, the running integral a adds."""

    def __init__(self, space):
        self.space = space

    def step(self, state, dx):
        return self.space.step(state[0], dx[0]), state[1] + dx[1]

    def check_field(self, v, state, name="velocity"):
        self.space.check_field(v[0], state[0], name)
        return v


def _source_log_prob(source: Any, space: Manifold) -> Callable[[torch.Tensor], torch.Tensor]:
    """log p_0 as a function of x_0: the space's default source, or ``source``'s log_prob (a distribution, of R^D
    unless it declares its ``space``, refused on another space), or ``source`` itself (a function)."""
    if source is None:
        return space.source_log_prob
    if hasattr(source, "log_prob"):
        own = declared_space(source, "source") or EUCLIDEAN
        if own != space:
            raise ValueError(f"source is a density on {own!r} (its space), but the likelihood is computed on "
                             f"{space!r}: a density of one space is no density of another; pass a source on "
                             f"{space!r} (e.g. fmlearn.manifolds.Uniform({space!r})) or leave source out (the space's "
                             f"default source)")
        return source.log_prob
    if callable(source):
        return source
    raise TypeError(f"source must have a log_prob method or be callable, got {type(source).__name__}")


def _time_span(method: str, steps: int | None) -> dict:
    """The solver's times, 1 -> 0: ``steps`` equal steps (default 32) for a fixed-step method; the two ends for
    dopri5, which chooses its own steps."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string such as 'rk4', got {type(method).__name__}")
    if method == "dopri5":
        if steps is not None:
            raise ValueError("steps sets a fixed grid, but method='dopri5' chooses its own steps: set rtol and atol")
        return {"times": (1.0, 0.0)}
    return {"times": time_grid(check_positive_int("steps", 32 if steps is None else steps), 1.0, 0.0)}


def log_likelihood(model: Callable[..., torch.Tensor], x: torch.Tensor, *, steps: int | None = None,
                   method: str = "rk4", divergence: str = "exact", probes: int = 10,
                   generator: torch.Generator | None = None, source: Any = None,
                   space: Manifold | None = None, rtol: float | None = None,
                   atol: float | None = None) -> torch.Tensor:
    """log p_1(x) of the flow of ``model`` from ``source`` at t = 0, shape (batch,).

    Integrates the pair (x, a), a tuple state of shapes (batch, *data) and (batch,), of

        dx/dt = u_t(x),   da/dt = div u_t(x),   x(1) = x,  a(1) = 0

    from t = 1 to 0 with ``method`` (fmlearn.solvers.odeint): a(0) = -int_0^1 div u_t(x_t) dt, and
    log p_1(x) = log p_0(x_0) + a(0).

    Args:
        model: ``model(x, t)``; a Module runs on its device (x is moved there) and in the
            dtype of its parameters (x is cast for each call, the velocity cast back), in eval
            mode (restored after). Values only: no graph is kept across steps.
        x: (batch, *data), any data shape.
        steps, method: ``steps`` equal steps (default 32) of a fixed-step method (default ``"rk4"``) on the grid
            1 -> 0, both ends included; or ``method="dopri5"``, adaptive, under ``rtol`` and ``atol`` (default
            1e-5 each) with the mixed error norm of :mod:`fmlearn.adaptive`, in which the log-density leaf a
            counts as much as the points (no ``steps``).
        divergence: ``"exact"`` (divergence_exact, impl "auto" decided at the first
            evaluation) or ``"hutchinson"`` (``probes`` Rademacher probes per sample,
            drawn once from ``generator``, reused at every step: unbiased).
        source: log p_0. Default: the space's source, ``space.source_log_prob``: N(0, I),
            -|x_0|^2 / 2 - D/2 log(2 pi), in R^D; uniform on a compact manifold. Otherwise a distribution with
            ``log_prob`` on the same space (one declaring another ``space``, or a Part I distribution on a
            manifold, is refused), or a function, giving (batch,); one with ``dim`` = D (an fmlearn
            distribution) gets x_0.flatten(1).
        space: a :class:`~fmlearn.spaces.Manifold`; None: the model's own space (its ``space`` attribute, as a
            :class:`~fmlearn.manifolds.ProjectedVelocity` has), else R^D. One that contradicts the model's is
            refused. x must lie on it (its ``check_points``); the field is u_t = space.proj(x, model(x, t)), its
            divergence the Riemannian one (module docstring), and the solver steps with ``space.step``, so x_t
            stays on the manifold (up to rounding) at every step.
    Returns log p_1(x), shape (batch,), in x's dtype (float64 x and a float32 model: the ODE is
    integrated in float64). (The source points x_0 themselves reach ``source``: a callable source sees them.)
    Densities on a manifold are with respect to its volume (area on S^2, d theta on the flat torus).
    """
    _check_velocity(model, "model")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {list(DIVERGENCES)}, got {divergence!r}")
    check_positive_int("probes", probes)
    span = _time_span(method, steps)
    space = _manifold(model, space, owner="model")
    log_p0_of = _source_log_prob(source, space)
    x = check_finite("x", space.check_points("x", _check_x(x)))
    batch, d = x.shape[0], x[0].numel()
    with model_context(model, x) as (net, x):
        augmented = _augmented_field(net, x, space.proj, divergence, probes, generator, space)
        x0, a0 = odeint(augmented, (x, x.new_zeros(batch)), method=method, rtol=rtol, atol=atol,
                        space=_WithLogDensity(space), **span).x
        log_p0 = log_p0_of(x0.reshape(batch, d) if getattr(source, "dim", None) == d else x0)
        if not isinstance(log_p0, torch.Tensor) or tuple(log_p0.shape) != (batch,):
            got = tuple(log_p0.shape) if isinstance(log_p0, torch.Tensor) else type(log_p0).__name__
            raise ValueError(f"source log-density must return shape (batch,) = ({batch},), got {got}")
    return log_p0.to(x.dtype) + a0


def _augmented_field(net, x, proj, divergence, probes, generator, space):
    """(x, a) -> (u, div u) with u = proj(x, net(x, t)): the field of :func:`log_likelihood`."""
    impl = ["auto"]
    noise = _draw_probes(x, probes, "rademacher", generator) if divergence == "hutchinson" else None

    def field(y, t):
        return proj(y, net(y, t))

    def augmented(state, t):
        if noise is None:
            v, div, impl[0] = _exact(field, state[0], t, False, impl[0], proj)
        else:
            v, div = divergence_hutchinson(field, state[0], t, probes, noise=noise, space=space)
        return v, div.to(x.dtype)

    return augmented


def bits_per_dim(log_likelihood: torch.Tensor | float, data_shape_or_dim: int | Sequence[int]) -> torch.Tensor:
    """-log p(x) / (D ln 2), bits per dimension, of the shape of ``log_likelihood`` (nats).

    data_shape_or_dim: D, or the data shape without batch (e.g. (1, 28, 28)), D its product.
    (For discrete data such as 8-bit images, add the dequantization term yourself.)
    """
    ll = as_tensor("log_likelihood", log_likelihood)
    shape = tuple(data_shape_or_dim) if isinstance(data_shape_or_dim, (tuple, list, torch.Size)) else (data_shape_or_dim,)
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise ValueError(f"data_shape_or_dim must be a positive int or a non-empty tuple of positive ints "
                         f"(the data shape without batch), got {data_shape_or_dim!r}")
    return -ll / (math.prod(shape) * math.log(2))
