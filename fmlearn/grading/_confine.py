"""What a submission's process does to itself before it runs any of the submission's code (Linux; each layer
is skipped, and said so, where the system lacks it).

- never root's uid: the grader starts it as an unprivileged user (:mod:`fmlearn.grading._jail`); a process that
  finds itself root refuses to go on;
- resource limits (``setrlimit``, hard and soft, so they cannot be raised again): address space (``memory_mb``
  beyond what Python and torch map at start), CPU seconds, file size, no core files, the number of processes;
- Landlock (Linux >= 5.13): files and folders can be written only inside the scratch folder, and read only in
  the Python installation, its packages, fmlearn's own folder, /usr and the few system files Python needs
  (the loader's cache, the time zone, fonts; not the rest of /etc), and in /proc only this process's own
  entry and the CPU and memory summaries (not the grader's command line); no TCP (ABI >= 4); no signals to,
  and no abstract UNIX sockets of, processes outside the sandbox (ABI >= 6); it also stops ``ptrace`` of the
  grader, so its memory and environment stay out of reach;
- ``PR_SET_NO_NEW_PRIVS`` and a seccomp filter (x86-64 and arm64) on every thread: no new process (``fork``,
  ``clone`` without ``CLONE_THREAD``, or with a new namespace) and no ``execve``, so no fork bomb, no
  ``os.system``, no child outliving the sandbox (threads still start); no change to a file's mode, owner,
  times or extended attributes (Landlock has no right for them: a file outside the folder could be made
  world-writable or setuid); no socket at all (the grader's channel is two pipes, so neither UDP nor a UNIX
  socket outside reaches anyone); no io_uring (its operations bypass this filter), no namespaces, mounts,
  ``ptrace``, other processes' memory, BPF, perf events, userfaultfd, kernel keys, device nodes, or file
  handles; signals only to itself (what Landlock's scoping does from ABI 6 on, for older kernels).

:func:`confine` returns one line per layer saying what was applied, for the grading report.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same number on every architecture
_PR_SET_NO_NEW_PRIVS = 38
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}  # handled filesystem rights
_FILE_RIGHTS = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # execute, write, read, truncate, ioctl: the rights a file can hold
_READ = 1 | 4 | 8  # execute, read a file, read a folder
_CLONE_THREAD = 0x10000
_ALLOW, _EPERM, _ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | errno
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1
_CLONE_NEW = 0x7E020080  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
_DENIED_EVERYWHERE = {  # numbered alike on x86-64 and arm64 (the tables were unified from 403 on)
    "fchmodat2": 452, "setxattrat": 463, "removexattrat": 466, "file_setattr": 469,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "open_tree_attr": 467, "pidfd_getfd": 438, "process_madvise": 440,
    "pidfd_send_signal": 424,
}
_SECCOMP_ARCH = {  # machine: (AUDIT_ARCH_*, seccomp, clone, clone3, {denied system call: number},
    #                  {system call that sends a signal to the process its first argument names: number})
    "x86_64": (0xC000003E, 317, 56, 435, {
        "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "tkill": 200,
        "chmod": 90, "fchmod": 91, "fchmodat": 268, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
        "utime": 132, "utimes": 235, "utimensat": 280, "futimesat": 261,
        "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198,
        "fremovexattr": 199, "socket": 41, "socketpair": 53, "unshare": 272, "setns": 308, "mount": 165,
        "umount2": 166, "pivot_root": 155, "chroot": 161, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250,
        "add_key": 248, "request_key": 249, "mknod": 133, "mknodat": 259, "name_to_handle_at": 303,
        "open_by_handle_at": 304, **_DENIED_EVERYWHERE},
        {"kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297}),
    "aarch64": (0xC00000B7, 277, 220, 435, {  # arm64 never had chmod, chown, utime, mknod or fork
        "execve": 221, "execveat": 281, "tkill": 130,
        "fchmod": 52, "fchmodat": 53, "fchown": 55, "fchownat": 54, "utimensat": 88,
        "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15, "fremovexattr": 16,
        "socket": 198, "socketpair": 199, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217,
        "request_key": 218, "mknodat": 33, "name_to_handle_at": 264, "open_by_handle_at": 265,
        **_DENIED_EVERYWHERE},
        {"kill": 129, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240}),
}
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin",  # programs and libraries
                "/etc/ld.so.cache", "/etc/localtime", "/etc/fonts",  # the loader's cache, the time zone, fonts
                "/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/sys/devices/system/cpu",  # itself and the CPUs
                "/dev/urandom", "/dev/random", "/dev/zero")

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
    mine = sum(_threads(pid) for pid in os.listdir("/proc") if pid.isdigit())  # the kernel counts threads
    resource.setrlimit(resource.RLIMIT_NPROC, (mine + 64,) * 2)
    done.append(f"processes {mine + 64}")
    return "limits: " + ", ".join(done) + ", no core files"


def _threads(pid: str) -> int:
    """How many threads process ``pid`` runs under this process's uid (0 for another user's)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) if os.stat(f"/proc/{pid}").st_uid == os.getuid() else 0
    except OSError:
        return 0


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
    return (f"landlock ABI {abi}: writes only in the scratch folder, reads only in Python's folders, /usr and a "
            f"few system files{extra}")


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp() -> str:
    machine = os.uname().machine
    if machine not in _SECCOMP_ARCH:
        raise OSError(f"no filter written for {machine}")
    arch, seccomp, clone, clone3, denied, signals = _SECCOMP_ARCH[machine]
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JGE, JSET, BPF_RET|K
    prog = [(load, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, _EPERM),  # another ABI (i386 on x86-64): nothing
            (load, 0, 0, 0), (jge, 0, 1, 0x40000000), (ret, 0, 0, _EPERM),  # x32 system calls: nothing
            (jeq, 0, 1, clone3), (ret, 0, 0, _ENOSYS)]  # glibc falls back to clone, whose flags can be read
    for nr in sorted(set(denied.values())):
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, _EPERM)]
    for name, nr in signals.items():  # signals to itself only (Landlock scopes them only from ABI 6 on)
        mine = (os.getpid(), 0) if name == "kill" else (os.getpid(),)  # kill(0, ...): its own process group
        prog += [(jeq, 0, len(mine) + 3, nr), (load, 0, 0, 16)]
        prog += [(jeq, len(mine) - i, 0, pid) for i, pid in enumerate(mine)]
        prog += [(ret, 0, 0, _EPERM), (ret, 0, 0, _ALLOW)]
    prog += [(jeq, 0, 4, clone), (load, 0, 0, 16), (jset, 1, 0, _CLONE_NEW), (jset, 1, 0, _CLONE_THREAD),
             (ret, 0, 0, _EPERM), (ret, 0, 0, _ALLOW)]
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    out = _libc.syscall(seccomp, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog))
    if out < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    if out > 0:
        raise OSError(f"thread {out} could not take the filter")
    return ("seccomp: no new processes, no execve, no chmod, chown, utime or xattr changes, no sockets, no "
            "io_uring, no namespaces or mounts, no ptrace, no signals to other processes (every thread)")


def confine(scratch: str, read_roots: list[str], memory_mb: int, cpu_seconds: int, file_mb: int) -> list[str]:
    """Apply every layer this system has; return what was applied (or why not), one line per layer."""
    if os.getuid() == 0 or os.geteuid() == 0:
        raise PermissionError("a submission never runs with root's uid; the grader starts it as another user")
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
    try:
        applied.append(_seccomp())
    except OSError as err:
        applied.append(f"seccomp: not applied ({err}): the submission can start processes")
    return applied
