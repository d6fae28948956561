"""Classifier-free guidance (Ho and Salimans, 2022) for flow matching.

One network learns both the conditional velocity u(x, t, y) and the unconditional one u(x, t, none):
in training, each label is replaced by the "no label" index ``model.num_classes`` with probability
``label_dropout`` (``fmlearn.CFMObjective(path, data, conditional=True, label_dropout=0.1)``). Sampling then
follows the guided field, with guidance weight w:

    u_w(x, t, y) = (1 + w) u(x, t, y) - w u(x, t, none) = u(x, t, y) + w [u(x, t, y) - u(x, t, none)].

w = 0 is the plain conditional field, w = -1 the unconditional one, w > 0 extrapolates away from
the unconditional field. Some libraries write u_none + s (u_y - u_none) with a "guidance scale"
s = 1 + w; the two conventions describe the same field.

Why it works, for the affine Gaussian paths of the course: the velocity is affine in the score,
u_t(x) = a_t x + b_t grad log p_t(x), with the same (a_t, b_t) for every label, so u_w is the velocity
whose score is grad log [p_t(x | y)^(1+w) / p_t(x)^w] = grad log [p_t(x | y) p_t(y | x)^w]: the
conditional density tilted towards points the implicit classifier p_t(y | x) is sure about.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_positive_int, check_real, check_time
from ._random import draw_device
from .models import check_labels
from .solvers import sample
from .stepping import Solution


def _num_classes(model) -> int:
    k = getattr(model, "num_classes", None)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise TypeError(f"model must be a conditional velocity field with an integer num_classes attribute "
                        f"(label num_classes = no label); {type(model).__name__} has num_classes={k!r}")
    return k


class GuidedVelocity(nn.Module):
    """The classifier-free guided field u_w(x, t, y) = (1 + w) u(x, t, y) - w u(x, t, none) of a
    conditional ``model``, itself a velocity field ``guided(x, t, y=labels)`` that :func:`fmlearn.sample`
    and :func:`fmlearn.odeint` integrate like any other.

    Both fields come from one forward pass on the batch [x; x] with labels [y; none] (twice the batch,
    half the calls); this needs a model whose rows do not interact (no batch norm).

    Args:
        model: a conditional velocity field ``model(x, t, y=labels)`` with a ``num_classes`` attribute.
        w: the guidance weight, a finite real number (0: no guidance).
    """

    def __init__(self, model: nn.Module, w: float):
        super().__init__()
        self.num_classes = _num_classes(model)
        self.model = model
        self.w = check_real("w", w)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        if y is None:
            raise ValueError("y is required: the labels (batch,) to guide towards")
        y = check_labels(y, self.num_classes, x, check_values=False)  # the model checks the values
        t = check_time(t, x, check_values=False)
        none = torch.full_like(y, self.num_classes)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([y, none]))
        cond, uncond = both.chunk(2)
        return torch.lerp(uncond, cond, 1.0 + self.w)  # uncond + (1 + w)(cond - uncond)

    def extra_repr(self) -> str:
        return f"w={self.w}"


class ConditionalMixtureOracle(nn.Module):
    """The exact conditional velocity u_t(x | y) of a labelled Gaussian mixture (label = component):

        u_t(x | y = k) = velocity of the path towards N(mu_k, diag(s_k^2)) alone,
        u_t(x | none)  = velocity of the path towards the whole mixture (y = K, the "no label" index),

    each from a :class:`~fmlearn.oracle.MixtureOracle`. A reference for learned conditional fields
    and, wrapped in :class:`GuidedVelocity`, for guidance itself. Called as ``oracle(x, t, y=labels)``.
    """

    def __init__(self, mixture, path):
        from .oracle import MixtureOracle

        super().__init__()
        k = mixture.n_components
        self.num_classes = k
        self.parts = [MixtureOracle(type(mixture)(mixture.means[i:i + 1], mixture.stds[i:i + 1]), path)
                      for i in range(k)]
        self.whole = MixtureOracle(mixture, path)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = check_labels(y, self.num_classes, x)
        t = check_time(t, x)
        out = torch.empty_like(x)
        for i, field in enumerate(self.parts + [self.whole]):
            rows = y == i
            if bool(rows.any()):
                out[rows] = field.velocity(x[rows], t[rows])
        return out


def guided_velocity(model: nn.Module, w: float) -> GuidedVelocity:
    """The guided field of ``model`` with weight w: see :class:`GuidedVelocity`."""
    return GuidedVelocity(model, w)


def guided_sample(model: nn.Module, labels: torch.Tensor, w: float, shape: tuple[int, ...], *, steps: int = 20,
                  method: str = "midpoint", generator: torch.Generator | None = None,
                  batch_size: int = 2048) -> Solution:
    """Samples x1 of the guided flow for each label: x0 ~ N(0, I) of shape (n, *shape), integrated from
    t = 0 to 1 along u_w with ``steps`` steps of ``method`` (see :func:`fmlearn.sample`), in chunks of
    ``batch_size``. ``labels`` has shape (n,). Returns the :class:`~fmlearn.stepping.Solution` of every
    sampler: its x, shape (n, *shape), is on the model's device; nfe counts the guided field's evaluations
    per sample (each one forward pass of the model on twice the chunk). x0 is drawn on the generator's device
    (default the CPU) and moved to the model's.
    """
    guided = GuidedVelocity(model, w)
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a tensor of shape (n,), got {got}")
    check_positive_int("batch_size", batch_size)
    if not isinstance(shape, (tuple, list, torch.Size)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise TypeError(f"shape must be the data shape of one sample, a tuple of positive ints such as (2,) or "
                        f"(1, 8, 8), got {type(shape).__name__} {shape!r}")
    dev = draw_device(generator)
    x0 = torch.randn(labels.shape[0], *shape, generator=generator, device=dev)
    sols = [sample(guided, x0[i:i + batch_size], steps=steps, method=method, y=labels[i:i + batch_size])
            for i in range(0, labels.shape[0], batch_size)]
    return Solution(x=torch.cat([sol.x for sol in sols]), times=sols[0].times, nfe=sols[0].nfe,
                    accepted_steps=sols[0].accepted_steps, rejected_steps=0)
