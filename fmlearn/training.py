"""The training loop: one loop for every objective (:mod:`fmlearn.objectives`).

Each step draws a batch from the objective (``objective.draw(n, generator, device)``), computes its loss
(``objective.loss(model, batch)``, under bfloat16 autocast on CUDA when ``amp``), and takes an Adam step with
a cosine-decayed learning rate; an optional EMA of the weights is loaded into the model at the end.

The loop keeps the device busy: losses stay on the device and are read back,
checked for NaN/inf and shown in the progress bar once every ``log_every``
steps, which is the only host sync.

Checkpoints. A checkpoint holds the weights, Adam's state, the random
generator's state, the loss history, the planned number of steps, the EMA
weights, the run's settings (batch size, learning rate, seed, EMA decay) and the
run's contract: a fingerprint of the objective (its class and every parameter
that defines the problem: path, schedule, data, source, coupling, time sampler,
loss...) and of what the model declares it was built for (its attributes in
:data:`MODEL_CONTRACT`, such as ``space`` or ``num_states``), described by value,
not by identity (:mod:`fmlearn._fingerprint`). A resumed run is the same run,
bit for bit: one with other settings, with cosine decay over another number of
steps, on another objective or with a model of another contract is refused by a
ValueError that names each part that differs, saved and given. A checkpoint
written before the contract was stored resumes with a warning (its objective
cannot be checked) and is saved with the contract from then on.
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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ._checks import check_positive_int, check_real
from ._fingerprint import differences, fingerprint
from ._progress import ProgressBar, seconds_text
from .config import get_device, show_progress
from .objectives import Objective, check_objective


#: Below this many parameters, bfloat16 autocast slows a training step down on CUDA: the step is bound by
#: kernel launches, and autocast adds casts. Measured on an H100 (benchmarks/train_step.py, book/measured.md):
#: at batch 4096 autocast took a 2.1M-parameter MLP from 299 to 245 it/s and an 8.5M one from 166 to 262.
AMP_MIN_PARAMS = 4_000_000

#: What a model may declare it was built for, read when present and stored in a checkpoint's contract: the space
#: of a continuous model, the number of states, vocabulary and source kind of a token model, the number of
#: classes of a conditional one.
MODEL_CONTRACT = ("space", "num_states", "vocab_size", "source", "num_classes")


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
            not set the model's initial weights: seed the global torch generator (``fmlearn.seed_everything``
            or ``torch.manual_seed``) before building the model; train() never re-initialises it.
        device: where to train; default CUDA when present (``FMLEARN_DEVICE`` overrides).
        amp: bfloat16 autocast of the loss; default on CUDA for models of at least ``AMP_MIN_PARAMS``
            parameters (where it pays), off otherwise and always off on the CPU.
        log_every: steps between loss read-backs (progress bar, NaN check).
        progress: show a progress bar while training, replaced at the end by one line of text ("trained 3000
            steps in 75 s on cpu, loss 0.1234 (mean of the last 100 steps)", or where and why it stopped); in
            a notebook the bar is plain HTML, not a widget, so a saved notebook reopens on that line. Default:
            yes, unless ``FMLEARN_PROGRESS=0`` or ``CI`` is set (:func:`fmlearn.config.show_progress`); off, it
            prints nothing.
        checkpoint: a file path: resume from it if it exists, save to it at the end (atomic write). A
            resumed run is the same run: see "Checkpoints" in the module docstring for what must match.
            On KeyboardInterrupt it also saves the steps done so far, prints where, and re-raises: calling
            train again with the same arguments resumes. Ctrl-C lets the current step finish first; a
            second Ctrl-C interrupts at once.
        checkpoint_every: also save every this many steps (at the next loss read-back), so an
            interrupted run can resume exactly where the last save left it.
        ema: keep an exponential moving average of the weights with this decay (e.g. 0.999),
            theta_ema <- d_k theta_ema + (1 - d_k) theta after step k = 0, 1, ..., with the warm-up
            d_k = min(ema, (1 + k) / (10 + k)) (TensorFlow's ExponentialMovingAverage with num_updates, so the
            random initial weights do not linger), and load it into ``model`` at the end.

    Returns:
        a :class:`TrainResult` with the loss of every step.

    Raises:
        NonFiniteLossError: naming the first step whose loss was NaN or inf.
        ValueError: a checkpoint that cannot be read, was not written by train, or holds another run
            (other settings, another objective or model contract); the message names the file and the cause.
    """
    lr = _check_arguments(model, objective, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                          log_every=log_every, checkpoint_every=checkpoint_every, ema=ema, checkpoint=checkpoint,
                          flags={"amp": amp, "cosine_decay": cosine_decay, "progress": progress})
    run = _Run(model, objective, device, amp, steps=steps, batch_size=batch_size, lr=lr, seed=int(seed),
               cosine_decay=cosine_decay, checkpoint=checkpoint, ema=ema)
    losses = _LossLog(run, log_every, show_progress() if progress is None else progress)
    take_step = _step_function(run, objective)
    interrupt = _DeferredInterrupt(enabled=checkpoint is not None)
    t0 = time.perf_counter()
    try:
        with interrupt:
            for step in range(run.start, steps):
                losses.pending.append(take_step(step))
                if (step + 1 - run.start) % log_every == 0 or step + 1 == steps:
                    losses.flush(checkpoint_every)
                if interrupt.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        losses.close(stopped="interrupted")
        run.interrupted(losses.unflushed())
        raise
    except BaseException as exc:
        losses.close(stopped=f"{type(exc).__name__}")
        raise
    losses.close()
    return run.finish(losses.history, time.perf_counter() - t0)


def _check_arguments(model, objective, *, steps, batch_size, lr, seed, log_every, checkpoint_every, ema,
                     flags: dict, checkpoint) -> float:
    """Refuse a bad argument of train with a message naming it, what was given and what was expected;
    return lr as a float. ``flags``: the switches, name -> value (True/False, or None for "the default")."""
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
    for name, value in flags.items():
        if not (isinstance(value, bool) or (value is None and name != "cosine_decay")):
            expected = "True or False" if name == "cosine_decay" else "True, False or None (the default)"
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or pathlib.Path) or None, got "
                        f"{type(checkpoint).__name__} {checkpoint!r}")
    return lr


def _adam(params, lr: float) -> torch.optim.Adam:
    """torch's Adam, fused (one kernel updates every parameter) where torch has a fused Adam for these parameters
    (floating point, on the CPU or CUDA), else its default: the same update up to float rounding. On the course's
    small models a CPU step is mostly per-op overhead, and Adam's share of it (~17 %) shrinks: 1.21x a training
    step at batch 256, 1.01x at batch 4096, where the step is compute-bound (``benchmarks/train_step.py``)."""
    params = list(params)
    if params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, ValueError):  # a torch without fused Adam for these parameters
            pass
    return torch.optim.Adam(params, lr=lr)


class _Run:
    """One training run's state: the model on its device, Adam, the batches' generator, the EMA weights,
    the loss history, and where an interrupt leaves it; it resumes from, and saves to, the checkpoint.

    ``completed`` steps are in the weights, Adam and the history (flushed or not); ``snapshot`` is the
    generator state at the start of the step under way (its draws are undone on interrupt); ``updating``
    marks opt.step() and the EMA update, during which the weights are between two steps."""

    def __init__(self, model, objective, device, amp, *, steps, batch_size, lr, seed, cosine_decay, checkpoint, ema):
        if callable(getattr(objective, "bind", None)):
            objective.bind(model)
        self.contract = _run_contract(model, objective)
        self.dev = get_device(device)
        if amp is None:
            amp = self.dev.type == "cuda" and sum(p.numel() for p in model.parameters()) >= AMP_MIN_PARAMS
        self.model, self.amp, self.steps, self.batch_size = model.to(self.dev).train(), bool(amp), steps, batch_size
        self.lr, self.cosine_decay, self.ema, self.checkpoint = lr, cosine_decay, ema, checkpoint
        self.gen = torch.Generator(device=self.dev).manual_seed(seed)
        self.opt = _adam(model.parameters(), lr)
        self.params = list(model.parameters())
        self.ema_params = [p.detach().clone() for p in self.params] if ema is not None else None
        self.settings = {"batch_size": batch_size, "lr": lr, "seed": seed, "ema": None if ema is None else float(ema)}
        self.history: list[float] = []
        self.start = 0
        if checkpoint is not None and Path(checkpoint).exists():
            self._resume()
        self.completed, self.snapshot, self.updating = self.start, None, False

    def _resume(self):
        path, steps = self.checkpoint, self.steps
        state = _read_checkpoint(path, resume=True)
        self.start, planned = int(state["step"]), int(state.get("planned_steps", steps))
        if self.start > steps:
            raise ValueError(f"checkpoint {path} holds {self.start} steps, more than steps={steps}")
        if self.cosine_decay and planned != steps:
            raise ValueError(f"checkpoint {path} comes from a run planned for steps={planned} with cosine "
                             f"decay; resume it with steps={planned}, or pass cosine_decay=False")
        differ = _settings_that_differ(state, self.settings)
        if differ:
            raise ValueError(f"checkpoint {path} holds a run with other settings: {'; '.join(differ)}. "
                             "Resume it with the saved settings, or train into another checkpoint file")
        _check_contract(path, state, self.contract)
        _load_state(path, state, self.model, self.opt)
        self.history = state["losses"].tolist()
        try:
            self.gen.set_state(state["generator"].to("cpu"))  # generator states live on the CPU
        except (RuntimeError, TypeError, AttributeError) as err:
            raise ValueError(f"checkpoint {path} holds a random generator state that does not fit this "
                             f"run's {self.dev.type} generator (was it trained on another device?): {err}") from err
        for e, saved in zip(self.ema_params or (), state.get("ema", ())):
            e.copy_(saved)

    def save(self, step_done: int, losses):
        save_checkpoint(self.checkpoint, self.model, self.opt, step=step_done, losses=losses, generator=self.gen,
                        planned_steps=self.steps, ema=self.ema_params, settings=self.settings,
                        contract=self.contract)

    def interrupted(self, losses: list[float]):
        """Ctrl-C (or an interrupt raised inside a step): save the completed steps when it is safe, say where."""
        completed, steps, checkpoint = self.completed, self.steps, self.checkpoint
        if checkpoint is None:
            print(f"training interrupted after {completed} of {steps} steps; nothing was saved (pass "
                  "checkpoint=<file> to train to make an interrupted run resumable)", file=sys.stderr)
        elif self.updating:
            print(f"training interrupted while updating the weights at step {completed + 1} of {steps}: nothing "
                  f"was saved, the checkpoint {checkpoint} (if any) holds the last save", file=sys.stderr)
        else:
            if self.snapshot is not None:
                self.gen.set_state(self.snapshot)
            self.save(completed, losses[:completed])  # [:completed]: a loss flushed twice counts once
            print(f"training interrupted after {completed} of {steps} steps: saved them to the checkpoint "
                  f"{checkpoint}; call train again with the same arguments to resume from there", file=sys.stderr)

    def finish(self, history: list[float], seconds: float) -> TrainResult:
        """Save the last checkpoint (with the raw weights: a resumed run continues from them), then load the
        EMA weights into the model."""
        self.model.eval()
        if self.checkpoint is not None and self.steps > self.start:
            self.save(self.steps, history)
        if self.ema_params is not None:
            with torch.no_grad():
                for p, e in zip(self.params, self.ema_params):
                    p.copy_(e)
        return TrainResult(losses=np.asarray(history), seconds=seconds, device=str(self.dev),
                           steps_run=self.steps - self.start)


def _step_function(run: _Run, objective: Objective):
    """step(i) -> the loss of step i, still on the device: draw a batch, take its loss (under autocast when
    amp), backpropagate, set the cosine-decayed learning rate, take Adam's step, update the EMA."""
    model, opt, gen, dev, amp, batch_size = run.model, run.opt, run.gen, run.dev, run.amp, run.batch_size
    params, ema_params, ema, lr, steps = run.params, run.ema_params, run.ema, run.lr, run.steps
    cosine_decay, snapshots = run.cosine_decay, run.checkpoint is not None

    def step(i: int) -> torch.Tensor:
        if snapshots:
            run.snapshot = gen.get_state()  # a CPU copy of a few KB, no host sync
        batch = objective.draw(batch_size, gen, dev)
        with _amp_context(amp, dev):
            loss = objective.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cosine_decay:  # lr_i = lr (1 + cos(pi i / steps)) / 2, set by hand: no scheduler object per step
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        run.updating = True
        opt.step()
        if ema_params is not None:
            with torch.no_grad():
                decay = min(ema, (1 + i) / (10 + i))
                torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)
        run.completed, run.snapshot, run.updating = i + 1, None, False
        return loss.detach()

    return step


class _LossLog:
    """The losses: ``pending`` on the device, ``history`` read back; the flush (the loop's one host sync) checks
    them for NaN/inf, shows them in the progress bar, and saves a periodic checkpoint when one is due."""

    def __init__(self, run: _Run, log_every: int, progress: bool):
        self.run, self.history, self.pending = run, run.history, []
        self.last_mean: tuple[float, int] | None = None  # the mean loss of the last flush, over how many steps
        self.bar = ProgressBar(run.steps, initial=run.start, desc=f"training on {run.dev.type}", enabled=progress)

    def flush(self, checkpoint_every: int | None):
        run, n, completed = self.run, len(self.pending), self.run.completed
        chunk = torch.stack(self.pending).float().cpu().numpy()
        _raise_if_nonfinite(chunk, completed - n, run.steps)
        self.history.extend(chunk.tolist())
        self.pending.clear()
        self.last_mean = float(chunk.mean()), n
        self.bar.update(n, f"loss={self.last_mean[0]:.4f}")
        if run.checkpoint is not None and checkpoint_every and completed < run.steps and \
                completed // checkpoint_every > (completed - n) // checkpoint_every:
            run.save(completed, self.history)

    def unflushed(self) -> list[float]:
        """The history with the losses still on the device (after an interrupt)."""
        return self.history + (torch.stack(self.pending).float().cpu().tolist() if self.pending else [])

    def close(self, stopped: str | None = None):
        """End the progress bar, leaving one line: what was trained, how long it took and the last loss shown,
        or where the run ``stopped`` and why."""
        if self.bar.closed:
            return
        run, took = self.run, seconds_text(self.bar.elapsed)
        if stopped is not None:
            line = f"training stopped at step {run.completed} of {run.steps} after {took} ({stopped})"
        elif run.start == run.steps:
            line = f"nothing to train: the checkpoint holds all {run.steps} steps"
        else:
            done = run.steps - run.start
            resumed = f" (resumed at step {run.start} of {run.steps})" if run.start else ""
            line = f"trained {done} steps{resumed} in {took} on {run.dev.type}"
            if self.last_mean is not None:
                line += f", loss {self.last_mean[0]:.4f} (mean of the last {self.last_mean[1]} steps)"
        self.bar.close(line)


def _run_contract(model: nn.Module, objective: Objective) -> dict[str, str]:
    """The fingerprint of what a run trains: the objective, and the model's attributes named in MODEL_CONTRACT
    (those it has). The model's own modules and tensors, when the objective holds them, count as constants:
    the checkpoint holds the weights apart, and they change as it trains."""
    skip = [*model.modules(), *model.parameters(), *model.buffers()]
    contract = fingerprint(objective, "objective", skip)
    for name in MODEL_CONTRACT:
        try:
            value = getattr(model, name)
        except Exception:  # an attribute it does not have, or a property that cannot be read: nothing declared
            continue
        contract.update(fingerprint(value, f"model.{name}", skip))
    return contract


def _check_contract(path, state: dict, contract: dict[str, str]) -> None:
    """Refuse to resume a checkpoint trained on another objective or with a model of another contract,
    naming each part that differs (saved and given); warn for a checkpoint that holds no contract."""
    saved = state.get("contract")
    if saved is None:
        warnings.warn(f"checkpoint {path} holds no fingerprint of its objective and model (it was written before "
                      "fmlearn stored one), so it cannot be checked that it was trained on the objective given; "
                      "resuming it, and saving the fingerprint with it from now on", UserWarning, stacklevel=5)
        return
    if not (isinstance(saved, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in saved.items())):
        raise ValueError(f"checkpoint {path} holds a contract that is not a dict of texts ({type(saved).__name__}): "
                         "it was not written by fmlearn.train")
    differ = differences(saved, contract)
    if differ:
        raise ValueError(f"checkpoint {path} was trained on another objective or model than the ones given: "
                         f"{'; '.join(differ)}. Resume it with the objective and model it was trained with, or "
                         "train into another checkpoint file")


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
                    planned_steps: int | None = None, ema: list | None = None, settings: dict | None = None,
                    contract: dict[str, str] | None = None) -> None:
    """Save training state to ``path`` atomically (write a temporary file, then rename).

    ``settings``: a dict of numbers (and None) that a resumed run must repeat; :func:`train` stores its
    batch_size, lr, seed and ema there. ``contract``: a dict of texts, the fingerprint of the objective and
    the model's declared contract that a resumed run must repeat (see the module docstring)."""
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
    if contract is not None:
        state["contract"] = dict(contract)
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
