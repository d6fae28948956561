"""The conditional flow matching (CFM) loss and the training loop.

CFM loss, for x0 ~ source, x1 ~ data, t ~ U[0, 1], x_t on the conditional path:

    L(theta) = E || u_theta(x_t, t) - (d_alpha_t x1 + d_beta_t x0) ||^2

(squared norm over the data dimensions, mean over the batch).

The loop keeps the device busy: losses stay on the device and are read back,
checked for NaN/inf and shown in the progress bar once every ``log_every``
steps, which is the only host sync.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_positive_int, check_real
from .config import get_device
from .distributions import Sampleable
from .paths import AffineGaussianPath, PathSample


#: Below this many parameters, bfloat16 autocast slows a training step down on CUDA: the step is bound by
#: kernel launches, and autocast adds casts. Measured on an H100 (benchmarks/train_step.py and README):
#: at batch 4096 autocast took a 2.1M-parameter MLP from 299 to 245 it/s and an 8.5M one from 166 to 262.
AMP_MIN_PARAMS = 4_000_000


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or inf."""


def cfm_loss(model: nn.Module, path: AffineGaussianPath, x0: torch.Tensor, x1: torch.Tensor,
             t: torch.Tensor, **cond) -> torch.Tensor:
    """The CFM loss on one batch (x0, x1, t): mean over the batch of ||u_theta(x_t, t) - dx_t||^2."""
    return _regression_loss(model, path.sample(x0, x1, t), **cond)


def _regression_loss(model, ps: PathSample, **cond) -> torch.Tensor:
    pred = model(ps.xt, ps.t, **cond)
    return (pred.float() - ps.dxt.float()).pow(2).flatten(1).sum(1).mean()


def uniform_time(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """t ~ U[0, 1), shape (n,)."""
    return torch.rand(n, generator=generator, device=device)


_T_EDGE = 2.0 ** -24  # the float32 neighbour of 1 is 1 - 2^-24


def logit_normal_time(mean: float = 0.0, std: float = 1.0) -> Callable:
    """A time sampler for :func:`train`: t = sigmoid(mean + std z), z ~ N(0, 1), i.e. logit(t) ~ N(mean, std^2).

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


@dataclass
class TrainResult:
    """What :func:`train` returns: the per-step loss history and timing."""

    losses: np.ndarray
    seconds: float
    device: str
    steps_run: int = 0

    def smoothed(self, window: int = 100) -> np.ndarray:
        """Running mean of the loss over ``window`` steps (for plots)."""
        window = max(1, min(window, len(self.losses)))
        return np.convolve(self.losses, np.ones(window) / window, mode="valid")


def _amp_context(amp: bool, device: torch.device):
    if amp:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(model: nn.Module, path: AffineGaussianPath, target: Sampleable, *, steps: int,
          batch_size: int = 256, lr: float = 1e-3, source: Sampleable | None = None, seed: int = 0,
          device=None, amp: bool | None = None, cosine_decay: bool = True,
          time_sampler: Callable = uniform_time, log_every: int = 100, progress: bool = True,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
          ema: float | None = None, coupling: Callable | None = None, conditional: bool = False,
          label_dropout: float = 0.0) -> TrainResult:
    """Train ``model`` in place with the CFM loss and Adam.

    Args:
        model: a velocity field ``model(x, t)``; moved to ``device``.
        path: the conditional path (its schedule sets the regression target).
        target: the data distribution (anything with ``sample(n, generator, device)``), or paired data
            with ``sample_pairs(n, generator, device) -> (x0, x1)`` (e.g. :class:`PairedData` for reflow),
            which then supplies the source points too.
        steps: number of optimizer steps in total (a resumed run continues up to it).
        batch_size, lr: batch size and Adam's learning rate (cosine-decayed to 0 when ``cosine_decay``).
        source: the source distribution; default N(0, I) of the data's shape.
        seed: seeds the generator of x0, x1 and t, so a run is reproducible.
        device: where to train; default CUDA when present (``FMLEARN_DEVICE`` overrides).
        amp: bfloat16 autocast; default on CUDA for models of at least ``AMP_MIN_PARAMS`` parameters
            (where it pays), off otherwise and always off on the CPU.
        time_sampler: ``f(n, generator, device) -> t`` of shape (n,); default uniform, see also
            :func:`logit_normal_time`.
        log_every: steps between loss read-backs (progress bar, NaN check).
        checkpoint: a file path: resume from it if it exists, save to it at the end (atomic write).
            A resumed run continues the same plan: with cosine decay, ``steps`` must equal the saved run's.
        ema: keep an exponential moving average of the weights with this decay (e.g. 0.999),
            theta_ema <- decay * theta_ema + (1 - decay) * theta after every step, and load it
            into ``model`` at the end: averaged weights are less noisy than the last step's.
        checkpoint_every: also save every this many steps (at the next loss read-back), so an
            interrupted run can resume exactly where the last save left it.
        coupling: ``f(x0, x1) -> x0`` re-pairing each batch's source points with its data points
            (e.g. a minibatch optimal-transport coupling); default: independent pairs.
        conditional: train a conditional field ``model(x, t, y=labels)``: the target must offer
            ``sample(n, generator, device, return_labels=True) -> (x1, labels)`` and the model a
            ``num_classes`` attribute; label ``num_classes`` means "no label".
        label_dropout: with ``conditional``, the probability of replacing a label by the "no label"
            index, so that the same model also learns the unconditional field (classifier-free guidance).

    Returns:
        a :class:`TrainResult` with the loss of every step.

    Raises:
        NonFiniteLossError: naming the first step whose loss was NaN or inf.
    """
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("log_every", log_every)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, AffineGaussianPath):
        raise TypeError(f"path must be an AffineGaussianPath, got {type(path).__name__}")
    if not (hasattr(target, "sample") or hasattr(target, "sample_pairs")):
        raise TypeError("target must have a sample(n, generator, device) or a sample_pairs(n, generator, device) "
                        f"method, got {type(target).__name__}")
    if checkpoint_every is not None:
        check_positive_int("checkpoint_every", checkpoint_every)
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if ema is not None and not (isinstance(ema, float) and 0.0 < ema < 1.0):
        raise ValueError(f"ema must be None or a decay in (0, 1) such as 0.999, got {ema!r}")
    if coupling is not None and not callable(coupling):
        raise TypeError(f"coupling must be a callable f(x0, x1) -> x0, got {type(coupling).__name__}")
    paired = hasattr(target, "sample_pairs")
    if paired and source is not None:
        raise ValueError("target supplies (x0, x1) pairs through sample_pairs; pass source=None")
    if not (isinstance(label_dropout, (int, float)) and 0.0 <= label_dropout < 1.0):
        raise ValueError(f"label_dropout must be a probability in [0, 1), got {label_dropout!r}")
    if label_dropout and not conditional:
        raise ValueError(f"label_dropout={label_dropout} needs conditional=True")
    null_label = None
    if conditional:
        null_label = getattr(model, "num_classes", None)
        if not isinstance(null_label, int) or null_label < 1:
            raise TypeError("conditional=True needs a model with an integer num_classes attribute "
                            f"(label num_classes means 'no label'); {type(model).__name__} has {null_label!r}")
        if paired:
            raise ValueError("conditional=True needs labelled samples, not sample_pairs data")

    dev = get_device(device)
    if amp is None:
        amp = dev.type == "cuda" and sum(p.numel() for p in model.parameters()) >= AMP_MIN_PARAMS
    amp = bool(amp)
    model.to(dev).train()
    gen = torch.Generator(device=dev).manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    params = [p for p in model.parameters()]
    ema_params = [p.detach().clone() for p in params] if ema is not None else None
    history: list[float] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, model, opt)
        start, history = state["step"], state["losses"].tolist()
        gen.set_state(state["generator"].to("cpu"))  # generator states live on the CPU
        if ema_params is not None:
            if "ema" not in state:
                raise ValueError(f"checkpoint {checkpoint} was trained without ema; resume it with ema=None")
            for e, saved in zip(ema_params, state["ema"]):
                e.copy_(saved)
        planned = int(state.get("planned_steps", steps))
        if start > steps:
            raise ValueError(f"checkpoint {checkpoint} holds {start} steps, more than steps={steps}")
        if cosine_decay and planned != steps:
            raise ValueError(f"checkpoint {checkpoint} comes from a run planned for steps={planned} with cosine "
                             f"decay; resume it with steps={planned}, or pass cosine_decay=False")

    def save(step_done):
        save_checkpoint(checkpoint, model, opt, step=step_done, losses=history, generator=gen,
                        planned_steps=steps, ema=ema_params)

    pending: list[torch.Tensor] = []  # this chunk's losses, still on the device
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=start, disable=not progress, desc=f"training on {dev.type}", leave=False)
    try:
        for step in range(start, steps):
            x0, x1, cond = _draw_batch(target, source, batch_size, gen, dev, paired, null_label, label_dropout)
            if coupling is not None:
                x0 = coupling(x0, x1)
            t = time_sampler(batch_size, gen, dev)
            with _amp_context(amp, dev):
                loss = _regression_loss(model, path.sample_unchecked(x0, x1, t), **cond)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cosine_decay:  # lr_i = lr (1 + cos(pi i / steps)) / 2, set by hand: no scheduler object per step
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            opt.step()
            if ema_params is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - ema)
            pending.append(loss.detach())
            done = step + 1 - start
            if done % log_every == 0 or step + 1 == steps:
                n = len(pending)
                chunk = torch.stack(pending).float().cpu().numpy()
                pending.clear()
                _raise_if_nonfinite(chunk, step + 1 - n, steps)
                history.extend(chunk.tolist())
                bar.update(n)
                bar.set_postfix(loss=f"{chunk.mean():.4f}")
                if checkpoint is not None and checkpoint_every and step + 1 < steps and \
                        (step + 1) // checkpoint_every > (step + 1 - n) // checkpoint_every:
                    save(step + 1)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if checkpoint is not None and steps > start:
        save(steps)  # with the raw weights: a resumed run continues from them
    if ema_params is not None:
        with torch.no_grad():
            for p, e in zip(params, ema_params):
                p.copy_(e)
    return TrainResult(losses=np.asarray(history), seconds=seconds, device=str(dev), steps_run=steps - start)


def _draw_batch(target, source, n, gen, dev, paired, null_label, label_dropout):
    """One batch (x0, x1, conditioning kwargs) for :func:`train`."""
    cond = {}
    if paired:
        x0, x1 = target.sample_pairs(n, generator=gen, device=dev)
        return x0, x1, cond
    if null_label is not None:
        x1, y = target.sample(n, generator=gen, device=dev, return_labels=True)
        if label_dropout:
            drop = torch.rand(n, generator=gen, device=dev) < label_dropout
            y = torch.where(drop, torch.full_like(y, null_label), y)
        cond["y"] = y
    else:
        x1 = target.sample(n, generator=gen, device=dev)
    x0 = source.sample(n, generator=gen, device=dev) if source is not None else \
        torch.randn(x1.shape, generator=gen, device=dev)
    return x0, x1, cond


class PairedData:
    """Fixed (x0, x1) pairs, drawn in random minibatches by :func:`train`: e.g. the (noise, sample)
    pairs of a trained flow, to train a rectified ("reflowed") flow on them.

    Args:
        x0, x1: tensors of the same shape (n, *data_shape): pair i is (x0[i], x1[i]).
    """

    def __init__(self, x0: torch.Tensor, x1: torch.Tensor):
        if not (isinstance(x0, torch.Tensor) and isinstance(x1, torch.Tensor)):
            raise TypeError(f"x0 and x1 must be tensors, got {type(x0).__name__} and {type(x1).__name__}")
        if x0.shape != x1.shape or x0.ndim < 2:
            raise ValueError(f"x0 and x1 must have the same shape (n, *data_shape), got {tuple(x0.shape)} "
                             f"and {tuple(x1.shape)}")
        if not (torch.isfinite(x0).all() and torch.isfinite(x1).all()):
            raise ValueError("x0 and x1 must be finite")
        self.x0, self.x1 = x0.detach(), x1.detach()
        self._on = {}  # device -> (x0, x1) copies, made once

    def _tensors(self, dev: torch.device):
        if dev == self.x0.device:
            return self.x0, self.x1
        if dev not in self._on:
            self._on[dev] = (self.x0.to(dev), self.x1.to(dev))
        return self._on[dev]

    def __len__(self):
        return self.x0.shape[0]

    def sample_pairs(self, n: int, generator: torch.Generator | None = None, device=None):
        """n pairs drawn uniformly with replacement, on ``device`` (default the generator's device)."""
        check_positive_int("n", n)
        dev = torch.device(device) if device is not None else \
            (generator.device if generator is not None else self.x0.device)
        idx = torch.randint(len(self), (n,), generator=generator, device=dev)
        x0, x1 = self._tensors(dev)
        return x0[idx], x1[idx]

    def __repr__(self):
        return f"PairedData(n={len(self)}, shape={tuple(self.x0.shape[1:])})"


def _raise_if_nonfinite(chunk: np.ndarray, first_step: int, steps: int):
    bad = np.flatnonzero(~np.isfinite(chunk))
    if bad.size:
        step = first_step + int(bad[0]) + 1
        raise NonFiniteLossError(
            f"training stopped: the loss became {chunk[bad[0]]} at step {step} of {steps}. "
            "Common causes: a learning rate too high (try lr / 10), non-finite data, "
            "or a schedule whose velocity diverges at the times you sample.")


def save_checkpoint(path, model, optimizer=None, scheduler=None, *, step: int, losses, generator=None,
                    planned_steps: int | None = None, ema: list | None = None):
    """Save training state to ``path`` atomically (write a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "step": int(step), "losses": torch.as_tensor(np.asarray(losses, dtype=np.float64))}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if generator is not None:
        state["generator"] = generator.get_state()
    if planned_steps is not None:
        state["planned_steps"] = int(planned_steps)
    if ema is not None:
        state["ema"] = [e.detach().cpu() for e in ema]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path, model, optimizer=None, scheduler=None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    return state
