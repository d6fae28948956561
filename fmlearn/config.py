"""Budget, device and seeding: the three switches every notebook sets first.

* ``FMLEARN_QUICK=1`` (set by the test command) shrinks every training run so a
  notebook executes in about a minute on 2 CPU cores.
* ``FMLEARN_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``...) overrides the automatic
  choice, which is CUDA when present and the CPU otherwise.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np
import torch

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_quick() -> bool:
    """True when ``FMLEARN_QUICK`` asks for quick mode (the small budget CI runs the notebooks with)."""
    raw = os.environ.get("FMLEARN_QUICK", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"FMLEARN_QUICK must be one of 0/1/true/false, got {raw!r}")


def budget(default: Any, quick: Any) -> Any:
    """Return ``quick`` in quick mode and ``default`` otherwise.

    Used for every knob that trades run time for quality (steps, sample counts)
    and for the thresholds that go with them, so both live side by side.
    """
    return quick if is_quick() else default


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to compute on: ``device`` if given, else ``FMLEARN_DEVICE``,
    else CUDA when available, else the CPU."""
    choice = device if device is not None else os.environ.get("FMLEARN_DEVICE", "").strip()
    if not choice:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(choice)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {choice!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} asks for CUDA, but torch sees no CUDA device on this machine")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a CPU generator
    seeded the same way, for code that takes an explicit ``generator``."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def show_progress() -> bool:
    """Whether long loops show a progress bar: ``FMLEARN_PROGRESS`` (1/0) if set, else yes unless ``CI`` is set.

    A notebook executed headless (CI, ``jupyter nbconvert --execute``) keeps a bar's first frame
    ("0%| 0/3000") as its stored output; ``make test`` sets ``FMLEARN_PROGRESS=0``.
    """
    raw = os.environ.get("FMLEARN_PROGRESS", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE - {""}:
        return False
    if raw:
        raise ValueError(f"FMLEARN_PROGRESS must be one of 0/1/true/false, got {raw!r}")
    return os.environ.get("CI", "").strip().lower() in _FALSE


def threads_note() -> str:
    """How torch's CPU threads wait between kernels: ``"sleeping"`` when ``OMP_WAIT_POLICY=PASSIVE`` (set by
    ``make lab``/``make test``, environment.yml, and by importing fmlearn before torch) or torch runs one
    thread, else ``"busy-waiting"`` (fast on an idle machine, ~100x slower beside any other CPU load)."""
    if torch.get_num_threads() == 1 or os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        return "sleeping"
    return "busy-waiting"


def mode_name() -> str:
    """``"quick mode"`` or ``"default budget"``, as the notebooks print it."""
    return "quick mode" if is_quick() else "default budget"


def machine_load() -> tuple[float, int] | None:
    """(load average over the last minute, number of CPU cores) of this machine, or None where the system keeps no
    load average (Windows). A load above the core count means programs queue for the CPU."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return load, os.cpu_count() or 1


def load_note() -> str:
    """Empty on a machine with a core free; on a busy one (load average above its cores), what that can do to the
    run time and what to do about it."""
    measured = machine_load()
    if measured is None or measured[0] <= measured[1]:
        return ""
    load, cores = measured
    return (f"the machine is busy (load {load:.1f} on {cores} core{'s' if cores != 1 else ''} over the last "
            "minute): other programs share the CPU, which can make a chapter several times slower than its header "
            "says; close other notebooks and programs (top lists them) or run it when the machine is idle: the "
            "numbers do not depend on the speed")


def run_time(start: float) -> str:
    """The line a chapter prints last: how long it ran since ``start`` (a ``time.perf_counter()`` reading) and in
    which mode, followed by :func:`load_note` when the machine is busy."""
    line = f"this run took {time.perf_counter() - start:.0f} s ({mode_name()})"
    note = load_note()
    return f"{line}; {note}" if note else line


def describe() -> str:
    """One line a notebook prints at the top: mode, device (and CPU threads), torch version; and a warning when the
    machine is already busy (:func:`load_note`)."""
    dev = get_device()
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        threads = torch.get_num_threads()
        name = f"{threads} CPU thread{'s' if threads != 1 else ''}, {threads_note()} when idle"
    line = f"fmlearn: {mode_name()}; device {dev} ({name}); torch {torch.__version__}"
    measured = machine_load()
    if measured is not None and measured[0] > measured[1]:
        line += (f"\nnote: the machine is busy already (load {measured[0]:.1f} on {measured[1]} cores): this chapter "
                 "will run slower than its header says")
    return line
