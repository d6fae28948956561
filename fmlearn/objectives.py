"""Objectives: what :func:`fmlearn.train` minimises, separate from the loop that minimises it.

An objective has two methods, and the loop calls them once per step:

    draw(n, generator, device) -> batch      the step's random batch (data, times, labels...), outside autocast
    loss(model, batch) -> scalar tensor      the loss of ``model`` on that batch (under autocast on CUDA)

so one loop (optimizer, learning-rate schedule, EMA, mixed precision, checkpoints) serves every family of
the course: the CFM regression of Part I here, the discrete, Riemannian and jump objectives of Part II.

CFM loss (:class:`CFMObjective`), for x0 ~ source, x1 ~ data, t ~ time sampler, x_t on the conditional path:

    L(theta) = E || u_theta(x_t, t) - (d_alpha_t x1 + d_beta_t x0) ||^2

(squared norm over the data dimensions, mean over the batch). Cross-entropy (:class:`CrossEntropyObjective`),
for (x, y) ~ data with y an integer class or token per position:

    L(theta) = E [ -log softmax(f_theta(x))_y ]       (mean over the batch and the positions)

whose minimiser is the true posterior p(y | x): the classifier of chapter 6, the token posterior of chapter 8.

A path for :class:`CFMObjective` is a flow's conditional path (:class:`~fmlearn.paths.FlowPath`): it has a
``space``, a default source (``sample_source``) and ``sample(x0, x1, t, check=...)`` returning a
:class:`~fmlearn.paths.FlowPathSample` (xt, t and dxt, the target velocity): :class:`~fmlearn.paths.AffineGaussianPath`
in R^d, :class:`~fmlearn.manifolds.GeodesicPath` on a manifold. Without ``source=`` the objective draws x0 from
the path's default source (N(0, I) in R^d, uniform on the sphere and the torus). The first batch of a run is
checked against the path's space (points of the space, one shape, times in [0, 1]); later batches are not (no
host sync per step).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import nn

from ._checks import check_real, check_time
from .paths import FlowPath, FlowPathSample
from .spaces import check_manifold

class Objective(Protocol):
    """What :func:`fmlearn.train` minimises (see the module docstring)."""

    def draw(self, n: int, generator: torch.Generator | None, device: torch.device | str | None) -> Any: ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...


_T_EDGE = 2.0 ** -24  # the float32 neighbour of 1 is 1 - 2^-24


def uniform_time(n: int, generator: torch.Generator | None, device: torch.device | str | None) -> torch.Tensor:
    """t ~ U[0, 1), shape (n,)."""
    return torch.rand(n, generator=generator, device=device)


def logit_normal_time(mean: float = 0.0, std: float = 1.0) -> Callable:
    """A time sampler for :class:`CFMObjective`: t = sigmoid(mean + std z), z ~ N(0, 1), i.e.
    logit(t) ~ N(mean, std^2).

    Density and CDF on (0, 1), with logit(t) = log(t / (1 - t)) and Phi the standard normal CDF:

        p(t) = exp(-(logit(t) - mean)^2 / (2 std^2)) / (std sqrt(2 pi) t (1 - t)),
        P(T <= t) = Phi((logit(t) - mean) / std).

    mean = 0, std = 1 (Esser et al. 2024, Stable Diffusion 3) puts more samples at intermediate times
    than at the ends; mean > 0 shifts them towards t = 1; with mean = 0, std > sqrt(2) makes the density
    bimodal (peaks near both ends).

    Returns:
        ``f(n, generator, device) -> t`` of shape (n,), like :func:`uniform_time`. Its values are clamped
        into [2^-24, 1 - 2^-24], so float32 rounding never gives exactly 0 or 1; this moves the probability
        Phi((-16.6 -/+ mean) / std) at each end, which is nil unless std is several units.
    """
    mean, std = check_real("mean", mean), check_real("std", std, positive=True)

    def sample_time(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
        z = torch.randn(n, generator=generator, device=device)
        return torch.sigmoid(mean + std * z).clamp(_T_EDGE, 1 - _T_EDGE)

    sample_time.__qualname__ = sample_time.__name__ = f"logit_normal_time(mean={mean}, std={std})"
    return sample_time


def regression_loss(model: nn.Module, ps: Any, **cond: torch.Tensor) -> torch.Tensor:
    """mean over the batch of ||model(x_t, t, **cond) - dx_t||^2 on a path sample ``ps`` (xt, t, dxt), in float32."""
    pred = model(ps.xt, ps.t, **cond)
    return (pred.float() - ps.dxt.float()).pow(2).flatten(1).sum(1).mean()


def cfm_loss(model: nn.Module, path: FlowPath, x0: torch.Tensor, x1: torch.Tensor,
             t: torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
    """The CFM loss on one batch (x0, x1, t): mean over the batch of ||u_theta(x_t, t) - dx_t||^2."""
    return regression_loss(model, path.sample(x0, x1, t), **cond)


class CFMObjective:
    """Conditional flow matching on a path: the regression of the model's velocity on the path's.

    Args:
        path: the conditional path (see the module docstring); its schedule sets the regression target.
        data: the data distribution (anything with ``sample(n, generator, device)``), or paired data
            with ``sample_pairs(n, generator, device) -> (x0, x1)`` (e.g. :class:`~fmlearn.PairedData`
            for reflow), which then supplies the source points too.
        source: the source distribution; default the path's own (``path.sample_source``): N(0, I) of the data's
            shape for an affine path, uniform for a geodesic path on the sphere or the torus.
        coupling: ``f(x0, x1) -> x0`` re-pairing each batch's source points with its data points
            (e.g. a minibatch optimal-transport coupling); default: independent pairs.
        time_sampler: ``f(n, generator, device) -> t`` of shape (n,); default uniform, see also
            :func:`logit_normal_time`.
        conditional: train a conditional field ``model(x, t, y=labels)``: the data must offer
            ``sample(n, generator, device, return_labels=True) -> (x1, labels)`` and the model a
            ``num_classes`` attribute; label ``num_classes`` means "no label".
        label_dropout: with ``conditional``, the probability of replacing a label by the "no label"
            index, so that the same model also learns the unconditional field (classifier-free guidance).

    A batch is drawn in this order from the loop's generator: x1 (and labels), the dropped labels, x0, t.
    The first batch of each run is checked: x0 and x1 points of ``path.space`` of one shape (data or a source
    on another space, e.g. N(0, I) or points off the sphere for a geodesic path, is refused), t in [0, 1].
    """

    def __init__(self, path, data, *, source=None, coupling: Callable | None = None,
                 time_sampler: Callable = uniform_time, conditional: bool = False, label_dropout: float = 0.0):
        if not isinstance(path, FlowPath):
            raise TypeError(f"path must be a flow's conditional path (fmlearn.paths.FlowPath: space, "
                            f"sample_source(shape, generator, device), sample(x0, x1, t, check=...) returning xt and "
                            f"dxt), e.g. fmlearn.AffineGaussianPath('condot') or fmlearn.manifolds.GeodesicPath("
                            f"fmlearn.manifolds.Sphere()); got {type(path).__name__}")
        check_manifold(path.space, "path.space")
        if not (hasattr(data, "sample") or hasattr(data, "sample_pairs")):
            raise TypeError("data must have a sample(n, generator, device) or a sample_pairs(n, generator, device) "
                            f"method, got {type(data).__name__}")
        self.paired = hasattr(data, "sample_pairs")
        if self.paired and source is not None:
            raise ValueError("data supplies (x0, x1) pairs through sample_pairs; pass source=None")
        if coupling is not None and not callable(coupling):
            raise TypeError(f"coupling must be a callable f(x0, x1) -> x0, got {type(coupling).__name__}")
        if not callable(time_sampler):
            raise TypeError(f"time_sampler must be a callable f(n, generator, device) -> t, "
                            f"got {type(time_sampler).__name__}")
        if isinstance(label_dropout, bool):
            raise TypeError(f"label_dropout must be a number, got bool {label_dropout!r}")
        if not (isinstance(label_dropout, (int, float)) and 0.0 <= label_dropout < 1.0):
            raise ValueError(f"label_dropout must be a probability in [0, 1), got {label_dropout!r}")
        if label_dropout and not conditional:
            raise ValueError(f"label_dropout={label_dropout} needs conditional=True")
        if conditional and self.paired:
            raise ValueError("conditional=True needs labelled samples, not sample_pairs data")
        self.path, self.data, self.source, self.coupling = path, data, source, coupling
        self.time_sampler, self.conditional, self.label_dropout = time_sampler, bool(conditional), label_dropout
        self._null_label: int | None = None
        self._checked = False

    def bind(self, model: nn.Module) -> None:
        """Called by the loop before the first step: the run's first batch will be checked; a conditional
        objective reads the model's "no label" index."""
        self._checked = False
        if self.conditional:
            k = getattr(model, "num_classes", None)
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise TypeError("conditional=True needs a model with an integer num_classes attribute "
                                f"(label num_classes means 'no label'); {type(model).__name__} has {k!r}")
            self._null_label = k

    def draw(self, n: int, generator: torch.Generator | None, device: torch.device | str | None) -> tuple[Any, dict]:
        """(the path sample at the batch's times, the conditioning keyword arguments)."""
        cond = {}
        if self.paired:
            x0, x1 = self.data.sample_pairs(n, generator=generator, device=device)
            if not self._checked:
                self._check_points("x1", x1)
        else:
            if self.conditional:
                x1, y = self.data.sample(n, generator=generator, device=device, return_labels=True)
                if self.label_dropout:
                    drop = torch.rand(n, generator=generator, device=device) < self.label_dropout
                    y = torch.where(drop, torch.full_like(y, self._null_label), y)
                cond["y"] = y
            else:
                x1 = self.data.sample(n, generator=generator, device=device)
            if not self._checked:
                self._check_points("x1", x1)
            x0 = self.source.sample(n, generator=generator, device=device) if self.source is not None else \
                self.path.sample_source(tuple(x1.shape), generator, device)
        if self.coupling is not None:
            x0 = self.coupling(x0, x1)
        t = self.time_sampler(n, generator, device)
        if not self._checked:
            self._check_first_batch(x0, x1, t)
        ps = self.path.sample(x0, x1, t, check=False)
        if not self._checked:
            if not isinstance(ps, FlowPathSample):
                raise TypeError(f"path.sample must return a FlowPathSample (with the velocity dxt) for the CFM "
                                f"loss, got {type(ps).__name__} from {self.path!r}")
            self._checked = True
        return ps, cond

    def _origin(self, name: str) -> str:
        """Where the batch's x0 or x1 comes from, for messages."""
        if self.paired:
            return "data.sample_pairs"
        if name == "x1":
            return f"data={type(self.data).__name__}"
        return f"source={self.source!r}" if self.source is not None else "the path's source"

    def _check_points(self, name: str, x: Any) -> None:
        """x must be points of the path's space; the message says where they came from."""
        space = self.path.space
        try:
            space.check_points(f"{name} (from {self._origin(name)})", x)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{err}; the path {self.path!r} needs points of {space!r}") from None

    def _check_first_batch(self, x0: Any, x1: Any, t: Any) -> None:
        """Refuse a first batch (its x1 checked as drawn) whose x0 are not points of the path's space, of two
        shapes, or whose times are not a (batch,) tensor in [0, 1]; the message says which of data, source and
        time sampler is at fault."""
        self._check_points("x0", x0)
        if x0.shape != x1.shape:
            raise ValueError(f"the source's x0 and the data's x1 must have one shape (batch, *data), got "
                             f"{tuple(x0.shape)} from {self._origin('x0')} and {tuple(x1.shape)} from "
                             f"{self._origin('x1')}")
        check_time(t, x1, name="t (from time_sampler)")

    def loss(self, model: nn.Module, batch: tuple[Any, dict]) -> torch.Tensor:
        ps, cond = batch
        return regression_loss(model, ps, **cond)

    def __repr__(self) -> str:
        return f"CFMObjective({self.path!r}, {type(self.data).__name__})"


class CrossEntropyObjective:
    """Cross-entropy of a categorical model: ``model(x)`` gives logits (batch, *positions, K) for integer
    targets y (batch, *positions) drawn with ``data.sample(n, generator, device, return_labels=True)``.

    ``augment(x, generator) -> x``, if given, transforms each batch (e.g. :func:`fmlearn.digits.random_shift`).
    The loss is the mean over the batch and positions of -log softmax(logits)_y; its minimum over all
    models is the conditional entropy H(Y | X), reached by the true posterior p(y | x).
    """

    def __init__(self, data, *, augment: Callable | None = None):
        if not hasattr(data, "sample"):
            raise TypeError(f"data must have a sample(n, generator, device, return_labels=True) method, "
                            f"got {type(data).__name__}")
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be a callable f(x, generator) -> x, got {type(augment).__name__}")
        self.data, self.augment = data, augment

    def bind(self, model: nn.Module) -> None:
        """Nothing to read from the model."""

    def draw(self, n: int, generator: torch.Generator | None,
             device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.data.sample(n, generator=generator, device=device, return_labels=True)
        if self.augment is not None:
            x = self.augment(x, generator)
        return x, y

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        if y.is_floating_point():
            raise TypeError(f"the targets y must be integer classes or tokens, got dtype {y.dtype}")
        logits = model(x)
        if logits.shape[:-1] != y.shape:
            raise ValueError(f"model(x) must return logits of shape (*y.shape, K) = ({', '.join(map(str, y.shape))}, "
                             f"K), got {tuple(logits.shape)}")
        return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))

    def __repr__(self) -> str:
        return f"CrossEntropyObjective({type(self.data).__name__})"


def check_objective(objective: Any) -> Any:
    """The objective itself, refused unless it has draw(n, generator, device) and loss(model, batch)."""
    for name in ("draw", "loss"):
        if not callable(getattr(objective, name, None)):
            raise TypeError(f"objective must have draw(n, generator, device) and loss(model, batch) methods (e.g. "
                            f"fmlearn.CFMObjective(path, data)), got {type(objective).__name__}")
    return objective
