"""What a submission's process does to itself before it runs any of the submission's code (Linux; each layer
is skipped, and said so, where the system lacks it).

- resource limits (``setrlimit``, hard and soft, so they cannot be raised again): address space, CPU seconds,
  file size, no core files, and (for a user other than root, which the kernel exempts) the number of processes;
- Landlock (Linux >= 5.13): files and folders can be written only inside the scratch folder, and read only in
  the Python installation, its packages, fmlearn's own folder and the system folders; no TCP (ABI >= 4); no
  signals to, and no abstract UNIX sockets of, processes outside the sandbox (ABI >= 6); it also stops
  ``ptrace`` of the grader, so its memory and environment stay out of reach;
- ``PR_SET_NO_NEW_PRIVS``, and, when run as root, every capability dropped (it stays uid 0, but can no longer
  raise its limits or override file permissions).

:func:`confine` returns one line per layer saying what was applied, for the grading report.
"""

from __future__ import annotations

import ctypes
import os
import struct

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same number on every architecture
_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 38, 24, 47, 4
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}  # handled filesystem rights
_FILE_RIGHTS = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # execute, write, read, truncate, ioctl: the rights a file can hold
_READ = 1 | 4 | 8  # execute, read a file, read a folder
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys", "/dev")

_libc = ctypes.CDLL(None, use_errno=True)


def _syscall(*args) -> int:
    out = _libc.syscall(*args)
    if out < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return out


def set_limits(memory_mb: int, cpu_seconds: int, file_mb: int) -> str:
    import resource

    done = []
    for name, value in (("RLIMIT_AS", memory_mb << 20), ("RLIMIT_CPU", cpu_seconds), ("RLIMIT_FSIZE", file_mb << 20),
                        ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
        done.append(f"{name[7:].lower()} {value}")
    if os.geteuid() != 0:  # the kernel never counts root's processes against RLIMIT_NPROC
        mine = sum(1 for pid in os.listdir("/proc") if pid.isdigit() and _owner(pid) == os.geteuid())
        resource.setrlimit(resource.RLIMIT_NPROC, (mine + 64,) * 2)
        done.append(f"nproc {mine + 64}")
    return "limits: " + ", ".join(done)


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


def confine(scratch: str, read_roots: list[str], memory_mb: int, cpu_seconds: int, file_mb: int) -> list[str]:
    """Apply every layer this system has; return what was applied (or why not), one line per layer."""
    applied = []
    try:
        applied.append(set_limits(memory_mb, cpu_seconds, file_mb))
    except (ImportError, OSError, ValueError) as err:
        applied.append(f"limits: not applied ({err})")
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
    return applied
