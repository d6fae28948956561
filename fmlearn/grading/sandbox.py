"""A submission's code in a process of its own, and its functions as the grader's tests see them.

:class:`Sandbox` starts ``python -I`` in a fresh scratch folder that holds only a copy of the submission, with
an environment reduced to what Python and torch need (plus ``FMLEARN_QUICK``), one CPU thread and no GPU, in a
session (process group) of its own that is killed at the end; in a bubblewrap jail where one works, and never
with root's uid (:mod:`fmlearn.grading._jail`). Its output goes to a file of the grader's with no name, read
back bounded. The child confines itself before it runs any of the submission's code
(:mod:`fmlearn.grading._confine`: resource limits, Landlock, seccomp) and then answers requests over two pipes
(:mod:`fmlearn.grading._channel`).

:class:`StudentFunction` stands, in the grader, for a function the submission defines: calling it sends the
arguments (data by value; the test's functions and objects as references the sandbox calls back through, see
:mod:`fmlearn.grading._channel`), and returns a plain copy of the result, validated on the way. Nothing the
function does to its arguments comes back: a change in place fails the call as the notebook's check would
(unless the task declares that argument in-place, :data:`IN_PLACE`), and a model's call counter counts the
calls the grader's model really received.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _jail
from ._channel import (MAX_REPLY, ChannelClosed, ChannelError, ChannelTimeout, Registry, dumps, recv_frame, send_frame,
                       tensors, unpack)
from ._sandbox import lookup

_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from fmlearn.grading._sandbox import main; main(sys.argv[2])"
_KEEP_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH")
_SIGNALS = {"SIGXCPU": "its CPU-time limit", "SIGXFSZ": "its file-size limit",
            "SIGKILL": "out of memory, or stopped by the grader", "SIGSEGV": "a crash"}
_JAILS = ("auto", "bubblewrap", "fallback")
_TAIL = 2000  # bytes of the process's output read back when it dies


@dataclass(frozen=True)
class Limits:
    """What one submission may use.

    timeout: seconds for one cell (one of the submission's own cells, or one test cell with the calls it makes);
    notebook_timeout: seconds for the whole submission; memory_mb: address space its process may add to what
    Python and torch map;
    file_mb: the largest file it may write; quick: run in the course's quick mode (``FMLEARN_QUICK=1``);
    start_timeout: seconds to start its process (importing torch); max_restarts: fresh processes after a crash
    or a timeout, each replaying the cells that ran before;
    jail: ``"bubblewrap"`` (a jail of its own, :mod:`fmlearn.grading._jail`; an error where bubblewrap does not
    work), ``"fallback"`` (an ordinary process that confines itself) or ``"auto"`` (bubblewrap where it works);
    user: the uid or user name a submission runs as when the grader runs as root (never root itself; any other
    grader's submissions run as the grader's own uid)."""

    timeout: float = 60.0
    notebook_timeout: float = 600.0
    memory_mb: int = 4096
    file_mb: int = 64
    quick: bool = True
    start_timeout: float = 120.0
    max_restarts: int = 3
    jail: str = "auto"
    user: int | str = _jail.NOBODY

    def __post_init__(self):
        if self.jail not in _JAILS:
            raise ValueError(f"jail: expected one of {', '.join(_JAILS)}, got {self.jail!r}")
        if not (type(self.user) is int and self.user > 0 or type(self.user) is str and self.user):
            raise ValueError(f"user: expected a uid > 0 or a user name, got {self.user!r}")
        _jail.account(self.user)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, limit: int) -> str:
    """A string from the submission, safe to print: cut at ``limit`` characters, control characters (a terminal's
    escape sequences) removed."""
    return _CONTROL.sub("", text[:limit])


def _line(text: str, limit: int) -> str:
    """The first line of a string from the submission, plain (see :func:`printable`) and at most ``limit`` long."""
    lines = str(text).strip().splitlines()
    return printable(lines[0], limit) if lines else ""


IN_PLACE: frozenset[tuple[str, int | str]] = frozenset()
"""(function name, argument index or keyword) of the arguments a task's function is meant to change in place:
their new values are copied back onto the grader's objects. Any other change in place fails the call. No task
needs one today."""


class SandboxError(Exception):
    """The submission's process stopped answering: it exited, was killed, or broke the channel."""


class SandboxTimeout(SandboxError):
    """The submission's process did not answer before the deadline (it has been killed)."""


class SubmissionError(Exception):
    """An exception of the submission's code whose class is not one of Python's built-in exceptions."""


def _read_roots() -> list[str]:
    """The folders of this Python installation: the sandbox reads them (a jail binds them at their own paths)."""
    import site

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages(),
             os.path.dirname(os.path.realpath(sys.executable))}
    return sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)} | {p for p in paths if os.path.isdir(p)})


def _environment(scratch: Path, quick: bool) -> dict:
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=str(scratch), TMPDIR=str(scratch / "tmp"),
               MPLBACKEND="Agg", MPLCONFIGDIR=str(scratch / ".matplotlib"), XDG_CACHE_HOME=str(scratch / ".cache"),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", CUDA_VISIBLE_DEVICES="",
               FMLEARN_PROGRESS="0")
    if quick:
        env["FMLEARN_QUICK"] = "1"
    return env


class Sandbox:
    """One process running one submission's cells. Use as a context manager, or call :meth:`close`."""

    _depth = 0  # requests in progress: a test's function that the submission calls back may call the submission
    _registry: Registry  # the grader's objects the submission holds references to, during the outermost request

    def __init__(self, submission: Path, limits: Limits, deadline: float):
        """Start the process (in a jail when ``limits.jail`` allows, never as root).

        Raises:
            SandboxError: the process did not start or did not greet the grader in time.
            fmlearn.grading._jail.JailUnavailable: the jail asked for does not work here, or the grader runs as
                root and no unprivileged uid can run this Python.
        """
        import fmlearn

        package, roots = str(Path(fmlearn.__file__).resolve().parent), _read_roots()
        ident = _jail.identity(limits.user)
        self.route, line = _jail.route(limits.jail, ident, tuple(roots), package)
        self.scratch = Path(_jail.make_scratch(ident))
        startup = self.scratch / ".ipython" / "profile_default" / "startup"  # made here: IPython would copy a
        startup.mkdir(parents=True)  # README into it with shutil.copy, whose chmod the sandbox refuses
        (self.scratch / "tmp").mkdir()
        shutil.copyfile(submission, self.scratch / submission.name)
        for path in (startup.parents[1], startup.parent, startup, self.scratch / "tmp",
                     self.scratch / submission.name) if ident else ():
            os.chown(path, *ident)
        self._dead: str | None = None
        self._closed = False
        self._id = 0
        self._log = tempfile.TemporaryFile()  # its output: a file with no name, out of the submission's reach
        req_r, self._w = os.pipe()
        self._r, rep_w = os.pipe()
        jailed = self.route == "bubblewrap"
        home = _jail.PACKAGE_HOME if jailed else os.path.dirname(package)
        config = {"scratch": str(self.scratch), "read": [*roots, os.path.join(home, "fmlearn")],
                  "fds": [req_r, rep_w], "memory_mb": limits.memory_mb, "file_mb": limits.file_mb,
                  "cpu_seconds": int(limits.notebook_timeout) + 30}
        env = _environment(self.scratch, limits.quick)
        python = [sys.executable, "-I", "-c", _BOOT, home, json.dumps(config)]
        inner = _jail.bwrap_command(python, roots, package, str(self.scratch), env) if jailed else python
        try:
            self.proc = subprocess.Popen(
                _jail.command(inner, ident, [*roots, package]), cwd=self.scratch, env=env,
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(req_r, rep_w),
                start_new_session=True)
        except OSError as err:
            for fd in (req_r, rep_w, self._r, self._w):
                os.close(fd)
            self._log.close()
            _jail.remove_tree(str(self.scratch))
            raise SandboxError(f"the submission's process could not start ({err})") from None
        os.close(req_r)
        os.close(rep_w)
        os.set_blocking(self._w, False)
        os.set_blocking(self._r, False)
        try:  # a grader stopped while it waits (Ctrl-C, a worker's watchdog) leaves no process and no scratch folder
            hello = self._receive(min(deadline, time.monotonic() + limits.start_timeout))
        except BaseException:
            self.close()
            raise
        confinement = hello.get("confinement") if type(hello) is dict else None
        if type(confinement) is not list or not all(type(line) is str for line in confinement):
            self._fail("sent a malformed greeting")
        self.confinement: list[str] = [line, *confinement]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- requests ---------------------------------------------------------------------------------------------

    def _receive(self, deadline: float):
        try:
            return unpack(recv_frame(self._r, MAX_REPLY, deadline))
        except ChannelTimeout:
            self._fail("did not answer in time", timeout=True)
        except ChannelClosed:
            self._fail(self._death())
        except ChannelError as err:
            self._fail(f"broke the grader's channel ({err})")

    def _send(self, payload: bytes, deadline: float) -> None:
        try:
            send_frame(self._w, payload, deadline)
        except ChannelTimeout:
            self._fail("did not answer in time", timeout=True)
        except ChannelError:
            self._fail(self._death())

    def request(self, op: str, deadline: float, **fields) -> dict:
        """Send one request and wait (until ``deadline``, a ``time.monotonic()`` value) for its reply, answering
        the callbacks the submission makes meanwhile through the grader's objects it was handed.

        Raises:
            SandboxTimeout, SandboxError: when the process does not answer properly (it is then killed).
        """
        if self._dead:
            raise SandboxError(self._dead)
        self._id += 1
        ident = self._id
        if not self._depth:
            self._registry = Registry()
        self._depth += 1
        try:
            self._send(dumps({"id": ident, "op": op, **fields}, self._registry), deadline)
            while True:
                reply = self._receive(deadline)
                if type(reply) is not dict or reply.get("op") not in ("callback", "vjp"):
                    break
                self._send(self._answer(reply), deadline)
        finally:
            self._depth -= 1
        if type(reply) is not dict or reply.get("id") != ident or type(reply.get("ok")) is not bool:
            self._fail("answered out of turn")
        return reply

    def _answer(self, frame: dict) -> bytes:
        """Run the grader's object the submission called back through (or the backward pass of such a call);
        its answer, pickled as a request is (a value that does not pickle is an error)."""
        try:
            if frame["op"] == "vjp":
                return dumps({"ok": True, "value": self._vjp(frame)}, self._registry)
            ref, args, kwargs, track = frame.get("ref"), frame.get("args"), frame.get("kwargs"), frame.get("track")
            if type(args) is not tuple or type(kwargs) is not dict or type(track) is not bool:
                raise ValueError("a malformed callback")
            if type(ref) is not int or ref not in self._registry.objects:
                raise LookupError("a function of the grader's from an earlier call, no longer available")
            with torch.set_grad_enabled(track):
                value = self._registry.objects[ref](*args, **kwargs)
            outputs = value if isinstance(value, tuple) else (value,)
            inputs = [t for t in tensors((args, kwargs)) if t.requires_grad]
            graph = None
            if track and inputs and outputs and all(isinstance(o, torch.Tensor) and o.is_floating_point()
                                                     for o in outputs):
                graph = self._registry.keep(inputs, list(outputs))
            return dumps({"ok": True, "value": _detached(value), "graph": graph}, self._registry)
        except SandboxError:  # the grader's function called the submission, whose process then failed
            raise
        except Exception as err:  # noqa: BLE001 - the grader's function failed on the submission's inputs
            return dumps({"ok": False, "type": type(err).__name__, "message": _line(str(err), 200)}, self._registry)

    def _vjp(self, frame: dict) -> list:
        graph, grads = frame.get("graph"), frame.get("grads")
        if type(graph) is not int or graph not in self._registry.graphs or type(grads) is not list:
            raise ValueError("a malformed request for a vector-Jacobian product")
        inputs, outputs = self._registry.graphs[graph]
        pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad and isinstance(g, torch.Tensor)]
        if len(grads) != len(outputs) or any(g.shape != o.shape for o, g in pairs):
            raise ValueError("gradients that do not fit the outputs")
        if not pairs:
            return [None] * len(inputs)
        found = torch.autograd.grad([o for o, _ in pairs], inputs, [g.to(o.dtype) for o, g in pairs],
                                    retain_graph=True, allow_unused=True)
        return [None if g is None else g.detach() for g in found]

    def exec(self, index: int, source: str, deadline: float) -> str | None:
        """Run cell ``index`` of the submission; return its error (``Type: message``, first line) or None."""
        reply = self.request("exec", deadline, cell=index, source=source)
        if reply["ok"]:
            return None
        error = reply.get("error")
        if type(error) is not dict or type(error.get("type")) is not str or type(error.get("message")) is not str:
            return "an error the grader could not read"
        return f"{_line(error['type'], 60)}: {_line(error['message'], 200)}"

    def call(self, name: str, args: tuple, kwargs: dict, deadline: float, forbid: tuple[str, ...] = (),
             what: str | None = None):
        """``name(*args, **kwargs)`` in the submission; its exceptions are raised here as built-in ones.

        ``forbid``: dotted names of the fmlearn functions the call may not use (``what``: what the task asks the
        learner to write, for the message).

        Raises:
            ForbiddenCall: the function tried one of ``forbid`` (even if it caught the error).
            ExerciseCheckError: the function changed an argument in place that the task does not declare.
        """
        declared = [key for key in [*range(len(args)), *kwargs] if (name, key) in IN_PLACE]
        reply = self.request("call", deadline, name=name, args=args, kwargs=kwargs, grad=torch.is_grad_enabled(),
                             forbid=list(forbid), what=what, inplace=declared)
        if reply.get("forbidden") in forbid:
            from fmlearn.exercises._forbid import ForbiddenCall

            raise ForbiddenCall(reply["forbidden"], what)
        if type(reply.get("changed")) is list and reply["changed"]:
            raise _in_place(name, args, kwargs, reply["changed"][0])
        if not reply["ok"]:
            raise _exception(reply, name)
        mirror = reply.get("mirror")
        for key, new in mirror if type(mirror) is list else []:
            if key in declared:
                _mirror(args[key] if type(key) is int else kwargs[key], new)
        return reply.get("value")

    # --- the end --------------------------------------------------------------------------------------------

    def _fail(self, why: str, timeout: bool = False):
        self._dead = f"the submission's process {why}"
        self.close()
        raise (SandboxTimeout if timeout else SandboxError)(self._dead)

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "closed the grader's channel"
        if self.route == "bubblewrap" and 128 < code < 128 + signal.NSIG:  # bwrap exits 128 + the child's signal
            code = 128 - code
        if code < 0:
            name = signal.Signals(-code).name
            why = f"was killed by {name}" + (f" ({_SIGNALS[name]})" if name in _SIGNALS else "")
        else:
            why = f"exited with code {code}" + (" (os._exit, sys.exit or exit() in its code?)" if code == 0 else "")
        lines = self._tail().decode(errors="replace").strip().splitlines()
        return why + (f"; its last output: {printable(lines[-1], 200)}" if lines else "")

    def _tail(self) -> bytes:
        """The last bytes of the process's output, read from the grader's own file, which has no name in any
        folder (so no FIFO, link or device can stand in for it), and never more than ``_TAIL`` of them."""
        fd = self._log.fileno()
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return b""
        return os.pread(fd, _TAIL, max(0, info.st_size - _TAIL))

    def close(self) -> None:
        """Kill the process, its process group and anything left in its session (in the jail, bwrap: the jail's
        processes die with it, with their PID namespace); delete the scratch folder."""
        if self._closed:
            return
        self._closed = True
        stragglers = _session_members(self.proc.pid)
        if self.proc.returncode is None:  # not reaped yet, so its group id cannot have been reused
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in stragglers:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self._w, self._r):
            os.close(fd)
        self._log.close()
        _jail.remove_tree(str(self.scratch))


def _session_members(session: int) -> list[int]:
    """Processes of the session ``session`` (the sandbox's children that left its process group, not its session)."""
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[3]) == session:
            members.append(int(entry))
    return members


def _detached(value):
    """``value`` with its tensors detached (a tensor in an autograd graph does not pickle)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(v) for v in value) if type(value) in (list, tuple) else value
    if type(value) is dict:
        return {k: _detached(v) for k, v in value.items()}
    return value


def _in_place(name: str, args: tuple, kwargs: dict, entry) -> Exception:
    """The error the notebook's check shows for a function that changed its input in place."""
    from fmlearn.exercises._base import INPLACE_HINT, ExerciseCheckError, compose_message

    key, info = entry if type(entry) is list and len(entry) == 2 and type(entry[1]) is dict else (None, {})
    arg = args[key] if type(key) is int and 0 <= key < len(args) else kwargs.get(key) if type(key) is str else None
    if arg is None:
        return ExerciseCheckError(f"{name} changed one of its inputs in place\n  hint: {INPLACE_HINT}")
    label = f"argument {key + 1}" if type(key) is int else f"argument {key}"
    old, shape, change = tuple(arg.shape), info.get("shape"), info.get("change")
    if type(shape) is list and tuple(shape) != old and all(type(n) is int for n in shape):
        how = f"reshaped to {tuple(shape)}"
    else:
        how = f"changed by up to {change:.3g}" if type(change) is float else "changed"
    return ExerciseCheckError(compose_message(f"{name} changed its input in place ({label}, shape {old})",
                                       "the arguments left as they were passed in", f"{label} {how} after the call",
                                       INPLACE_HINT))


def _exception(reply: dict, what: str) -> Exception:
    """The exception the submission's code raised, rebuilt as a built-in exception (or SubmissionError), with a
    note saying where in the submission it was raised. Its text is short and plain: the type's name cut at 60
    characters, the first line of the message at 200, control characters removed."""
    if "unsupported" in reply:
        return TypeError(f"{what} returned {_line(str(reply['unsupported']), 200)}, which the grader cannot take "
                         "back: return tensors, arrays, numbers or strings (or tuples, lists or dicts of them)")
    error = reply.get("error")
    if type(error) is not dict or not all(type(error.get(k)) is str for k in ("type", "base", "message")):
        return SubmissionError(f"{what} failed (the submission's process sent no readable error)")
    kind, message = _line(error["type"], 60), _line(error["message"], 200)
    cls = getattr(builtins, error["base"], None)
    exc: Exception = SubmissionError(f"{kind}: {message}")
    if isinstance(cls, type) and issubclass(cls, Exception) and error["base"] == kind:
        try:
            exc = cls(message)
        except Exception:  # noqa: BLE001 - a built-in exception that takes other arguments
            pass
    elif isinstance(cls, type) and issubclass(cls, Exception):  # e.g. torch's LinAlgError, a RuntimeError
        exc = cls(f"{kind}: {message}")
    if type(error.get("where")) is str:
        exc.add_note(f"(raised in the submission's {_line(error['where'], 200)})")
    return exc


def _mirror(target, new) -> None:
    """Change the grader's argument ``target`` as the submission's function changed its copy (only for an
    argument the task declares in-place, :data:`IN_PLACE`)."""
    if isinstance(target, torch.Tensor) and isinstance(new, torch.Tensor):
        try:
            with torch.no_grad():
                if target.shape != new.shape:
                    target.resize_(new.shape)
                target.copy_(new)
        except RuntimeError:  # a change the grader's tensor cannot take (a leaf that requires grad, complex data)
            pass
    elif isinstance(target, np.ndarray) and isinstance(new, np.ndarray) and target.shape == new.shape:
        target[...] = new


class StudentFunction:
    """A function of the submission, as the grader's tests see it: each call runs in the submission's process
    (:meth:`Sandbox.call`), through ``runner.call``, which knows the current sandbox and deadline."""

    def __init__(self, runner, name: str):
        self._runner, self.__name__ = runner, name

    def __call__(self, *args, **kwargs):
        return self._runner.call(self.__name__, args, kwargs)

    def __reduce__(self):  # passed to another of the submission's functions: it is the submission's own object
        return lookup, (self.__name__,)

    def __repr__(self) -> str:
        return f"<the submission's {self.__name__}>"
