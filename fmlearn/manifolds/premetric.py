"""Premetric conditional paths (Chen & Lipman): flow matching on a manifold whose geodesics have no closed form.

A *premetric* on a manifold M is a function d(x, y) >= 0 with d(x, y) = 0 only at x = y and a gradient
grad_x d(x, y) != 0 wherever x != y (outside a set of measure zero, the cut set). For a convex schedule kappa_t
(kappa_0 = 0, kappa_1 = 1), the conditional velocity

    u_t(x | x1) = -(d_kappa_t / (1 - kappa_t)) d(x, x1) grad d / |grad d|^2     (grad and |.| of M's metric)

makes d shrink at the schedule's pace: d/dt d(x_t, x1) = <grad d, u_t> = -(d_kappa_t / (1 - kappa_t)) d(x_t, x1),
so d(x_t, x1) = (1 - kappa_t) d(x0, x1). (Chen & Lipman write kappa(t) for our 1 - kappa_t.) With the
geodesic distance for d the path is the geodesic; any premetric gives a valid path.

How it is computed: with sigma(t) = -log(1 - kappa_t), u_t = d_sigma_t V(x) for the *autonomous* descent field

    V(x) = -d(x, x1) grad d / |grad d|^2,     along which d decays as e^{-sigma} exactly (<grad d, V> = -d),

so x_t = Phi_{sigma(t)}(x0), the flow of V for a time sigma(t). V vanishes at x1 (no 1 / (1 - t) to blow up),
and :meth:`PremetricPath.sample` integrates it with the one solver core (:func:`fmlearn.odeint`, rk4, the space's
step), each sample for its own sigma in one batched solve: dx/dtau = sigma_i V(x), tau from 0 to 1. On the path
d(x_t, x1) / (1 - kappa_t) = d(x0, x1), so the regression target is written without that ratio,

    u_t(x_t | x0, x1) = d_kappa_t d(x0, x1) (-grad d) / |grad d|^2,       finite for every t < 1.

:class:`RadialPremetric` is one premetric of a star-shaped surface (the :class:`~fmlearn.manifolds.Ellipsoid`):
the angle between the rays through x and y, d(x, y) = dist_S2(p, q), p = x / |x|, q = y / |y|. It is zero only
at x = y (the radial map is a bijection), and its gradient, the tangent part of the ambient one,

    grad d(x, y) = P(x) g,   g = -log_p(q) / (theta |x|),   theta = d(x, y),   |g| = 1 / |x|,

is nonzero except at y and the cut point -y / rho(-y) (the ray opposite y): g is tangent to the sphere
through x (normal p), n is the surface's normal, and |P(x) g| >= <n, p> |g| > 0, since <n, x> = 1 / |x / s^2| > 0.

:class:`PathBankObjective` trains on such a path cheaply: it draws (x0, x1, t) once, solves for x_t and u_t in
one batched solve, and each step of :func:`fmlearn.train` regresses on a random subset of that bank.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_int, check_real, check_time, expand_time
from .._random import draw_device
from ..objectives import regression_loss
from ..paths import FlowPathSample, check_pair
from ..schedules import KappaSchedule, get_schedule
from ..solvers import odeint
from .ellipsoid import Ellipsoid
from .sphere import Sphere


class RadialPremetric:
    """d(x, y) = the angle between x and y seen from the centre of a star-shaped surface (module docstring).

    Args:
        space: an :class:`~fmlearn.manifolds.Ellipsoid` (its radial map ``to_sphere`` and projection ``proj``).
    """

    def __init__(self, space: Ellipsoid):
        if not isinstance(space, Ellipsoid):
            raise TypeError(f"space must be a star-shaped surface, a fmlearn.manifolds.Ellipsoid, got "
                            f"{type(space).__name__}")
        self.space, self.sphere = space, Sphere()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d(x, y) = dist_S2(x / |x|, y / |y|), shape (batch,)."""
        return self.sphere.dist(self.space.to_sphere(x), self.space.to_sphere(y))

    def value_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(d(x, y), shape (batch,); its Riemannian gradient in x on the surface, shape (batch, 3)):
        theta = atan2(|w|, <p, q>), w = q - <p, q> p, and grad = P(x) (-w / (|w| |x|)) (-w / |w| is the unit
        tangent at p pointing away from q: -log_p(q) / theta). The gradient is set to 0 where w = 0, at x = y
        and at the cut point, where d is not differentiable."""
        p, q = self.space.to_sphere(x), self.space.to_sphere(y)
        cos = (p * q).sum(-1, keepdim=True)
        w = q - cos * p
        sin = w.norm(dim=-1, keepdim=True)
        g = -w / (sin * x.norm(dim=-1, keepdim=True)).clamp_min(torch.finfo(w.dtype).tiny)
        return torch.atan2(sin, cos).squeeze(-1), self.space.proj(x, g)

    def grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The Riemannian gradient of d(., y) at x (:meth:`value_and_grad`), shape (batch, 3)."""
        return self.value_and_grad(x, y)[1]

    def __repr__(self) -> str:
        return f"RadialPremetric({self.space!r})"


def descent_field(premetric, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """V(x) = -d(x, y) grad d(x, y) / |grad d(x, y)|^2, shape (batch, 3): <grad d, V> = -d, and V = 0 at x = y."""
    d, g = premetric.value_and_grad(x, y)
    return -d.unsqueeze(-1) * g / g.pow(2).sum(-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)


class PremetricPath:
    """The premetric conditional path of Chen & Lipman on ``premetric.space``: x_t the flow of the descent
    field for a time sigma(t) = -log(1 - kappa_t), so d(x_t, x1) = (1 - kappa_t) d(x0, x1) (module docstring).

    Args:
        premetric: d(x, y) with ``grad(x, y)`` and ``space``, e.g. :class:`RadialPremetric`.
        schedule: a :class:`~fmlearn.schedules.KappaSchedule` or its name (default ``"condot"``, kappa_t = t).
        max_step: the largest rk4 step in sigma (default 0.25): a sample takes min_steps 2^k steps of
            sigma_i / (min_steps 2^k), the fewest of these with no step above max_step (see :meth:`flow`).
        min_steps: the fewest rk4 steps of a solve (default 4).
    """

    def __init__(self, premetric, schedule: KappaSchedule | str = "condot", *, max_step: float = 0.25,
                 min_steps: int = 4):
        if not callable(premetric) or not callable(getattr(premetric, "value_and_grad", None)) or \
                not hasattr(premetric, "space"):
            raise TypeError(f"premetric must be a premetric d(x, y) with value_and_grad(x, y) and space, e.g. "
                            f"RadialPremetric(Ellipsoid()), got {type(premetric).__name__}")
        self.premetric, self.space, self.schedule = premetric, premetric.space, get_schedule(schedule)
        if not isinstance(self.schedule, KappaSchedule):
            raise TypeError(f"schedule must be a convex schedule kappa_t (a KappaSchedule such as 'condot'), got "
                            f"{self.schedule!r}")
        self.max_step = check_real("max_step", max_step, positive=True)
        self.min_steps = check_positive_int("min_steps", min_steps)

    def sample_source(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """x0 from the space's default source (uniform on the surface), of the given shape (n, 3)."""
        return self.space.sample_source(shape, generator, device)

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor, *,
               check: bool = True) -> FlowPathSample:
        """x_t and u_t(x_t | x0, x1) for batches x0, x1 of points of the space at times t in [0, 1) (a float or a
        (batch,) tensor): one batched rk4 solve of dx/dtau = sigma_i V(x) (module docstring). Points off the
        surface and t = 1 (sigma infinite) are refused; ``check=False`` skips the checks."""
        if check:
            x0, x1 = check_pair(self.space, x0, x1)
            t = check_time(t, x0)
        te = expand_time(t, x0)
        kappa = self.schedule.kappa(te)
        if check and not bool((kappa < 1).all()):
            raise ValueError("t must be below 1 for a premetric path: at kappa_t = 1 the state is x1 and its "
                             "velocity has no direction (sigma = -log(1 - kappa_t) is infinite); got t = "
                             f"{float(t.max())}")
        sigma = -torch.log1p(-kappa)
        xt = self.flow(x0, x1, sigma)
        d0, g = self.premetric(x0, x1).unsqueeze(-1), self.premetric.grad(xt, x1)
        dxt = -self.schedule.d_kappa(te) * d0 * g / g.pow(2).sum(-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
        return FlowPathSample(x0=x0, x1=x1, t=t, xt=xt, dxt=dxt)

    def flow(self, x0: torch.Tensor, x1: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Phi_sigma(x0): the descent field's flow for a time sigma_i (shape (batch, 1)) from each x0 towards its x1.
        One rk4 solve of dx/dtau = sigma_i V(x), tau in [0, 1], per group of samples that need about as many
        steps: n_i = min_steps 2^k, the least with sigma_i / n_i <= max_step, so no step exceeds max_step."""
        if not bool(torch.isfinite(sigma).all() and (sigma >= 0).all()):
            raise ValueError("sigma must be finite and >= 0 (sigma = -log(1 - kappa_t) for t in [0, 1))")
        need = (sigma.squeeze(-1) / (self.max_step * self.min_steps)).clamp_min(1)
        level = torch.ceil(torch.log2(need) - 1e-9).clamp_min(0).long()
        out = torch.empty_like(x0)
        for k in torch.unique(level).tolist():
            i = (level == k).nonzero().squeeze(-1)
            s, y = sigma[i], x1[i]
            out[i] = odeint(lambda x, tau: s * descent_field(self.premetric, x, y), x0[i], method="rk4",
                            steps=self.min_steps * 2 ** k, space=self.space).x
        return out

    def __repr__(self) -> str:
        return f"PremetricPath({self.premetric!r}, {self.schedule!r})"


class PathBankObjective:
    """CFM on a bank of ``size`` conditional path samples drawn and solved once, for a path whose x_t costs an ODE
    solve: each :func:`fmlearn.train` step regresses the model on a random subset,
    mean ||u_theta(x_t, t) - u_t(x_t | x0, x1)||^2 (the loss of :class:`~fmlearn.CFMObjective`).

    Args:
        path: the conditional path, e.g. :class:`PremetricPath` (its ``sample`` and ``sample_source``).
        data: the target, with ``sample(n, generator=...)``.
        size: how many (x0, x1, t) triples, t ~ U[0, 1); each is solved in float64 and kept in float32.
        source: the source, with ``sample(n, generator=...)``; default the path's (uniform on the surface).
        generator: draws the bank (the training loop's generator then picks the batches).
    """

    def __init__(self, path, data, *, size: int, source=None, generator: torch.Generator | None = None):
        if not callable(getattr(path, "sample", None)) or not callable(getattr(path, "sample_source", None)):
            raise TypeError(f"path must be a conditional path with sample and sample_source, e.g. PremetricPath, "
                            f"got {type(path).__name__}")
        if not callable(getattr(data, "sample", None)):
            raise TypeError(f"data must have a sample(n, generator) method, got {type(data).__name__}")
        if source is not None and not callable(getattr(source, "sample", None)):
            raise TypeError(f"source must have a sample(n, generator) method, got {type(source).__name__}")
        self.path, self.data, self.source, self.size = path, data, source, check_positive_int("size", size)
        x1 = data.sample(size, generator=generator).double()
        x0 = (source.sample(size, generator=generator) if source is not None else
              path.sample_source((size, x1.shape[1]), generator)).double()
        t = torch.rand(size, generator=generator, dtype=torch.float64)
        ps = path.sample(x0, x1, t)
        self.bank = FlowPathSample(x0=ps.x0.float(), x1=ps.x1.float(), t=ps.t.float(), xt=ps.xt.float(),
                                   dxt=ps.dxt.float())
        self._on: dict = {}

    def draw(self, n: int, generator: torch.Generator | None, device: torch.device | str | None) -> FlowPathSample:
        """n samples of the bank, picked uniformly with replacement, on ``device``."""
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if dev not in self._on:
            self._on[dev] = {k: getattr(self.bank, k).to(dev) for k in ("x0", "x1", "t", "xt", "dxt")}
        idx = torch.randint(self.size, (n,), generator=generator, device=draw_device(generator, device)).to(dev)
        return FlowPathSample(**{k: v[idx] for k, v in self._on[dev].items()})

    def loss(self, model: torch.nn.Module, batch: FlowPathSample) -> torch.Tensor:
        return regression_loss(model, batch)

    def __repr__(self) -> str:
        return f"PathBankObjective({self.path!r}, {type(self.data).__name__}, size={self.size})"
