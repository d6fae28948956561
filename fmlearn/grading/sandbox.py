"""A submission's code in a process of its own, and its functions as the grader's tests see them.

:class:`Sandbox` starts ``python -I`` in a fresh scratch folder that holds only a copy of the submission, with
an environment reduced to what Python and torch need (plus ``FMLEARN_QUICK``), one CPU thread and no GPU, in a
session (process group) of its own that is killed at the end; in a bubblewrap jail where one works, and never
with root's uid (:mod:`fmlearn.grading._jail`). Its output goes to a file of the grader's with no name, read
back bounded. The child confines itself before it runs any of the submission's code
(:mod:`fmlearn.grading._confine`: resource limits, Landlock, seccomp) and then answers requests over two pipes
(:mod:`fmlearn.grading._channel`).

:class:`StudentFunction` stands, in the grader, for a function the submission defines: calling it sends the
arguments (a check's model or velocity field travels by value and runs in the sandbox), and returns a plain
copy of the result, validated on the way. Arguments the function changed in place (a tensor, a model's call
counter) are changed the same way on the grader's side, so a check that looks for them still sees them.
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
from ._channel import MAX_REPLY, ChannelClosed, ChannelError, ChannelTimeout, recv_frame, send_frame, unpack
from ._sandbox import _lookup

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


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, limit: int) -> str:
    """A string from the submission, safe to print: cut at ``limit`` characters, control characters (a terminal's
    escape sequences) replaced by ``?``."""
    return _CONTROL.sub("?", text[:limit])


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
        hello = self._receive(min(deadline, time.monotonic() + limits.start_timeout))
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

    def request(self, op: str, deadline: float, **fields) -> dict:
        """Send one request and wait (until ``deadline``, a ``time.monotonic()`` value) for its reply.

        Raises:
            SandboxTimeout, SandboxError: when the process does not answer properly (it is then killed).
        """
        import cloudpickle

        if self._dead:
            raise SandboxError(self._dead)
        self._id += 1
        payload = cloudpickle.dumps({"id": self._id, "op": op, **fields})
        try:
            send_frame(self._w, payload, deadline)
        except ChannelTimeout:
            self._fail("did not answer in time", timeout=True)
        except ChannelError:
            self._fail(self._death())
        reply = self._receive(deadline)
        if type(reply) is not dict or reply.get("id") != self._id or type(reply.get("ok")) is not bool:
            self._fail("answered out of turn")
        return reply

    def exec(self, index: int, source: str, deadline: float) -> str | None:
        """Run cell ``index`` of the submission; return its error (``Type: message``, first line) or None."""
        reply = self.request("exec", deadline, cell=index, source=source)
        if reply["ok"]:
            return None
        error = reply.get("error")
        if type(error) is not dict or type(error.get("type")) is not str or type(error.get("message")) is not str:
            return "an error the grader could not read"
        return printable(f"{error['type'][:100]}: {error['message']}".splitlines()[0], 300)

    def call(self, name: str, args: tuple, kwargs: dict, deadline: float):
        """``name(*args, **kwargs)`` in the submission; its exceptions are raised here as built-in ones."""
        reply = self.request("call", deadline, name=name, args=args, kwargs=kwargs, grad=torch.is_grad_enabled())
        if not reply["ok"]:
            raise _exception(reply, name)
        changed = reply.get("changed")
        for key, new in changed if type(changed) is list else []:
            target = args[key] if type(key) is int and 0 <= key < len(args) else kwargs.get(key, None) \
                if type(key) is str else None
            _mirror(target, new)
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
        """Kill the process, its process group and anything left in its session; delete the scratch folder."""
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


def _exception(reply: dict, what: str) -> Exception:
    """The exception the submission's code raised, rebuilt as a built-in exception (or SubmissionError), with a
    note saying where in the submission it was raised."""
    if "unsupported" in reply:
        return TypeError(f"{what} returned {printable(str(reply['unsupported']), 200)}, which the grader cannot take "
                         "back: return tensors, arrays, numbers or strings (or tuples, lists or dicts of them)")
    error = reply.get("error")
    if type(error) is not dict or not all(type(error.get(k)) is str for k in ("type", "base", "message")):
        return SubmissionError(f"{what} failed (the submission's process sent no readable error)")
    kind, message = printable(error["type"], 100), printable(error["message"], 4000)
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
        exc.add_note(f"(raised in the submission's {printable(error['where'], 300)})")
    return exc


def _mirror(target, new) -> None:
    """Change the grader's argument ``target`` as the submission's function changed its copy."""
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
    elif type(new) is dict and type(new.get("$attrs")) is dict:
        for name, value in new["$attrs"].items():
            if type(value) in (bool, int, float, str) and type(getattr(target, name, None)) is type(value):
                setattr(target, name, value)


class StudentFunction:
    """A function of the submission, as the grader's tests see it: each call runs in the submission's process
    (:meth:`Sandbox.call`), through ``runner.call``, which knows the current sandbox and deadline."""

    def __init__(self, runner, name: str):
        self._runner, self.__name__ = runner, name

    def __call__(self, *args, **kwargs):
        return self._runner.call(self.__name__, args, kwargs)

    def __reduce__(self):  # passed to another of the submission's functions: it is the submission's own object
        return _lookup, (self.__name__,)

    def __repr__(self) -> str:
        return f"<the submission's {self.__name__}>"
