"""The process that runs one submission's own cells (started by :class:`fmlearn.grading.sandbox.Sandbox`).

It confines itself first (:func:`fmlearn.grading._confine.confine`), then serves the grader's requests, one
at a time, over two pipes (:mod:`fmlearn.grading._channel`):

    exec   run one of the submission's cells (IPython syntax, so ``%magic`` lines and ``get_ipython()`` work)
    names  say, for each name, whether the submission defines it, and whether it is a function or a value
    call   call one of the submission's functions on the grader's arguments, with the fmlearn functions that
           answer the task forbidden (:mod:`fmlearn.exercises._forbid`); return its result, or which of the
           arguments it changed in place (nothing is copied back onto the grader's objects unless the task
           declares the argument in-place), or which forbidden function it tried

The grader's functions and objects among the arguments arrive as :class:`Remote` stand-ins: calling one sends
a callback to the grader, which runs the real one and answers; with gradients on, the call is a
``torch.autograd.Function`` whose backward asks the grader for the vector-Jacobian product. While the grader
answers a callback it may send a request of its own (a test's lambda that calls the submission's function);
it is served first. Nothing here decides a score: the grader runs the tests, and everything this process says
is only data.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import linecache
import pickle
import sys

_NS: dict = {}  # the submission's globals
_FDS: list = []  # the channel: [read end, write end]
_SHELL: list = []  # the IPython shell that runs the submission's cells


def lookup(name: str):
    """The submission's object ``name`` (a grader-side stand-in for a submission's function unpickles to this)."""
    if name not in _NS:
        raise NameError(f"name {name!r} is not defined")
    return _NS[name]


class Remote:
    """One of the grader's objects, as the submission holds it: its public plain attributes (``num_classes``)
    and nothing else; setting an attribute changes only this copy."""

    def __init__(self, ref: int, attrs: dict):
        self.__dict__.update(attrs)
        object.__setattr__(self, "_remote", ref)

    def __repr__(self) -> str:
        return "<the grader's object>"

    def __reduce_ex__(self, protocol):
        raise TypeError("the grader's objects stay in the grader: they cannot be pickled or copied")


class RemoteCallable(Remote):
    """One of the grader's functions or callable objects: calling it runs the real one in the grader."""

    def __call__(self, *args, **kwargs):
        return _invoke(self._remote, args, kwargs)

    def __repr__(self) -> str:
        return "<the grader's function>"


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        kind, ref, is_callable, attrs = pid
        if kind != "remote":
            raise pickle.UnpicklingError(f"unknown reference {kind!r}")
        return (RemoteCallable if is_callable else Remote)(ref, attrs)


def _loads(payload: bytes):
    import io

    return _Unpickler(io.BytesIO(payload)).load()  # noqa: S301 - from the grader, which this process trusts


def _callback(message: dict):
    """Send ``message`` (a callback or a vector-Jacobian request) to the grader and return its answer's value,
    serving any request the grader sends meanwhile."""
    from ._channel import pack, recv_frame, send_frame

    rfd, wfd = _FDS
    send_frame(wfd, pack(message))
    while True:
        answer = _loads(recv_frame(rfd))
        if "op" not in answer:
            break
        _serve(answer)
    if not answer["ok"]:
        cls = getattr(builtins, answer["type"], None)
        raise (cls if isinstance(cls, type) and issubclass(cls, Exception) else RuntimeError)(answer["message"])
    return answer


def _invoke(ref: int, args: tuple, kwargs: dict):
    import torch

    from ._channel import tensors

    inputs = [t for t in tensors((args, kwargs)) if t.requires_grad] if torch.is_grad_enabled() else []
    answer = _callback({"op": "callback", "ref": ref, "args": args, "kwargs": kwargs, "track": bool(inputs)})
    value, graph = answer["value"], answer.get("graph")
    if graph is None:
        return value
    outputs = _through().apply(graph, value if isinstance(value, tuple) else (value,), *inputs)
    return outputs if isinstance(value, tuple) else outputs[0]


@functools.cache
def _through():
    """The autograd function of a call through a :class:`RemoteCallable` with gradients on (defined on first use,
    as torch is imported only once the process is confined)."""
    import torch
    from torch.autograd.function import once_differentiable

    class Through(torch.autograd.Function):
        @staticmethod
        def forward(ctx, graph, outputs, *inputs):
            ctx.graph = graph
            return tuple(outputs)

        @staticmethod
        @once_differentiable
        def backward(ctx, *grads):
            answer = _callback({"op": "vjp", "graph": ctx.graph, "grads": list(grads)})
            return (None, None, *answer["value"])

    return Through


def _where(err: BaseException) -> str | None:
    tb, where = err.__traceback__, None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith("<cell "):
            line = linecache.getline(code.co_filename, tb.tb_lineno).strip()
            where = f"{code.co_filename[1:-1]}, line {tb.tb_lineno}" + (f": {line}" if line else "")
        tb = tb.tb_next
    return where


def _error(err: BaseException) -> dict:
    """The submission's exception as short plain data (the grader cuts it again: type 60, message 200)."""
    base = next(c for c in type(err).__mro__ if c.__module__ == "builtins")
    try:
        message = str(err)
    except Exception:  # noqa: BLE001 - a student's exception whose __str__ fails
        message = "(unprintable)"
    lines = message.strip().splitlines()
    return {"type": type(err).__name__[:60], "base": base.__name__, "message": lines[0][:200] if lines else "",
            "where": _where(err)}


def _exec(req: dict, shell) -> dict:
    name = f"<cell {req['cell']}>"
    source = shell.transform_cell(req["source"])
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    exec(compile(source, name, "exec"), _NS)  # noqa: S102 - this process exists to run the submission
    return {"ok": True}


def _names(req: dict) -> dict:
    from ._channel import pack

    out = {}
    for name in req["names"]:
        if name not in _NS:
            out[name] = {"kind": "missing"}
        elif callable(_NS[name]):
            out[name] = {"kind": "callable"}
        else:
            try:
                pack(_NS[name])
                out[name] = {"kind": "value", "value": _NS[name]}
            except TypeError as err:
                out[name] = {"kind": "unsupported", "type": str(err)}
    return {"ok": True, "names": out}


def _state(arg):
    """A copy of a tensor or array argument, to tell afterwards whether the submission changed it in place."""
    import numpy as np
    import torch

    if isinstance(arg, torch.Tensor):
        return arg.detach().clone()
    if isinstance(arg, np.ndarray):
        return arg.copy()
    return None


def _change(before, arg) -> dict | None:
    """How ``arg`` differs from its copy ``before``: its shape now and the largest change (None: unchanged)."""
    import numpy as np
    import torch

    now = arg.detach() if isinstance(arg, torch.Tensor) else arg
    if before.shape == now.shape and before.dtype == now.dtype and \
            (torch.equal(before, now) if isinstance(now, torch.Tensor) else np.array_equal(before, now)):
        return None
    change = None
    if before.shape == now.shape:
        with contextlib.suppress(TypeError, ValueError, RuntimeError):  # values that do not subtract (bool)
            change = float(abs(np.asarray(now, np.float64) - np.asarray(before, np.float64)).max(initial=0.0))
    return {"shape": list(now.shape), "change": change}


def _call(req: dict) -> dict:
    """Call the submission's function under the task's forbidding; report an attempt at a forbidden function
    (even one it caught), else the arguments it changed in place, else its value (with the new values of the
    arguments the task declares in-place)."""
    import torch

    fn = lookup(req["name"])
    args, kwargs = req["args"], req["kwargs"]
    slots = list(enumerate(args)) + list(kwargs.items())
    before = {key: _state(arg) for key, arg in slots}
    forbid = req.get("forbid") or ()
    if forbid:
        from fmlearn.exercises._forbid import forbidding

        guard = forbidding(forbid, req.get("what"))
    else:
        guard = contextlib.nullcontext([])
    with torch.set_grad_enabled(req["grad"]), guard as attempts:
        try:
            value = fn(*args, **kwargs)
        except BaseException:
            if attempts:
                return {"ok": False, "forbidden": attempts[0]}
            raise
    if attempts:
        return {"ok": False, "forbidden": attempts[0]}
    declared = req.get("inplace") or ()
    changes = {key: c for key, arg in slots if before[key] is not None and (c := _change(before[key], arg))}
    undeclared = [[key, c] for key, c in changes.items() if key not in declared]
    if undeclared:
        return {"ok": False, "changed": undeclared}
    return {"ok": True, "value": value, "mirror": [[key, dict(slots)[key]] for key in changes]}


def _serve(req: dict) -> None:
    """Answer one of the grader's requests."""
    from ._channel import pack, send_frame

    try:
        reply = {"exec": lambda r: _exec(r, _SHELL[0]), "names": _names, "call": _call}[req["op"]](req)
    except BaseException as err:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from the submission too
        reply = {"ok": False, "error": _error(err)}
    try:
        payload = pack({"id": req["id"], **reply})
    except Exception as err:  # noqa: BLE001 - a value of a type the grader does not take, or one that breaks
        payload = pack({"id": req["id"], "ok": False, "unsupported": str(err).strip()[:200]})
    send_frame(_FDS[1], payload)


def main(config: str) -> None:
    cfg = json.loads(config)
    from ._confine import confine

    applied = confine(cfg["scratch"], cfg["read"], cfg["memory_mb"], cfg["cpu_seconds"], cfg["file_mb"])
    sys.dont_write_bytecode = True
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from ._channel import pack, recv_frame, send_frame

    settings = Config()
    settings.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=settings)
    global _NS
    _NS = shell.user_ns
    _SHELL.append(shell)
    _FDS.extend(cfg["fds"])
    send_frame(_FDS[1], pack({"ok": True, "confinement": applied}))
    while True:
        req = _loads(recv_frame(_FDS[0]))
        if req["op"] == "bye":
            return
        _serve(req)
