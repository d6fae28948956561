"""The sandbox against the attacks of issue 20, items 1-4, on each of its two routes: the bubblewrap jail and the
in-process fallback (Landlock, seccomp, limits).

Each attack runs in a real sandbox (a cell defines a probe, the grader calls it, as a hostile notebook would),
and each assertion checks the effect where the grader can see it: the file's mode, times, owner and extended
attributes unchanged, nothing received by a listener, no text of a private file in the report, grading that
ends in bounded time. On the grader of the previous commit every one of them failed (as root; its sandbox kept
root's uid): the mode, times and attributes changed, /etc/shadow was read, both listeners got the message, a
user namespace and an io_uring were made, the grader's command line was read, and a FIFO in place of the
sandbox's output log hung the grader for ever.

The jail route is skipped where bubblewrap does not work, unless FMLEARN_REQUIRE_JAIL=1 (CI installs it).
"""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fmlearn.grading import _confine, _jail
from fmlearn.grading.sandbox import Limits, Sandbox, SandboxError, _read_roots

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox's layers are Linux's")

ROUTES = ("bubblewrap", "fallback")
BOUND = 60  # seconds: a sandbox that has not ended by then has hung the grader
REQUIRE_JAIL = os.environ.get("FMLEARN_REQUIRE_JAIL") == "1"  # read now: a fixture clears FMLEARN_* for each test

PROBE = r'''import ctypes, os, socket


def probe(paths, grader_pid):
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result, what):
        if result < 0:
            raise OSError(ctypes.get_errno(), what)
        return result

    def read(path):
        with open(path, "rb") as f:
            return f.read(4096).decode(errors="replace")

    def unix():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(paths["socket"])
            s.sendall(b"hello from the sandbox")

    def udp():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"hello from the sandbox", ("127.0.0.1", paths["udp"]))

    attempts = {
        "setxattr beside": lambda: os.setxattr(paths["beside"], "user.fmlearn", b"x"),
        "utime beside": lambda: os.utime(paths["beside"], (0, 0)),
        "chown beside": lambda: os.chown(paths["beside"], os.getuid(), os.getgid()),
        "chmod beside": lambda: os.chmod(paths["beside"], 0),  # last: mode 0 would stop the others
        "chmod 0600": lambda: os.chmod(paths["private"], 0o666),
        "chown 0600": lambda: os.chown(paths["private"], os.getuid(), os.getgid()),
        "setuid": lambda: os.chmod(paths["program"], 0o4755),
        "/etc/shadow": lambda: read("/etc/shadow") and None,
        "unix socket": unix,
        "udp": udp,
        "user namespace": lambda: check(libc.unshare(0x10000000), "unshare"),  # CLONE_NEWUSER
        "io_uring": lambda: os.close(check(libc.syscall(425, 4, ctypes.create_string_buffer(120)), "io_uring")),
        "parent's cmdline": lambda: read(f"/proc/{os.getppid()}/cmdline"),
        "grader's cmdline": lambda: read(f"/proc/{grader_pid}/cmdline"),
    }
    with open("/proc/self/status") as f:
        seen = {"uid": os.getuid(), "capabilities": next(line.split()[1] for line in f if line.startswith("CapEff"))}
    for name, attempt in attempts.items():
        try:
            out = attempt()
            seen[name] = out if type(out) is str else "allowed"
        except Exception as err:
            seen[name] = type(err).__name__
    return seen
'''

LOG_ATTACK = r'''import os, signal


def replace_the_log(kind, target):
    """The grader of the previous commit read output.log, in this folder, when the process died: make it a FIFO
    or a link to ``target``; or ("deep") leave a tree deeper than Python's recursion limit for the grader to
    delete, with a link to ``target``'s folder at its top, and crash (bwrap reports the signal as an exit code)."""
    if kind == "deep":
        os.symlink(os.path.dirname(target), "outside")
        for _ in range(2000):
            os.mkdir("d")
            os.chdir("d")
    else:
        if os.path.lexists("output.log"):
            os.remove("output.log")
        try:
            os.mkfifo("output.log") if kind == "fifo" else os.symlink(target, "output.log")
        except OSError:
            pass
    print("the last line it printed", flush=True)
    if kind == "deep":
        os.kill(os.getpid(), signal.SIGSEGV)
    os._exit(3)
'''


def _sandbox(route: str, submission: Path, deadline: float) -> Sandbox:
    try:
        return Sandbox(submission, Limits(jail=route), deadline)
    except _jail.JailUnavailable as err:
        if REQUIRE_JAIL:
            raise
        pytest.skip(str(err))


def _submission_uid() -> int:
    ident = _jail.identity(Limits().user)
    return ident[0] if ident else os.getuid()


@pytest.fixture(scope="module", params=ROUTES)
def attacked(request):
    """The probe's findings on one route, and what the grader sees afterwards. The files it attacks lie in a
    folder every user can cross, so only the sandbox stands in the way: ``beside`` (beside the submissions
    folder) belongs to the uid the submission runs as, ``private`` (0600) and ``program`` (a copy of ``true``)
    to the grader."""
    home = Path(tempfile.mkdtemp(prefix="fmlearn-jail-test-"))
    home.chmod(0o755)
    try:
        beside, private, program = home / "beside.txt", home / "private.txt", home / "true"
        beside.write_text("the instructor's notes\n")
        os.chown(beside, _submission_uid(), -1)
        private.write_text("the instructor's key\n")
        private.chmod(0o600)
        shutil.copyfile(shutil.which("true"), program)
        program.chmod(0o755)
        try:
            os.setxattr(home, "user.fmlearn", b"test")
            xattrs = True
        except OSError:
            xattrs = False
        before = {path: os.stat(path) for path in (beside, private, program)}
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(home / "grader.sock"))
        os.chmod(home / "grader.sock", 0o777)
        unix.listen(4)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        submission = home / "submitted" / "ex01_eve.ipynb"
        submission.parent.mkdir()
        submission.write_text("{}")
        paths = {"beside": str(beside), "private": str(private), "program": str(program),
                 "socket": str(home / "grader.sock"), "udp": udp.getsockname()[1]}
        deadline = time.monotonic() + 120
        with _sandbox(request.param, submission, deadline) as box:
            box.exec(0, PROBE, deadline)
            seen = box.call("probe", (paths, os.getpid()), {}, deadline)
            confinement = box.confinement
        unix.setblocking(False)
        udp.setblocking(False)
        received = []
        try:
            conn, _ = unix.accept()
            conn.settimeout(1)
            received.append(conn.recv(100))
        except OSError:
            pass
        try:
            received.append(udp.recv(100))
        except OSError:
            pass
        unix.close()
        udp.close()
        yield {"route": request.param, "seen": seen, "confinement": confinement, "before": before,
               "after": {path: os.stat(path) for path in before}, "xattrs": xattrs,
               "beside_xattrs": os.listxattr(beside) if xattrs else [], "received": received,
               "beside": beside, "private": private, "program": program}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_route_is_said(attacked):
    assert attacked["confinement"][0].startswith(f"jail: {attacked['route']}"), attacked["confinement"]


def test_a_submission_never_runs_as_root(attacked):
    assert attacked["seen"]["uid"] != 0
    assert attacked["seen"]["uid"] == _submission_uid()
    assert int(attacked["seen"]["capabilities"], 16) == 0


def test_limits_refuse_a_bad_jail_or_user():
    with pytest.raises(ValueError, match="jail: expected one of auto, bubblewrap, fallback, got 'docker'"):
        Limits(jail="docker")
    with pytest.raises(ValueError, match="user: expected a uid > 0 or a user name, got 0"):
        Limits(user=0)
    with pytest.raises(ValueError, match="user: 'root' is root; a submission never runs with root's uid"):
        Limits(user="root")


def test_no_mode_change_outside_its_folder(attacked):
    seen, before, after = attacked["seen"], attacked["before"], attacked["after"]
    for attempt, path in (("chmod beside", attacked["beside"]), ("chmod 0600", attacked["private"]),
                          ("setuid", attacked["program"])):
        assert seen[attempt] != "allowed", attempt
        assert after[path].st_mode == before[path].st_mode, (attempt, oct(after[path].st_mode))
    assert not after[attacked["program"]].st_mode & stat.S_ISUID


def test_no_time_owner_or_attribute_change_outside_its_folder(attacked):
    seen, before, after = attacked["seen"], attacked["before"], attacked["after"]
    for attempt in ("utime beside", "chown beside", "chown 0600"):
        assert seen[attempt] != "allowed", attempt
    beside, private = attacked["beside"], attacked["private"]
    assert after[beside].st_mtime_ns == before[beside].st_mtime_ns
    for path in (beside, private):
        assert (after[path].st_uid, after[path].st_gid) == (before[path].st_uid, before[path].st_gid)
    if attacked["xattrs"]:
        assert seen["setxattr beside"] != "allowed"
        assert attacked["beside_xattrs"] == []


def test_no_secret_system_file(attacked):
    assert attacked["seen"]["/etc/shadow"] != "allowed"


def test_nothing_reaches_a_socket_outside(attacked):
    seen = attacked["seen"]
    assert seen["unix socket"] != "allowed" and seen["udp"] != "allowed", seen
    assert attacked["received"] == []


def test_no_user_namespace_and_no_io_uring(attacked):
    assert attacked["seen"]["user namespace"] != "allowed"
    assert attacked["seen"]["io_uring"] != "allowed"


def test_the_graders_command_line_stays_hidden(attacked):
    with open("/proc/self/cmdline", "rb") as f:
        mine = f.read(4096).decode(errors="replace")
    assert attacked["seen"]["parent's cmdline"] != mine
    assert attacked["seen"]["grader's cmdline"] != mine


class _Hung(Exception):
    pass


def _hung(signum, frame):
    raise _Hung(f"the grader was still waiting after {BOUND} s")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("kind", ["fifo", "secret", "zero", "deep"])
def test_a_process_that_replaces_its_log_neither_hangs_nor_leaks(route, kind, tmp_path):
    secret = tmp_path / "private" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET grades of the whole class\n")
    secret.parent.chmod(0o700)
    submission = tmp_path / "submitted" / "ex01_mallory.ipynb"
    submission.parent.mkdir()
    submission.write_text("{}")
    target = "/dev/zero" if kind == "zero" else str(secret)
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, BOUND)
    try:
        start = time.monotonic()
        deadline = start + BOUND
        with _sandbox(route, submission, deadline) as box:
            box.exec(0, LOG_ATTACK, deadline)
            with pytest.raises(SandboxError) as died:
                box.call("replace_the_log", (kind, target), {}, deadline)
        took = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert took < BOUND
    assert "TOP-SECRET" not in str(died.value)
    ending = "was killed by SIGSEGV (a crash)" if kind == "deep" else "exited with code 3"
    assert str(died.value).endswith(f"{ending}; its last output: the last line it printed"), died.value
    assert not box.scratch.exists()  # a deep tree removed too, a link not followed
    assert secret.read_text().startswith("TOP-SECRET")


SIGNALS = r"""import importlib.util, json, os, signal, sys, threading

spec = importlib.util.spec_from_file_location("_confine", sys.argv[1])
confine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(confine)
confine._libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, as confine() sets it first
confine._seccomp()
seen = {}
for name, attempt in {"another process": lambda: os.kill(int(sys.argv[2]), signal.SIGKILL),
                      "every process": lambda: os.kill(-1, 0), "itself": lambda: os.kill(os.getpid(), 0),
                      "its group": lambda: os.kill(0, 0),
                      "its thread": lambda: signal.pthread_kill(threading.get_ident(), 0)}.items():
    try:
        attempt()
        seen[name] = "allowed"
    except OSError as err:
        seen[name] = type(err).__name__
print(json.dumps(seen))
"""


def test_seccomp_alone_lets_a_submission_signal_only_itself():
    """Landlock scopes signals only from ABI 6 (Linux 6.12) on, and masks the filter here: the filter alone, in a
    process of the submission's uid, must not reach a process of that same uid (another submission's)."""
    ident = _jail.identity(Limits().user)
    victim = subprocess.Popen(["sleep", "60"], **({"user": ident[0], "group": ident[1], "extra_groups": []}
                                                  if ident else {}))
    try:
        python = [sys.executable, "-I", "-S", "-c", SIGNALS, _confine.__file__, str(victim.pid)]
        reach = [*_read_roots(), os.path.dirname(_confine.__file__)]
        out = subprocess.run(_jail.command(python, ident, reach), capture_output=True, text=True, timeout=60,
                             env={}, check=True)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
    assert json.loads(out.stdout) == {"another process": "PermissionError", "every process": "PermissionError",
                                      "itself": "allowed", "its group": "allowed", "its thread": "allowed"}


REFUSAL = r"""import importlib.util, json, sys

spec = importlib.util.spec_from_file_location("_jail", sys.argv[1])
jail = importlib.util.module_from_spec(spec)
spec.loader.exec_module(jail)
ident, roots, package = json.loads(sys.argv[2])
try:
    print(jail.route("fallback", tuple(ident), tuple(roots), package))
except jail.JailUnavailable as err:
    print(err)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only a grader running as root changes the submission's uid")
def test_as_root_a_python_the_submission_cannot_reach_is_refused_with_a_fix():
    """Without the right to make a mount namespace (a container without CAP_SYS_ADMIN), a grader running as root
    cannot show the submission's uid an interpreter kept under a private home: it refuses, and says what to do,
    rather than run the submission as root."""
    ident = _jail.identity(Limits().user)
    roots, package = _read_roots(), os.path.dirname(os.path.dirname(_jail.__file__))
    if not _jail._blocked([*roots, package], *ident) or shutil.which("setpriv") is None:
        pytest.skip(f"uid {ident[0]} can reach this Python without help (or setpriv is missing)")
    out = subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable, "-I", "-S",
                          "-c", REFUSAL, _jail.__file__, json.dumps([ident, roots, package])],
                         capture_output=True, text=True, timeout=60, env={}, check=True)
    assert out.stdout.startswith(f"the grader runs as root, so submissions run as uid {ident[0]}, which cannot start "
                                 "this Python"), out.stdout
    assert "run the grader as a normal user" in out.stdout
