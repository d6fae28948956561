"""Input checks shared by the package: every message names the argument,
what was given and what was expected."""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Callable, Iterator

import torch


def as_tensor(name: str, value: Any, *, dtype: torch.dtype | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Convert ``value`` to a floating tensor, refusing what cannot be one.

    Python numbers and lists of them become floats (default dtype, or ``dtype``); a tensor of integers is refused
    with a TypeError: floats are meant here, and an integer tensor is most likely tokens or labels, which a silent
    cast would turn into meaningless numbers (tokens belong to :mod:`fmlearn.discrete`; cast numbers with .float()).
    """
    if isinstance(value, torch.Tensor):
        out = value
        if out.dtype != torch.bool and not out.is_floating_point() and not out.is_complex():
            raise TypeError(f"{name} must be a floating tensor, got integers (dtype {out.dtype}): floats are meant "
                            "here; integer tokens belong to fmlearn.discrete, and numbers can be cast with .float()")
    else:
        try:  # convert straight to the asked dtype: a list of floats must not pass through float32
            out = torch.as_tensor(value, dtype=dtype) if dtype is not None else torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a tensor or array of numbers, got {type(value).__name__}") from err
    if out.dtype == torch.bool or out.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {out.dtype}")
    if not out.is_floating_point():
        out = out.to(torch.get_default_dtype())
    return out.to(dtype=dtype or out.dtype, device=device or out.device)


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise if ``x`` holds NaN or inf (one host sync: call outside hot loops)."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} must be finite, but {bad} of its {x.numel()} entries are NaN or inf")
    return x


def check_points(name: str, x: Any, dim: int | None = None) -> torch.Tensor:
    """A batch of points: shape (batch, dim) with batch >= 1, finite (an empty batch has no mean: refused)."""
    x = as_tensor(name, x)
    want = f"(batch, {dim})" if dim is not None else "(batch, dim)"
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: it must hold at least one point, shape {want} with batch >= 1, "
                         f"got {tuple(x.shape)}")
    return check_finite(name, x)


def time_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of time for a state x: x's own if it is floating, else (integer tokens) the default float dtype."""
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def check_time(t: float | torch.Tensor, x: torch.Tensor, name: str = "t", check_values: bool = True) -> torch.Tensor:
    """Time as a floating (batch,) tensor on x's device, in :func:`time_dtype` (x's dtype, or the default float
    dtype when x holds integer tokens: time is never cast to integers).

    Accepts a float or a floating tensor of shape (), (1,) or (batch,), with values in [0, 1]; returns shape
    (batch,). An integer tensor is refused (TypeError). A float's range is always checked; a tensor's values
    only when ``check_values`` (a host sync: models skip it so the training loop never waits on the device).
    """
    batch, dtype = x.shape[0], time_dtype(x)
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {t}")
        return torch.full((batch,), float(t), dtype=dtype, device=x.device)
    if check_values:
        t = as_tensor(name, t)
    elif not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a float or a tensor, got {type(t).__name__}")
    elif not t.is_floating_point():
        raise TypeError(f"{name} must be a float or a floating tensor, got dtype {t.dtype}")
    t = t.to(dtype=dtype, device=x.device)
    if t.ndim == 0 or t.shape == (1,):
        t = t.reshape(1).expand(batch)
    elif t.shape != (batch,):
        raise ValueError(f"{name} must be a float or a tensor of shape (batch,) = ({batch},), got shape {tuple(t.shape)}")
    if check_values and not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{name} must lie in [0, 1], got values from {float(t.min())} to {float(t.max())}")
    return t


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_int_range(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer (not a bool) in [low, high] (no upper bound when high is None), as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or \
            (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def expand_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (batch,) time so it broadcasts against x of shape (batch, *data)."""
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def check_real(name: str, value: Any, *, positive: bool = False) -> float:
    """A finite real number (positive if asked) as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number, got {value}")
    return value


def check_unit_interval(name: str, value: Any) -> float:
    """A real number in [0, 1] (a weight, a probability), as a float; a ValueError names the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def model_dtype_device(model: Any) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of a module's first floating parameter (else buffer); (None, None) for a plain
    function or a module without floating tensors."""
    if isinstance(model, torch.nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype, tensor.device
    return None, None


def at_dtype(fn: Callable[..., Any], dtype: torch.dtype | None) -> Callable[..., Any]:
    """``fn(x, t, **kw)`` called with a floating x cast to ``dtype`` and its output cast back to x's dtype, so a
    float32 network can drive a float64 state and the reverse (the casts are differentiable). Integer tokens
    (and any x that is not floating) pass as they are, and so does the output they give (a token model's
    logits keep the model's dtype): a token is no number to cast. ``fn`` itself if dtype is None."""
    if dtype is None:
        return fn

    def call(x, t, **kw):
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            return fn(x, t, **kw)
        out = fn(x.to(dtype), t, **kw)
        return out.to(x.dtype) if isinstance(out, torch.Tensor) else out

    return call


def check_velocity_output(v: Any, x: torch.Tensor, name: str = "velocity") -> torch.Tensor:
    """Refuse a velocity whose value is not a tensor of x's shape (it would broadcast silently in x + h v).
    Reads shapes only: no host sync."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name}(x, t) must return a tensor of x's shape {tuple(x.shape)}, got {type(v).__name__}")
    if v.shape != x.shape:
        raise ValueError(f"{name}(x, t) returned shape {tuple(v.shape)}, but it must return x's shape "
                         f"{tuple(x.shape)}: dx/dt has one entry per entry of x")
    return v


@contextlib.contextmanager
def model_context(model: Any, x: torch.Tensor | None = None, *, grad: bool = False
                  ) -> Iterator[tuple[Callable, torch.Tensor | None]]:
    """Run a model for evaluation: ``with model_context(model, x) as (net, x): ...``.

    Inside, a module is in eval mode (its mode is restored on exit) and gradients are off unless ``grad``;
    ``x`` is moved to the device of the model's parameters; ``net(x, t, **kw)`` calls the model on a floating x
    cast to its parameters' dtype and casts the output back to x's dtype (:func:`at_dtype`), so the caller's
    state keeps its own dtype; integer tokens are not cast (a token model's logits come back as it returns
    them). A plain function is called as it is, x left where it is.
    """
    dtype, device = model_dtype_device(model)
    if x is not None and device is not None:
        x = x.to(device)
    is_module = isinstance(model, torch.nn.Module)
    was_training = model.training if is_module else False
    if is_module:
        model.eval()
    try:
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            yield at_dtype(model, dtype), x
    finally:
        if is_module:
            model.train(was_training)
