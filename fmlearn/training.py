"""The training loop: one loop for every objective (:mod:`fmlearn.objectives`).

Each step draws a batch from the objective (``objective.draw(n, generator, device)``), computes its loss
(``objective.loss(model, batch)``, under bfloat16 autocast on CUDA when ``amp``), and takes an Adam step with
a cosine-decayed learning rate; an optional EMA of the weights is loaded into the model at the end.

The loop keeps the device busy: losses stay on the device and are read back,
checked for NaN/inf and shown in the progress bar once every ``log_every``
steps, which is the only host sync.

Checkpoints hold the weights, Adam's state, the random generator's state, the
loss history, the planned number of steps, the EMA weights and the run's
settings (batch size, learning rate, seed, EMA decay), so a resumed run is the
same run, bit for bit, and a run with other settings is refused.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_positive_int, check_real
from .config import get_device, show_progress
from .objectives import Objective, check_objective


#: Below this many parameters, bfloat16 autocast slows a training step down on CUDA: the step is bound by
#: kernel launches, and autocast adds casts. Measured on an H100 (benchmarks/train_step.py and README):
#: at batch 4096 autocast took a 2.1M-parameter MLP from 299 to 245 it/s and an 8.5M one from 166 to 262.
AMP_MIN_PARAMS = 4_000_000


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or inf."""


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


class _DeferredInterrupt:
    """While active, Ctrl-C sets ``requested`` instead of raising KeyboardInterrupt in the middle of a step, so
    the loop can stop between two steps with consistent weights, optimizer and generator; the handler puts the
    default one back at once, so a second Ctrl-C interrupts immediately. Active only when ``enabled``, in the
    main thread, and over Python's default SIGINT handler (also the one Jupyter kernels run cells with)."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.requested, self._handler = enabled, False, None

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._handler = self._handle
            signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._handler is not None and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self._handler = None


def train(model: nn.Module, objective: Objective, *, steps: int, batch_size: int = 256, lr: float = 1e-3,
          seed: int = 0,
          device: torch.device | str | None = None, amp: bool | None = None, cosine_decay: bool = True,
          log_every: int = 100,
          progress: bool | None = None, checkpoint: str | os.PathLike | None = None,
          checkpoint_every: int | None = None, ema: float | None = None) -> TrainResult:
    """Train ``model`` in place on ``objective`` with Adam.

    Args:
        model: the network the objective's loss calls (e.g. a velocity field ``model(x, t)``); moved to ``device``.
        objective: what to minimise, with ``draw(n, generator, device)`` and ``loss(model, batch)`` (and
            optionally ``bind(model)``, called once before the first step): e.g.
            ``fmlearn.CFMObjective(path, data)``, or :class:`~fmlearn.objectives.CrossEntropyObjective`.
            The data, source, coupling, time sampler, conditioning and label dropout belong to it.
        steps: number of optimizer steps in total (a resumed run continues up to it).
        batch_size, lr: batch size and Adam's learning rate (cosine-decayed to 0 when ``cosine_decay``).
        seed: seeds the generator the objective draws its batches from, so a run is reproducible. It does
            not set the model's initial weights: the model was built before train() is called, from the
            global torch seed of that moment, so seed that (``fmlearn.seed_everything(seed)`` or
            ``torch.manual_seed(seed)``) before building the model; train() never re-initialises it.
        device: where to train; default CUDA when present (``FMLEARN_DEVICE`` overrides).
        amp: bfloat16 autocast of the loss; default on CUDA for models of at least ``AMP_MIN_PARAMS``
            parameters (where it pays), off otherwise and always off on the CPU.
        log_every: steps between loss read-backs (progress bar, NaN check).
        progress: show a progress bar; default: yes, unless ``FMLEARN_PROGRESS=0`` or ``CI`` is set
            (:func:`fmlearn.config.show_progress`: a headless run stores no stale bar in its outputs).
        checkpoint: a file path: resume from it if it exists, save to it at the end (atomic write).
            A resumed run continues the same plan: with cosine decay, ``steps`` must equal the saved run's,
            and batch_size, lr, seed and ema must equal the saved ones (a ValueError names each that differs).
            On KeyboardInterrupt (Ctrl-C, or an interrupt raised inside the step) it also saves the steps
            done so far, prints where, and re-raises: calling train again with the same arguments resumes.
            Ctrl-C then lets the current step finish first; a second Ctrl-C interrupts at once.
        ema: keep an exponential moving average of the weights with this decay (e.g. 0.999),
            theta_ema <- d_k * theta_ema + (1 - d_k) * theta after step k = 0, 1, ..., and load it
            into ``model`` at the end: averaged weights are less noisy than the last step's. The decay
            warms up, d_k = min(ema, (1 + k) / (10 + k)) (as TensorFlow's ExponentialMovingAverage with
            num_updates): early averages follow the weights closely, so the random initial weights do not
            linger in the average (with d_k = ema from the start they keep a share ema^steps of it).
        checkpoint_every: also save every this many steps (at the next loss read-back), so an
            interrupted run can resume exactly where the last save left it.

    Returns:
        a :class:`TrainResult` with the loss of every step.

    Raises:
        NonFiniteLossError: naming the first step whose loss was NaN or inf.
        ValueError: a checkpoint that cannot be read, was not written by train, or holds a run with other
            settings; the message names the file and the cause.
    """
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("log_every", log_every)
    lr = check_real("lr", lr, positive=True)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if isinstance(ema, bool):
        raise TypeError(f"ema must be a number, got bool {ema!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_objective(objective)
    if checkpoint_every is not None:
        check_positive_int("checkpoint_every", checkpoint_every)
    if ema is not None and not (isinstance(ema, float) and 0.0 < ema < 1.0):
        raise ValueError(f"ema must be None or a decay in (0, 1) such as 0.999, got {ema!r}")
    if callable(getattr(objective, "bind", None)):
        objective.bind(model)

    dev = get_device(device)
    if amp is None:
        amp = dev.type == "cuda" and sum(p.numel() for p in model.parameters()) >= AMP_MIN_PARAMS
    amp = bool(amp)
    model.to(dev).train()
    gen = torch.Generator(device=dev).manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    params = [p for p in model.parameters()]
    ema_params = [p.detach().clone() for p in params] if ema is not None else None
    settings = {"batch_size": batch_size, "lr": lr, "seed": int(seed), "ema": None if ema is None else float(ema)}
    history: list[float] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = _read_checkpoint(checkpoint, resume=True)
        start, planned = int(state["step"]), int(state.get("planned_steps", steps))
        if start > steps:
            raise ValueError(f"checkpoint {checkpoint} holds {start} steps, more than steps={steps}")
        if cosine_decay and planned != steps:
            raise ValueError(f"checkpoint {checkpoint} comes from a run planned for steps={planned} with cosine "
                             f"decay; resume it with steps={planned}, or pass cosine_decay=False")
        differ = _settings_that_differ(state, settings)
        if differ:
            raise ValueError(f"checkpoint {checkpoint} holds a run with other settings: {'; '.join(differ)}. "
                             "Resume it with the saved settings, or train into another checkpoint file")
        _load_state(checkpoint, state, model, opt)
        history = state["losses"].tolist()
        try:
            gen.set_state(state["generator"].to("cpu"))  # generator states live on the CPU
        except (RuntimeError, TypeError, AttributeError) as err:
            raise ValueError(f"checkpoint {checkpoint} holds a random generator state that does not fit this "
                             f"run's {dev.type} generator (was it trained on another device?): {err}") from err
        for e, saved in zip(ema_params or (), state.get("ema", ())):
            e.copy_(saved)

    def save(step_done, losses):
        save_checkpoint(checkpoint, model, opt, step=step_done, losses=losses, generator=gen,
                        planned_steps=steps, ema=ema_params, settings=settings)

    pending: list[torch.Tensor] = []  # this chunk's losses, still on the device
    # Where an interrupt leaves the run: `completed` steps are in the weights, Adam and `history` + `pending`;
    # `snapshot` is the generator state at the start of the step under way (its draws are undone on interrupt);
    # `updating` marks opt.step() and the EMA update, during which the weights are between two steps.
    completed, snapshot, updating = start, None, False
    interrupt = _DeferredInterrupt(enabled=checkpoint is not None)
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=start, disable=not (show_progress() if progress is None else progress),
               desc=f"training on {dev.type}", leave=False)
    try:
        with interrupt:
            for step in range(start, steps):
                if checkpoint is not None:
                    snapshot = gen.get_state()  # a CPU copy of a few KB, no host sync
                batch = objective.draw(batch_size, gen, dev)
                with _amp_context(amp, dev):
                    loss = objective.loss(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cosine_decay:  # lr_i = lr (1 + cos(pi i / steps)) / 2, set by hand: no scheduler object per step
                    for group in opt.param_groups:
                        group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
                updating = True
                opt.step()
                if ema_params is not None:
                    with torch.no_grad():
                        decay = min(ema, (1 + step) / (10 + step))
                        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)
                pending.append(loss.detach())
                completed, snapshot, updating = step + 1, None, False
                if (completed - start) % log_every == 0 or completed == steps:
                    n = len(pending)
                    chunk = torch.stack(pending).float().cpu().numpy()
                    _raise_if_nonfinite(chunk, completed - n, steps)
                    history.extend(chunk.tolist())
                    pending.clear()
                    bar.update(n)
                    bar.set_postfix(loss=f"{chunk.mean():.4f}")
                    if checkpoint is not None and checkpoint_every and completed < steps and \
                            completed // checkpoint_every > (completed - n) // checkpoint_every:
                        save(completed, history)
                if interrupt.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        if checkpoint is None:
            print(f"training interrupted after {completed} of {steps} steps; nothing was saved (pass "
                  "checkpoint=<file> to train to make an interrupted run resumable)", file=sys.stderr)
        elif updating:
            print(f"training interrupted while updating the weights at step {completed + 1} of {steps}: nothing "
                  f"was saved, the checkpoint {checkpoint} (if any) holds the last save", file=sys.stderr)
        else:
            if snapshot is not None:
                gen.set_state(snapshot)
            pending_losses = torch.stack(pending).float().cpu().tolist() if pending else []
            save(completed, (history + pending_losses)[:completed])  # [:completed]: a loss flushed twice counts once
            print(f"training interrupted after {completed} of {steps} steps: saved them to the checkpoint "
                  f"{checkpoint}; call train again with the same arguments to resume from there", file=sys.stderr)
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if checkpoint is not None and steps > start:
        save(steps, history)  # with the raw weights: a resumed run continues from them
    if ema_params is not None:
        with torch.no_grad():
            for p, e in zip(params, ema_params):
                p.copy_(e)
    return TrainResult(losses=np.asarray(history), seconds=seconds, device=str(dev), steps_run=steps - start)


def _raise_if_nonfinite(chunk: np.ndarray, first_step: int, steps: int):
    bad = np.flatnonzero(~np.isfinite(chunk))
    if bad.size:
        step = first_step + int(bad[0]) + 1
        raise NonFiniteLossError(
            f"training stopped: the loss became {chunk[bad[0]]} at step {step} of {steps}. "
            "Common causes: a learning rate too high (try lr / 10), non-finite data, "
            "or a schedule whose velocity diverges at the times you sample.")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, *, step: int, losses: Sequence[float] | np.ndarray,
                    generator: torch.Generator | None = None,
                    planned_steps: int | None = None, ema: list | None = None, settings: dict | None = None) -> None:
    """Save training state to ``path`` atomically (write a temporary file, then rename).

    ``settings``: a dict of numbers (and None) that a resumed run must repeat; :func:`train` stores its
    batch_size, lr, seed and ema there."""
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
    if settings is not None:
        state["settings"] = dict(settings)
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


#: What save_checkpoint always writes, and what train needs besides to resume a run.
_CHECKPOINT_KEYS = ("model", "step", "losses")
_RESUME_KEYS = ("optimizer", "generator")
_ZIP_SIGNATURE = b"PK\x03\x04"  # torch.save writes a zip archive


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` or :func:`train` into ``model`` (and ``optimizer``,
    ``scheduler`` when given and saved); return the whole saved dict. ``weights_only=True``: no code is unpickled.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and the cause: it is empty, truncated or corrupted, not a torch file,
            not written by fmlearn (missing keys), or holds the weights of another model.
    """
    state = _read_checkpoint(path)
    _load_state(path, state, model, optimizer, scheduler)
    return state


def _read_checkpoint(path, resume: bool = False) -> dict:
    """The dict saved in ``path``, checked to hold what save_checkpoint writes (and, to ``resume`` a run, what
    train writes besides); a ValueError naming the file and the cause otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {path} cannot be read: {_why_unreadable(path, err)}") from err
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not the dict that fmlearn's train and "
                         "save_checkpoint write")
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing:
        if state and all(isinstance(v, torch.Tensor) for v in state.values()):
            held = "it looks like a bare model state_dict: load that with model.load_state_dict(torch.load(path))"
        else:
            held = f"it holds the keys {sorted(map(str, state))}"
        raise ValueError(f"checkpoint {path} was not written by fmlearn.train or save_checkpoint: it lacks the "
                         f"keys {missing}; {held}")
    missing = [k for k in _RESUME_KEYS if k not in state] if resume else []
    if missing:
        raise ValueError(f"checkpoint {path} cannot be resumed by train: it lacks the keys {missing} that train "
                         "saves (save_checkpoint was called without them)")
    return state


def _why_unreadable(path: Path, err: Exception) -> str:
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_SIGNATURE))
    said = str(err).strip().split("\n")[0].split(". ")[0]  # torch's first sentence
    said = f"{type(err).__name__}: {said}" if said else type(err).__name__
    if not head:
        return "the file is empty (0 bytes): an interrupted copy, or a full disk?"
    if head != _ZIP_SIGNATURE:
        return "it is not a torch checkpoint (torch.save writes a zip archive, and this file is not one)"
    if isinstance(err, pickle.UnpicklingError):
        return ("it holds Python objects (a whole pickled model?) that a weights-only load refuses; fmlearn "
                f"checkpoints hold only tensors and numbers ({said})")
    return f"the file is truncated or corrupted: an interrupted copy, or a full disk? ({said})"


def _weights_mismatch(model: nn.Module, saved) -> str:
    """What keeps the state_dict ``saved`` from loading into ``model`` (keys, shapes); '' when it fits. Checked
    before loading, because load_state_dict copies the tensors that fit before it raises about the others."""
    if not isinstance(saved, dict):
        return f"its weights are a {type(saved).__name__}, not a state_dict"
    own = model.state_dict()
    parts = [f"{what} keys {keys}" for what, keys in (("missing", [k for k in own if k not in saved]),
                                                      ("unexpected", [k for k in saved if k not in own])) if keys]
    shapes = [f"{k} {tuple(saved[k].shape)} saved vs {tuple(v.shape)}" for k, v in own.items()
              if isinstance(saved.get(k), torch.Tensor) and saved[k].shape != v.shape]
    if shapes:
        parts.append("other shapes: " + ", ".join(shapes))
    return "; ".join(parts)


def _load_state(path, state: dict, model, optimizer=None, scheduler=None):
    """Load the saved weights (and optimizer, scheduler states) into the given objects, naming the file
    when they do not fit; weights that do not fit leave the model untouched."""
    wrong = _weights_mismatch(model, state["model"])
    if wrong:
        raise ValueError(f"checkpoint {path} holds the weights of another model than the {type(model).__name__} "
                         f"given: {wrong}")
    model.load_state_dict(state["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None and name in state:
            try:
                obj.load_state_dict(state[name])
            except (RuntimeError, TypeError, ValueError, KeyError) as err:
                raise ValueError(f"checkpoint {path} holds a {name} state that does not fit the "
                                 f"{type(obj).__name__} given: {err}") from err


def _settings_that_differ(state: dict, given: dict) -> list[str]:
    """'name: saved ..., given ...' for each setting of ``given`` that differs from the checkpoint's. A checkpoint
    written before settings were saved tells only whether it kept an EMA."""
    saved = state.get("settings")
    if saved is None:
        kept_ema = "ema" in state
        if kept_ema == (given["ema"] is not None):
            return []
        return [f"ema: saved {'an EMA' if kept_ema else None}, given {given['ema']!r}"]
    return [f"{k}: saved {saved[k]!r}, given {v!r}" for k, v in given.items() if k in saved and saved[k] != v]
