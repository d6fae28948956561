"""Forbidding the fmlearn functions that answer a task, while the learner's answer to that task runs.

Many tasks rebuild something fmlearn already has (``Sphere.exp``, an RK4 step, the exact divergence): a one-line
call into the package would pass the check without the learner writing anything. While :func:`forbidding` is
active, each named function raises :class:`ForbiddenCall` instead of running, however it is reached: through the
module, a class, an instance's bound method, or a reference the caller saved before (the function object's
``__code__`` is swapped for a raising one and swapped back afterwards). Every attempt is recorded, so one the
caller catches still counts.
"""

from __future__ import annotations

import contextlib
import importlib
import linecache
import threading
import warnings
from typing import Iterable, Iterator

from ._render import short_traceback

_HOOK = "__fmlearn_forbidden_hook__"
_lock = threading.RLock()
_patched: dict = {}  # function -> [original code, number of active contexts]
_active: dict = {}  # function -> [(record list, task description)] of the contexts that forbid it, in order of entry


class ForbiddenCall(Exception):
    """A task's answer called the fmlearn function that implements the task."""

    def __init__(self, name: str, what: str | None = None):
        self.name, self.what = name, what
        task = f"this task asks you to write {what} yourself" if what else "this task asks you to write it yourself"
        super().__init__(f"{task}; {name} is the course's answer: use it afterwards to check yours")

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for it: the message and the learner's line that made the call, not fmlearn's code."""
        return short_traceback(self)


def _resolve(name: str):
    """The function object a dotted name denotes ("fmlearn.solvers.odeint", "fmlearn.manifolds.sphere.Sphere.exp"):
    the longest importable module prefix, then attributes (a class's own function for a method)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = obj.__dict__[attr] if isinstance(obj, type) and attr in obj.__dict__ else getattr(obj, attr)
        obj = getattr(obj, "__func__", obj)  # a classmethod or staticmethod
        if not hasattr(obj, "__code__"):
            raise TypeError(f"{name} is a {type(obj).__name__}, not a Python function: it cannot be forbidden")
        return obj
    raise ImportError(f"no module in {name!r} can be imported")


def _raising_code(fn, name: str):
    """A code object that raises ForbiddenCall(name) for any arguments, with fn's number of free variables (a
    function's ``__code__`` may only be swapped for one with as many) and fn's name in tracebacks."""
    free = [f"_v{i}" for i in range(len(fn.__code__.co_freevars))]
    body = "        return %r(args, kwargs)\n" % _HOOK
    if free:
        body += "        " + ", ".join(free) + "\n"  # after the return: never read, but it makes them free variables
    source = ("def _outer():\n" + (f"    {' = '.join(free)} = None\n" if free else "") +
              "    def _forbidden(*args, **kwargs):\n" + body + "    return _forbidden\n")
    filename = f"<forbidden {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for tracebacks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # "'str' object is not callable": the hook replaces it
        outer = compile(source, filename, "exec").co_consts[0]
    code = next(c for c in outer.co_consts if hasattr(c, "co_code"))

    def hook(args, kwargs):
        with _lock:
            contexts = list(_active.get(fn, ()))
        for record, _ in contexts:
            record.append(name)
        raise ForbiddenCall(name, contexts[-1][1] if contexts else None)

    consts = tuple(hook if c == _HOOK else c for c in code.co_consts)
    return code.replace(co_consts=consts, co_name=fn.__code__.co_name, co_qualname=fn.__code__.co_qualname)


@contextlib.contextmanager
def forbidding(names: Iterable[str], what: str | None = None) -> Iterator[list[str]]:
    """While active, calling any of the functions ``names`` (dotted paths) raises :class:`ForbiddenCall`.

    Args:
        names: dotted names of Python functions or methods ("fmlearn.solvers.odeint",
            "fmlearn.manifolds.sphere.Sphere.exp").
        what: what the task asks for ("an RK4 step"), for the message.

    Yields the list of attempted names, in order: it grows by one at each attempt, even one the caller caught.
    Nested and concurrent contexts may forbid the same function; it runs again once the last of them exits.
    """
    names = tuple(names)
    functions = list({_resolve(n): n for n in reversed(names)}.items())[::-1]  # each function once
    record: list[str] = []
    entered = []
    try:
        with _lock:
            for fn, name in functions:
                if fn in _patched:
                    _patched[fn][1] += 1
                else:
                    _patched[fn] = [fn.__code__, 1]
                    fn.__code__ = _raising_code(fn, name)
                _active.setdefault(fn, []).append((record, what))
                entered.append(fn)
        yield record
    finally:
        with _lock:
            for fn in entered:
                _active[fn] = [c for c in _active[fn] if c[0] is not record]
                if not _active[fn]:
                    del _active[fn]
                _patched[fn][1] -= 1
                if _patched[fn][1] == 0:
                    fn.__code__ = _patched.pop(fn)[0]


def guarded(fn, names: Iterable[str], what: str | None = None):
    """``fn`` made to run under :func:`forbidding`: a call that tried a forbidden function fails with
    :class:`ForbiddenCall`, even when ``fn`` caught it and went on."""
    names = tuple(names)
    if not names:
        return fn

    def call(*args, **kwargs):
        with forbidding(names, what) as attempts:
            try:
                out = fn(*args, **kwargs)
            except ForbiddenCall:
                raise
            except BaseException as err:
                if attempts:
                    raise ForbiddenCall(attempts[0], what) from err
                raise
        if attempts:
            raise ForbiddenCall(attempts[0], what)
        return out

    call.__name__ = getattr(fn, "__name__", "answer")
    call.__wrapped__ = fn
    return call


__all__ = ["ForbiddenCall", "forbidding", "guarded"]
