"""Where a submission's process starts, and as whom (Linux).

Two routes, chosen once per grader process (:func:`route`) and said in the report's ``sandbox:`` lines:

- ``bubblewrap``, when ``bwrap`` is installed and works here (the jail Flatpak runs on, a package of every major
  distribution): the process starts in new user, PID, network, IPC, UTS and cgroup namespaces (none more can be
  made inside), in a new session, and dies with the grader. Its root is built from nothing: read-only binds of
  what Python, torch and fmlearn need (the interpreter's folders, /usr, the loader's cache, the fmlearn package
  alone at a path of its own: never the course repository, which holds the solutions), the scratch folder
  writable, a fresh /proc that shows only the jail's processes, a minimal /dev and an empty 1 MiB /tmp;
  everything else in it is read-only (EROFS), even where Landlock is missing. The rest of the machine is
  absent: no file beside the submissions folder to chmod, no UNIX socket to connect to, no /etc/shadow, no
  grader's /proc entry.
- ``fallback``: an ordinary process. Either way the process then confines itself before it runs any of the
  submission's code (:mod:`fmlearn.grading._confine`: resource limits, Landlock, seccomp), so inside the jail
  these layers are a second wall.

Neither route runs a submission with root's uid. A grader running as root starts the process through this
file run as a script (:func:`launch`), which switches to an unprivileged uid (``Limits.user``, 65534 "nobody"
by default) before executing ``bwrap`` or the interpreter. That uid may be unable to reach the interpreter
(pyenv installs it under /root, mode 700): the launcher first makes a mount namespace of its own in which
each folder it cannot cross is covered by an empty tmpfs that shows only what the sandbox needs, at its own
path. Nothing changes outside that namespace, and the submission holds no capability at all.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

PACKAGE_HOME = "/opt/fmlearn-grading"  # in the jail: the folder holding the fmlearn package (and nothing else)
SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/fonts", "/sys/devices/system/cpu")
NOBODY = 65534
_TMP_BYTES = 1 << 20  # the jail's own /tmp (the submission's temporary files go to its folder, TMPDIR)
_PROBE_SECONDS = 30

_CLONE_NEWNS = 0x20000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_SLAVE = 1, 2, 4, 32, 4096, 16384, 1 << 19


class JailUnavailable(RuntimeError):
    """The route asked for cannot run here (``bwrap`` absent or refused), or, for a grader running as root, no
    unprivileged uid can run the submission."""


def account(user: int | str) -> tuple[int, int]:
    """The uid and gid of ``user`` (a uid or a user name; the group is the user's own, or the uid's number when
    the system does not know the uid).

    Raises:
        ValueError: ``user`` is root, or a name this system does not know.
    """
    import pwd

    try:
        entry = pwd.getpwnam(user) if type(user) is str else pwd.getpwuid(user)
    except KeyError:
        if type(user) is str:
            raise ValueError(f"user: no user named {user!r} on this system; expected a user name or a uid") from None
        return user, user
    if entry.pw_uid == 0:
        raise ValueError(f"user: {user!r} is root; a submission never runs with root's uid")
    return entry.pw_uid, entry.pw_gid


def identity(user: int | str) -> tuple[int, int] | None:
    """The uid and gid a submission runs as when the grader runs as root (:func:`account` of ``user``); None for
    any other grader, whose submissions run as itself (only root can change uid)."""
    return account(user) if os.geteuid() == 0 else None


def _nested(paths) -> list[str]:
    """``paths`` without those inside another one of them (a bind of the outer one shows them already)."""
    out: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == p or path.startswith(p.rstrip("/") + "/") for p in out):
            out.append(path)
    return out


def bwrap_command(python: list[str], roots: list[str], package: str, scratch: str, env: dict) -> list[str]:
    """The ``bwrap`` command that runs ``python`` in the jail described above: ``roots`` (the interpreter's
    folders) bound read-only at their own paths, the fmlearn folder ``package`` at ``PACKAGE_HOME/fmlearn``,
    ``scratch`` writable at its own path, ``env`` the whole environment."""
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user", "--disable-userns",
            "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    for path in SYSTEM:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in SYSTEM_FILES:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(_TMP_BYTES), "--tmpfs", "/tmp"]
    for path in _nested(p for p in roots if not any(p == s or p.startswith(s + "/") for s in SYSTEM)):
        argv += ["--ro-bind", path, path]
    argv += ["--ro-bind", package, f"{PACKAGE_HOME}/fmlearn", "--bind", scratch, scratch, "--chdir", scratch,
             "--remount-ro", "/dev", "--remount-ro", "/", "--", *python]  # the rest no longer takes a byte
    return argv


def command(inner: list[str], ident: tuple[int, int] | None, reach: list[str]) -> list[str]:
    """What the grader starts: ``inner`` itself, or, when it runs as root, the launcher that runs ``inner`` as
    ``ident`` (uid, gid) once the folders ``reach`` can be reached by that uid."""
    if ident is None:
        return inner
    plan = {"uid": ident[0], "gid": ident[1], "reach": _nested(reach), "argv": inner}
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), json.dumps(plan)]


@functools.cache
def route(jail: str, ident: tuple[int, int] | None, roots: tuple[str, ...], package: str) -> tuple[str, str]:
    """The route a sandbox takes (``"bubblewrap"`` or ``"fallback"``) and a line saying why or how, for this
    grader process (probed once: a jail that runs ``python -c pass`` with the binds of a real one).

    Raises:
        JailUnavailable: ``jail`` is ``"bubblewrap"`` and it does not work here; or the grader runs as root and
            not even the fallback can start the interpreter as ``ident``.
    """
    uid = f"uid {ident[0]}" if ident else f"uid {os.getuid()} (the grader's own)"
    python = [sys.executable, "-I", "-S", "-c", "pass"]
    reach = [*roots, package]
    why = "as asked"
    if jail != "fallback":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            why = "bubblewrap is not installed (no bwrap on PATH)"
        else:
            scratch = make_scratch(ident)
            try:
                failure = _probe(command(bwrap_command(python, list(roots), package, scratch, {}), ident, reach))
            finally:
                remove_tree(scratch)
            if failure is None:
                version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10,
                                         check=False).stdout.strip() or "bubblewrap"
                return "bubblewrap", (f"jail: {version}: only the interpreter, its packages, /usr and fmlearn, "
                                      f"read-only; new user, PID, network and IPC namespaces; {uid}")
            why = f"bwrap does not work here ({failure})"
        if jail == "bubblewrap":
            raise JailUnavailable(f"jail: bubblewrap was asked for, but {why}")
    if ident is not None:
        failure = _probe(command(python, ident, reach))
        if failure is not None:
            raise JailUnavailable(
                f"the grader runs as root, so submissions run as uid {ident[0]}, which cannot start this Python "
                f"({failure}): run the grader as a normal user, install Python where uid {ident[0]} can read it, "
                f"or choose another --sandbox-user")
    return "fallback", f"jail: fallback ({why}): an ordinary process, confined by itself as below; {uid}"


def _probe(argv: list[str]) -> str | None:
    """None when ``argv`` runs and exits 0, else its last line of output (or why it could not start)."""
    try:
        out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=_PROBE_SECONDS, env={},
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if out.returncode == 0:
        return None
    lines = (out.stdout + out.stderr).decode(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else f"exit code {out.returncode}"


def make_scratch(ident: tuple[int, int] | None) -> str:
    """A fresh folder (mode 700) for one submission, owned by the uid it runs as."""
    scratch = tempfile.mkdtemp(prefix="fmlearn-grade-")
    if ident is not None:
        os.chown(scratch, *ident)
    return scratch


def remove_tree(path: str) -> None:
    """Delete a folder the submission wrote in: never following a link, never opening what is not a folder (a
    FIFO would block), at any depth (coreutils' ``rm``, not a recursion that a deep tree overflows)."""
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
             "env": {"PATH": "/usr/bin:/bin"}, "timeout": 120, "check": False}
    try:
        subprocess.run(["rm", "-rf", "--", path], **quiet)
        if os.path.lexists(path):  # folders it made with no rights (mkdir mode 0), when the grader is not root
            subprocess.run(["chmod", "-R", "u+rwx", "--", path], **quiet)
            subprocess.run(["rm", "-rf", "--", path], **quiet)
    except (OSError, subprocess.TimeoutExpired):
        shutil.rmtree(path, ignore_errors=True)


# --- the launcher: run as root by the grader's interpreter (python -I -S _jail.py PLAN) ------------------------

def _searchable(path: str, uid: int, gid: int) -> bool:
    st = os.stat(path)
    bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
    return bool(st.st_mode & bit)


def _blocked(paths: list[str], uid: int, gid: int) -> dict[str, list[str]]:
    """For each folder that ``uid`` cannot cross on the way to one of ``paths``: the paths behind it."""
    behind: dict[str, list[str]] = {}
    for path in paths:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/" + "/".join(parts[:depth])
            if not _searchable(folder, uid, gid):
                behind.setdefault(folder, []).append(path)
                break
    return behind


def _mount(libc, source, target, kind, flags, data=None) -> None:
    if libc.mount(source, target.encode(), kind, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount on {target}: {os.strerror(err)}")


def _show(behind: dict[str, list[str]]) -> None:
    """In a mount namespace of this process's own: cover each blocking folder with an empty tmpfs, and bind back,
    read-only, the paths behind it at their own paths."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    if libc.unshare(_CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"a mount namespace of its own: {os.strerror(err)}")
    _mount(libc, None, "/", None, _MS_REC | _MS_SLAVE)  # nothing done below reaches the grader's namespace
    for folder, paths in behind.items():
        fds = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in paths]
        _mount(libc, b"tmpfs", folder, b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=755")
        for path, fd in fds:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.makedirs(path, 0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            _mount(libc, f"/proc/self/fd/{fd}".encode(), path, None, _MS_BIND | _MS_REC)
            _mount(libc, None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
            os.close(fd)


def launch(plan: dict) -> None:
    """Run ``plan["argv"]`` as ``plan["uid"]``/``plan["gid"]`` with no supplementary group, after making each of
    ``plan["reach"]`` reachable by that uid. Exits with a message when a path stays out of its reach."""
    uid, gid = plan["uid"], plan["gid"]
    behind = _blocked(plan["reach"], uid, gid)
    if behind:
        try:
            _show(behind)
        except OSError as err:
            sys.exit(f"fmlearn sandbox launcher: uid {uid} cannot cross {' or '.join(behind)}, and no mount namespace "
                     f"could show it what it needs there ({err})")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    for path in plan["reach"]:
        if not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
            sys.exit(f"fmlearn sandbox launcher: uid {uid} cannot read {path}")
    os.execv(plan["argv"][0], plan["argv"])


if __name__ == "__main__":
    try:
        launch(json.loads(sys.argv[1]))
    except OSError as err:
        sys.exit(f"fmlearn sandbox launcher: {err}")
