"""The process that runs one submission's own cells (started by :class:`fmlearn.grading.sandbox.Sandbox`).

It confines itself first (:func:`fmlearn.grading._confine.confine`), then serves the grader's requests, one
at a time, over two pipes (:mod:`fmlearn.grading._channel`):

    exec   run one of the submission's cells (IPython syntax, so ``%magic`` lines and ``get_ipython()`` work)
    names  say, for each name, whether the submission defines it, and whether it is a function or a value
    call   call one of the submission's functions on the grader's arguments; return its result, and the
           arguments it changed in place (tensors, arrays, and the simple attributes of an object such as a
           model's call counter), so that the grader's checks see them as a notebook would

Nothing here decides a score: the grader runs the tests, and everything this process says is only data.
"""

from __future__ import annotations

import json
import linecache
import pickle
import sys
import types

_NS: dict = {}  # the submission's globals
_SIMPLE = (bool, int, float, str)
_NOT_OBJECTS = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType, type)


def _lookup(name: str):
    """The submission's object ``name`` (a grader-side stand-in for a submission's function unpickles to this)."""
    if name not in _NS:
        raise NameError(f"name {name!r} is not defined")
    return _NS[name]


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
    base = next(c for c in type(err).__mro__ if c.__module__ == "builtins")
    try:
        message = str(err)
    except Exception:  # noqa: BLE001 - a student's exception whose __str__ fails
        message = "(unprintable)"
    return {"type": type(err).__name__, "base": base.__name__, "message": message[:4000], "where": _where(err)}


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
    import numpy as np
    import torch

    if isinstance(arg, torch.Tensor):
        return arg.detach().clone()
    if isinstance(arg, np.ndarray):
        return arg.copy()
    attrs = getattr(arg, "__dict__", None)
    if isinstance(attrs, dict) and not isinstance(arg, _NOT_OBJECTS):  # a model, not a function or a module
        return {k: v for k, v in attrs.items() if type(v) in _SIMPLE}
    return None


def _changed(before, arg):
    import numpy as np
    import torch

    if isinstance(before, torch.Tensor):
        same = before.shape == arg.shape and before.dtype == arg.dtype and torch.equal(before, arg.detach())
        return None if same else arg
    if isinstance(before, np.ndarray):
        return None if before.shape == arg.shape and np.array_equal(before, arg) else arg
    if isinstance(before, dict):
        now = {k: v for k, v in vars(arg).items() if type(v) in _SIMPLE}
        diff = {k: v for k, v in now.items() if k in before and before[k] != v}
        return {"$attrs": diff} if diff else None
    return None


def _call(req: dict) -> dict:
    import torch

    fn = _lookup(req["name"])
    args, kwargs = req["args"], req["kwargs"]
    slots = list(enumerate(args)) + list(kwargs.items())
    before = {key: _state(arg) for key, arg in slots}
    with torch.set_grad_enabled(req["grad"]):
        value = fn(*args, **kwargs)
    changed = [[key, c] for key, arg in slots if before[key] is not None
               and (c := _changed(before[key], arg)) is not None]
    return {"ok": True, "value": value, "changed": changed}


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
    rfd, wfd = cfg["fds"]
    send_frame(wfd, pack({"ok": True, "confinement": applied}))
    while True:
        req = pickle.loads(recv_frame(rfd))  # noqa: S301 - from the grader, which this process trusts
        if req["op"] == "bye":
            return
        try:
            reply = {"exec": lambda r: _exec(r, shell), "names": _names, "call": _call}[req["op"]](req)
        except BaseException as err:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from the submission too
            reply = {"ok": False, "error": _error(err)}
        try:
            payload = pack({"id": req["id"], **reply})
        except Exception as err:  # noqa: BLE001 - a value of a type the grader does not take, or one that breaks
            payload = pack({"id": req["id"], "ok": False, "unsupported": str(err)[:500]})
        send_frame(wfd, payload)
