"""What an object is, by what declares it (its class and its parameters), not by its identity.

:func:`fingerprint` flattens an object into a dict of short texts, one entry per declared part, e.g. for
``CFMObjective(AffineGaussianPath("condot"), GaussianMixture.symmetric_2d())``::

    objective                       CFMObjective
    objective.path                  AffineGaussianPath
    objective.path.schedule         CondOT
    objective.data                  GaussianMixture
    objective.data.means            tensor float32 (11, 2) #5c0e9a41d2f3
    objective.source                None
    objective.time_sampler          uniform_time
    ...

Two objects built the same way (another instance, another device) give the same dict; the training loop
stores it in a checkpoint and compares it entry by entry on resume (:func:`differences`). A dict of str keeps
the checkpoint loadable with ``torch.load(weights_only=True)``.

The rules, first match wins:

- an object with a ``fingerprint()`` method: what it returns (a str, or a dict of parts described by these rules);
- None, bool, int, float, a short str: its repr; a torch dtype, an enum: its str;
- a tensor or NumPy array: dtype, shape and a hash of the values (the same on every device);
- one of ``skip`` (the model being trained and its tensors, whose weights the checkpoint holds apart):
  a constant text;
- a torch.nn.Module: its class and a hash of its state_dict;
- a class: its qualified name; a function: its qualified name and the values it closes over (those of
  :func:`~fmlearn.objectives.logit_normal_time`: its mean and std); a bound method: its class and name;
  a ``functools.partial``: its function, args and keywords;
- a list, tuple or dict: item by item (``name[0]``, ``name[key]``); more than ``MAX_ITEMS``: one hash;
- a generator or a device: its type only (generator states and devices are checked apart);
- any other object: its class, then its public instance attributes (``vars(obj)``, names without a leading
  "_": caches and private state do not count), to a depth of ``MAX_DEPTH``.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import types
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

MAX_DEPTH = 6
MAX_ITEMS = 16
_PLAIN = (type(None), bool, int, float, complex)
_LONG_STR = 80


def _digest(*chunks: bytes) -> str:
    h = hashlib.blake2b(digest_size=6)
    for c in chunks:
        h.update(c)
    return "#" + h.hexdigest()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    return t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _describe_tensor(t: torch.Tensor) -> str:
    dtype = str(t.dtype).replace("torch.", "")
    return f"tensor {dtype} {tuple(t.shape)} {_digest(_tensor_bytes(t))}"


def _describe_module(m: nn.Module) -> str:
    parts = [f"{k}={_describe_tensor(v)}".encode() for k, v in m.state_dict().items()]
    return f"{type(m).__name__} weights {_digest(*parts)}"


def _leaf(obj: Any) -> str | None:
    """The text of an object described in one entry, or None for one described part by part."""
    if isinstance(obj, _PLAIN):
        return repr(obj)
    if isinstance(obj, str):
        return repr(obj) if len(obj) <= _LONG_STR else f"str of {len(obj)} {_digest(obj.encode())}"
    if isinstance(obj, (torch.dtype, enum.Enum)):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return _describe_tensor(obj)
    if isinstance(obj, np.ndarray):
        return f"array {obj.dtype} {obj.shape} {_digest(np.ascontiguousarray(obj).tobytes())}"
    if isinstance(obj, (torch.Generator, torch.device)):
        return type(obj).__name__
    if isinstance(obj, nn.Module):
        return _describe_module(obj)
    if isinstance(obj, types.MethodType):
        return f"{type(obj.__self__).__name__}.{obj.__func__.__name__}"
    if isinstance(obj, (types.BuiltinFunctionType, type)):
        return getattr(obj, "__qualname__", type(obj).__name__)
    return None


def _walk(obj: Any, name: str, out: dict, skip: set, depth: int, seen: tuple) -> None:
    if id(obj) in skip:
        out[name] = "the model being trained"
        return
    if callable(getattr(obj, "fingerprint", None)) and not isinstance(obj, type):
        own = obj.fingerprint()
        if isinstance(own, dict):
            out[name] = type(obj).__name__
            for k, v in own.items():
                _walk(v, f"{name}.{k}", out, skip, depth + 1, seen + (id(obj),))
        else:
            out[name] = str(own)
        return
    text = _leaf(obj)
    if text is not None:
        out[name] = text
        return
    if id(obj) in seen or depth >= MAX_DEPTH:
        out[name] = f"{type(obj).__name__} (not described further)"
        return
    seen = seen + (id(obj),)
    if isinstance(obj, types.FunctionType):  # its name, and the values it closes over
        out[name] = obj.__qualname__
        for k, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
            _walk(cell.cell_contents, f"{name}.{k}", out, skip, depth + 1, seen)
        return
    if isinstance(obj, functools.partial):
        out[name] = "partial"
        for k, v in (("func", obj.func), ("args", obj.args), ("keywords", obj.keywords)):
            _walk(v, f"{name}.{k}", out, skip, depth + 1, seen)
        return
    if isinstance(obj, (list, tuple, dict)):
        items = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj))
        parts = {}
        for k, v in items:
            _walk(v, f"{name}[{k!r}]" if isinstance(obj, dict) else f"{name}[{k}]", parts, skip, depth + 1, seen)
        if len(items) > MAX_ITEMS:
            out[name] = f"{type(obj).__name__} of {len(items)} {_digest(repr(sorted(parts.items())).encode())}"
        else:
            out[name] = f"{type(obj).__name__} of {len(items)}"
            out.update(parts)
        return
    out[name] = type(obj).__name__
    for k, v in sorted(getattr(obj, "__dict__", {}).items()):
        if not k.startswith("_"):
            _walk(v, f"{name}.{k}", out, skip, depth + 1, seen)


def fingerprint(obj: Any, name: str, skip: Iterable[Any] = ()) -> dict[str, str]:
    """``{name: class, name.part: text, ...}``: the object described by its declared parts (module docstring);
    the objects in ``skip`` (compared by identity) are described by a constant text."""
    out: dict[str, str] = {}
    _walk(obj, name, out, {id(o) for o in skip}, 0, ())
    return out


def differences(saved: dict[str, str], given: dict[str, str], most: int = 6) -> list[str]:
    """'part: saved ..., given ...' for each entry that differs, leaving out the parts of a part that differs
    (another class has other parameters); at most ``most`` lines and a count of the rest."""
    keys = list(saved) + [k for k in given if k not in saved]
    differ = [k for k in keys if saved.get(k) != given.get(k)]
    top = [k for k in differ if not any(k != p and k.startswith(p) and k[len(p)] in ".[" for p in differ)]
    lines = [f"{k}: saved {saved.get(k, '(absent)')}, given {given.get(k, '(absent)')}" for k in top[:most]]
    if len(top) > most:
        lines.append(f"and {len(top) - most} more")
    return lines


__all__ = ["MAX_DEPTH", "MAX_ITEMS", "differences", "fingerprint"]
