"""The narrow channel between the grader and a submission's process: two pipes, one frame per message.

A frame is an 8-byte big-endian length and that many bytes. The two directions differ on purpose:

- grader -> submission: a pickle of the standard library (:func:`dumps`). Data travels by value: tensors,
  arrays, numbers, strings, containers, and objects of classes importable from fmlearn, torch or numpy (a
  distribution, an ``fm.MLP``). Everything else stays on the grader's side and travels as a reference into a
  :class:`Registry`: functions, lambdas, bound methods, ``functools.partial``, classes and objects that are not
  importable from those libraries (a hidden test's own model), and objects whose class says ``_grader_side =
  True`` (a check's call-counting model). The submission's process unpickles a reference as a stand-in that
  calls back over the channel, so a hidden test's code, constants and closures never reach it: only the values
  it computes, at inputs the submission chooses. Only the submission's process unpickles, and it trusts the
  grader.
- submission -> grader: data only, never a pickle (:func:`pack`). A 4-byte length, a JSON header, then the raw
  bytes of each array it names. The grader rebuilds plain Python values (None, bool, int, float, complex, str,
  and lists, tuples and str-keyed dicts of them) and tensors and arrays of a numeric dtype from a fixed list,
  checking that each array's shape and dtype account for exactly its bytes (``np.frombuffer``, no
  ``np.load``, no object arrays). A float subclass, a tensor subclass or a patched ``__eq__`` cannot cross:
  what arrives is a plain ``float`` or a plain ``torch.Tensor``. Replies, callbacks (the submission calling a
  stand-in) and vector-Jacobian requests (autograd through a stand-in) all travel this way.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import math
import os
import pickle
import select
import struct
import sys
import time
import types

import numpy as np

MAX_REPLY = 256 << 20  # bytes: a reply larger than this is refused
DTYPES = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
                    "complex64", "complex128"})
_MAX_DEPTH = 32


class ChannelError(Exception):
    """The submission's process closed the channel, broke its format, or did not answer in time."""


class ChannelClosed(ChannelError):
    """The submission's process closed its end (it exited or was killed)."""


class ChannelTimeout(ChannelError):
    """No complete answer before the deadline."""


# --- frames -------------------------------------------------------------------------------------------------

def _wait(fd: int, write: bool, deadline: float | None) -> None:
    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
        raise ChannelTimeout("no answer before the deadline")
    ready = select.select([], [fd], [], left) if write else select.select([fd], [], [], left)
    if not any(ready):
        raise ChannelTimeout("no answer before the deadline")


def send_frame(fd: int, payload: bytes, deadline: float | None = None) -> None:
    """Write one frame; with a deadline, ``fd`` must be non-blocking (the grader's end)."""
    data = memoryview(struct.pack(">Q", len(payload)) + payload)
    while data:
        if deadline is not None:
            _wait(fd, True, deadline)
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError) as err:
            raise ChannelClosed("the submission's process closed the channel") from err
        data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            _wait(fd, False, deadline)
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise ChannelClosed("the submission's process closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(fd: int, limit: int | None = None, deadline: float | None = None) -> bytes:
    (size,) = struct.unpack(">Q", _read_exact(fd, 8, deadline))
    if limit is not None and size > limit:
        raise ChannelError(f"a reply of {size} bytes (the limit is {limit})")
    return _read_exact(fd, size, deadline)


# --- the grader's requests: a pickle, with the grader's own objects left behind as references -----------------

LIBRARIES = frozenset({"fmlearn", "torch", "numpy", "builtins", "copyreg", "collections", "math", "operator",
                       "_operator", "functools", "_codecs"})
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodWrapperType, types.WrapperDescriptorType,
              types.MethodDescriptorType, types.ClassMethodDescriptorType)
_DATA = (type(None), bool, int, float, complex, str, bytes, bytearray, tuple, list, dict, set, frozenset, slice, range)
_PLAIN = (type(None), bool, int, float, str)


def importable(obj) -> bool:
    """Whether ``obj`` is the object its ``__module__`` and ``__qualname__`` name in one of :data:`LIBRARIES`
    (so that a pickle by reference names public code and carries nothing else)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if type(module) is not str or type(qualname) is not str or module.partition(".")[0] not in LIBRARIES \
            or "<" in qualname:
        return False
    found = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is obj


def _attributes(obj) -> dict:
    """The public attributes of plain value (numbers, strings) of a grader-side object, as the submission sees
    them (``model.num_classes``): its own and those of its classes that are not library classes."""
    found: dict = {}
    for cls in reversed(type(obj).__mro__):
        if getattr(cls, "__module__", "").partition(".")[0] not in ("builtins", "torch", "numpy"):
            found.update(vars(cls))
    found.update(getattr(obj, "__dict__", None) or {})
    return {k: v for k, v in found.items() if type(k) is str and not k.startswith("_") and type(v) in _PLAIN}


_NUMBERS = itertools.count()  # references and graphs are never numbered twice in one grader


class Registry:
    """The grader's objects the submission's process holds references to, and the autograd graphs of the calls
    it made through them with gradients on (kept for the vector-Jacobian products it may ask for). One request
    has one registry: a reference the submission kept from an earlier one no longer answers."""

    def __init__(self):
        self.objects: dict[int, object] = {}
        self.graphs: dict[int, tuple[list, list]] = {}
        self._refs: dict[int, int] = {}

    def ref(self, obj) -> int:
        if id(obj) not in self._refs:
            self._refs[id(obj)] = number = next(_NUMBERS)
            self.objects[number] = obj
        return self._refs[id(obj)]

    def keep(self, inputs: list, outputs: list) -> int:
        number = next(_NUMBERS)
        self.graphs[number] = (inputs, outputs)
        return number


class _Pickler(pickle.Pickler):
    def __init__(self, file, registry: Registry):
        super().__init__(file, protocol=5)
        self.registry = registry

    def persistent_id(self, obj):
        import torch

        if type(obj) in _DATA or isinstance(obj, (torch.Tensor, pickle.PickleBuffer)):
            return None
        if isinstance(obj, (types.MethodType, functools.partial)):
            return "remote", self.registry.ref(obj), True, {}
        if importable(obj):  # a library's function or class: pickled by its name
            return None
        if isinstance(obj, type) or isinstance(obj, _FUNCTIONS):
            return "remote", self.registry.ref(obj), True, {}
        if getattr(type(obj), "_grader_side", False) is True or not importable(type(obj)):
            return "remote", self.registry.ref(obj), callable(obj), _attributes(obj)
        return None


def dumps(value, registry: Registry) -> bytes:
    """The grader's ``value`` as a pickle in which the grader's own objects are references into ``registry``."""
    buffer = io.BytesIO()
    _Pickler(buffer, registry).dump(value)
    return buffer.getvalue()


def tensors(value) -> list:
    """The tensors in ``value`` (nested in lists, tuples and dict values), in the order :func:`pack` writes them:
    both sides of a call through a stand-in name the inputs of a vector-Jacobian product by this order."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors(v)]
    return []


# --- data: packed by the submission's process, unpacked by the grader -----------------------------------------

def pack(value) -> bytes:
    """Encode ``value`` (plain values, tensors, arrays, and lists, tuples, dicts of them) as JSON + raw bytes.

    Raises:
        TypeError: naming the first value of another type (a function, a module, an object of a class...).
    """
    blobs: list[bytes] = []
    header = json.dumps({"value": _encode(value, blobs, 0), "blobs": [len(b) for b in blobs]}).encode()
    return struct.pack(">I", len(header)) + header + b"".join(blobs)


def _array(arr: np.ndarray, tag: str, blobs: list, **extra) -> dict:
    arr = arr.astype(arr.dtype.newbyteorder("="), order="C", copy=False)  # (np.ascontiguousarray makes 0-d 1-d)
    if arr.dtype.name not in DTYPES:
        raise TypeError(f"an array of dtype {arr.dtype}")
    blobs.append(arr.tobytes())
    return {tag: len(blobs) - 1, "dtype": arr.dtype.name, "shape": list(arr.shape), **extra}


def _encode(v, blobs: list, depth: int):
    import torch

    if depth > _MAX_DEPTH:
        raise TypeError("a value nested too deeply")
    if v is None:
        return None
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, complex):
        return {"$complex": [v.real, v.imag]}
    if isinstance(v, torch.Tensor):
        t = v.detach().to_dense().cpu().resolve_conj().resolve_neg()
        bf16 = t.dtype == torch.bfloat16
        return _array((t.float() if bf16 else t).numpy(), "$tensor", blobs, grad=bool(v.requires_grad), bf16=bf16)
    if isinstance(v, np.ndarray):
        return _array(v, "$array", blobs)
    if isinstance(v, np.generic):
        return _array(np.asarray(v), "$scalar", blobs)
    if isinstance(v, (list, tuple)):
        items = [_encode(x, blobs, depth + 1) for x in v]
        return {"$tuple": items} if isinstance(v, tuple) else items
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {"$dict": {str(k): _encode(x, blobs, depth + 1) for k, x in v.items()}}
    raise TypeError(f"a {type(v).__module__}.{type(v).__qualname__}")


def unpack(payload: bytes):
    """The value :func:`pack` encoded, rebuilt from plain types only.

    Raises:
        ChannelError: for anything malformed (wrong lengths, unknown tags or dtypes, shapes that do not fit).
    """
    try:
        (n,) = struct.unpack(">I", payload[:4])
        header = json.loads(payload[4:4 + n])
        sizes = header["blobs"]
        if type(sizes) is not list or not all(type(s) is int and s >= 0 for s in sizes) or \
                4 + n + sum(sizes) != len(payload):
            raise ValueError("array sizes do not add up to the reply's length")
        blobs, at = [], 4 + n
        for s in sizes:
            blobs.append(payload[at:at + s])
            at += s
        return _decode(header["value"], blobs, 0)
    except ChannelError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, struct.error) as err:
        raise ChannelError(f"a malformed reply ({type(err).__name__}: {err})") from None


def _decode(v, blobs: list, depth: int):
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is list:
        return [_decode(x, blobs, depth + 1) for x in v]
    if type(v) is not dict:
        raise ValueError(f"unexpected {type(v).__name__}")
    if v.keys() == {"$tuple"} and type(v["$tuple"]) is list:
        return tuple(_decode(x, blobs, depth + 1) for x in v["$tuple"])
    if v.keys() == {"$dict"} and type(v["$dict"]) is dict:
        return {k: _decode(x, blobs, depth + 1) for k, x in v["$dict"].items()}
    if v.keys() == {"$complex"} and [type(x) for x in v["$complex"]] in ([float, float], [int, int]):
        return complex(*v["$complex"])
    for tag in ("$tensor", "$array", "$scalar"):
        if tag in v:
            return _decode_array(v, tag, blobs)
    raise ValueError(f"unknown entry {sorted(v)[:3]}")


def _decode_array(v: dict, tag: str, blobs: list):
    index, dtype, shape = v[tag], v["dtype"], v["shape"]
    if type(index) is not int or not 0 <= index < len(blobs) or dtype not in DTYPES:
        raise ValueError(f"bad array entry (dtype {dtype!r})")
    if type(shape) is not list or len(shape) > 32 or not all(type(s) is int and s >= 0 for s in shape):
        raise ValueError("bad array shape")
    dt = np.dtype(dtype)
    if math.prod(shape) * dt.itemsize != len(blobs[index]):
        raise ValueError(f"an array of shape {shape} and dtype {dtype} does not fill {len(blobs[index])} bytes")
    arr = np.frombuffer(blobs[index], dtype=dt).reshape(shape).copy()
    if tag == "$scalar":
        if arr.ndim:
            raise ValueError("a scalar with a shape")
        return arr[()]
    if tag == "$array":
        return arr
    import torch

    t = torch.from_numpy(arr)
    if v.get("bf16") is True:
        t = t.to(torch.bfloat16)
    if v.get("grad") is True and (t.is_floating_point() or t.is_complex()):
        t.requires_grad_(True)
    return t
