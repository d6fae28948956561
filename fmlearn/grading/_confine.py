"""What a submission's process does to itself before it runs any of the submission's code (Linux; each layer
is skipped, and said so, where the system lacks it).

- resource limits (``setrlimit``, hard and soft, so they cannot be raised again): address space (``memory_mb``
  beyond what Python and torch map at start), CPU seconds, file size, no core files, and (for a user other
  than root, whom the kernel exempts) the number of processes;
- Landlock (Linux >= 5.13): files and folders can be written only inside the scratch folder, and read only in
  the Python installation, its packages, fmlearn's own folder and the system folders; no TCP (ABI >= 4); no
  signals to, and no abstract UNIX sockets of, processes outside the sandbox (ABI >= 6); it also stops
  ``ptrace`` of the grader, so its memory and environment stay out of reach;
- ``PR_SET_NO_NEW_PRIVS``, and, when run as root, every capability dropped (it stays uid 0, but can no longer
  raise its limits or override file permissions);
- a seccomp filter (x86-64 and arm64): no new process (``fork``, ``clone`` without ``CLONE_THREAD``) and no
  ``execve``, so no fork bomb, no ``os.system``, no child outliving the sandbox; threads still start.

:func:`confine` returns one line per layer saying what was applied, for the grading report.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same number on every architecture
_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 38, 24, 47, 4
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}  # handled filesystem rights
_FILE_RIGHTS = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # execute, write, read, truncate, ioctl: the rights a file can hold
_READ = 1 | 4 | 8  # execute, read a file, read a folder
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _CLONE_THREAD = 22, 2, 0x10000
_ALLOW, _EPERM, _ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | errno
_SECCOMP_ARCH = {  # machine: (AUDIT_ARCH_*, clone, clone3, [fork, vfork, execve, execveat])
    "x86_64": (0xC000003E, 56, 435, [57, 58, 59, 322]),
    "aarch64": (0xC00000B7, 220, 435, [221, 281]),
}
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev")

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _syscall(*args) -> int:
    out = _libc.syscall(*args)
    if out < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return out


def _mapped_mb() -> int:
    """This process's address space now (torch is imported by then: a CUDA build maps gigabytes more)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) >> 10 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return 0


def set_limits(memory_mb: int, cpu_seconds: int, file_mb: int) -> str:
    """Address space: what is mapped now plus ``memory_mb``; CPU seconds; largest file; no core files."""
    import resource

    mapped = _mapped_mb()
    done = [f"address space {mapped} + {memory_mb} MB", f"cpu {cpu_seconds} s", f"file size {file_mb} MB"]
    for name, value in (("RLIMIT_AS", (mapped + memory_mb) << 20), ("RLIMIT_CPU", cpu_seconds),
                        ("RLIMIT_FSIZE", file_mb << 20), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    if os.geteuid() != 0:  # the kernel never counts root's processes against RLIMIT_NPROC
        mine = sum(1 for pid in os.listdir("/proc") if pid.isdigit() and _owner(pid) == os.geteuid())
        resource.setrlimit(resource.RLIMIT_NPROC, (mine + 64,) * 2)
        done.append(f"processes {mine + 64}")
    return "limits: " + ", ".join(done) + ", no core files"


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _landlock(scratch: str, read_roots: list[str]) -> str:
    abi = _syscall(_SYS_CREATE_RULESET, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    fs = _FS_BY_ABI[max(k for k in _FS_BY_ABI if k <= abi)]
    net = 3 if abi >= 4 else 0  # bind and connect TCP
    scoped = 3 if abi >= 6 else 0  # abstract UNIX sockets and signals
    attr = struct.pack("QQQ", fs, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    ruleset = _syscall(_SYS_CREATE_RULESET, attr, len(attr), 0)
    try:
        rules = [(scratch, fs)] + [(path, _READ) for path in read_roots] + [("/dev/null", 2 | 4)]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a folder this system does not have
            try:
                if not os.path.isdir(path):
                    rights &= _FILE_RIGHTS
                _syscall(_SYS_ADD_RULE, ruleset, 1, struct.pack("=Qi", rights & fs, fd), 0)  # PATH_BENEATH
            finally:
                os.close(fd)
        _syscall(_SYS_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
    extra = (", no TCP" if net else "") + (", no signals outside" if scoped else "")
    return f"landlock ABI {abi}: writes only in the scratch folder, reads only in Python's and system folders{extra}"


def _drop_capabilities() -> str:
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    if _libc.capset(header, bytes(24)) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "root: every capability dropped"


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp() -> str:
    machine = os.uname().machine
    if machine not in _SECCOMP_ARCH:
        raise OSError(f"no filter written for {machine}")
    arch, clone, clone3, denied = _SECCOMP_ARCH[machine]
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JGE, JSET, BPF_RET|K
    prog = [(load, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, _EPERM),  # another ABI (i386 on x86-64): nothing
            (load, 0, 0, 0), (jge, 0, 1, 0x40000000), (ret, 0, 0, _EPERM),  # x32 system calls: nothing
            (jeq, 0, 1, clone3), (ret, 0, 0, _ENOSYS)]  # glibc falls back to clone, whose flags can be read
    for nr in denied:
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, _EPERM)]
    prog += [(jeq, 0, 3, clone), (load, 0, 0, 16), (jset, 1, 0, _CLONE_THREAD), (ret, 0, 0, _EPERM),
             (ret, 0, 0, _ALLOW)]
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "seccomp: no new processes, no execve (threads allowed)"


def confine(scratch: str, read_roots: list[str], memory_mb: int, cpu_seconds: int, file_mb: int) -> list[str]:
    """Apply every layer this system has; return what was applied (or why not), one line per layer."""
    applied = []
    try:
        applied.append(set_limits(memory_mb, cpu_seconds, file_mb))
    except (ImportError, OSError, ValueError) as err:
        applied.append(f"limits: not applied ({err})")
    if _libc is None:  # the numbers below are Linux's system calls
        applied.append(f"{sys.platform}: no Landlock, no seccomp: files outside the scratch folder are NOT protected")
        return applied
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        applied.append("no_new_privs: not applied")
    try:
        applied.append(_landlock(scratch, [*read_roots, *_SYSTEM_READ]))
    except (OSError, AttributeError) as err:
        applied.append(f"landlock: unavailable ({err}): files outside the scratch folder are NOT protected")
    if os.geteuid() == 0:
        try:
            applied.append(_drop_capabilities())
        except OSError as err:
            applied.append(f"root: capabilities not dropped ({err})")
    try:
        applied.append(_seccomp())
    except OSError as err:
        applied.append(f"seccomp: not applied ({err}): the submission can start processes")
    return applied
