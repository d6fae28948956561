"""Grading a class: who handed in each file, several submissions at once, a journal that survives a crash, slices
for a cluster, and one gradebook at the end.

- **Who.** In nbgrader's layout (a path that ends in ``submitted/<student>/<assignment>/<notebook>``) the
  folders say the student and the assignment. Elsewhere the file name does: by default it is
  ``<exercise>_<student>.ipynb``, the exercise being a solutions notebook's name
  (``ex01_gaussian_mixture_cfm_alice.ipynb`` -> ``alice``); a regular expression with a group named ``student``
  (searched in the file name) says otherwise. A name that matches neither has no student: it is graded and
  listed, but left out of an LMS export (and said so).
- **At once.** Each submission is graded by :func:`fmlearn.grading.grade_submission` in a worker process of its
  own (``jobs`` of them, started fresh: grading changes the environment and redirects output), each with its
  own sandbox. A worker that gives no result ``notebook_timeout`` + :func:`default_grace` seconds after it got a
  submission is stopped (its sandbox too) and the submission gets 0 and the reason; the others go on.
- **Journal.** Each graded row is appended to ``<out>.jsonl`` (flushed and fsynced) as soon as it is known; the
  final table is written from it. A rerun with the same ``out`` grades only what the journal does not hold,
  what changed since (rows carry the file's SHA-256) and what the grader itself failed on, so a crash or a kill
  loses at most the submissions being graded.
- **Slices.** ``--shard K/N`` grades every N-th file of the sorted list, from the K-th (files sorted by path,
  in code-point order: the same on every machine), so a Slurm job array or a Kubernetes indexed Job spreads a
  class over machines; :func:`merge` joins their journals into one gradebook and refuses slices that overlap,
  are missing, are incomplete or were cut from different lists.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import stat
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ._jail import JailUnavailable, remove_tree
from .grade import Result, default_solutions, grade_submission, submission_files
from .report import Row
from .sandbox import printable
from .submissions import Exercise, named_exercise, load_exercises


@dataclass(frozen=True)
class Entry:
    """One file of a class before it is graded: its path, its student and nbgrader assignment (None when the
    path does not say) and nbgrader's submission timestamp (None without a ``timestamp.txt``)."""

    file: str
    student: str | None = None
    assignment: str | None = None
    timestamp: str | None = None


# --- who handed in what ------------------------------------------------------------------------------------------

def student_pattern(text: str) -> re.Pattern:
    """``text`` compiled, checked to have a group named ``student``.

    Raises:
        ValueError: naming ``--student-pattern``, when it does not compile or has no ``student`` group.
    """
    try:
        pattern = re.compile(text)
    except re.error as err:
        raise ValueError(f"--student-pattern: {text!r} is not a regular expression ({err})") from None
    if "student" not in pattern.groupindex:
        raise ValueError(f"--student-pattern: expected a group named student, e.g. '_(?P<student>[^_]+)\\.ipynb$', "
                         f"got {text!r}")
    return pattern


def _nbgrader(path: Path) -> tuple[str, str] | None:
    """(student, assignment) when ``path`` ends in ``submitted/<student>/<assignment>/<file>``."""
    parts = path.absolute().parts
    return (parts[-3], parts[-2]) if len(parts) >= 4 and parts[-4] == "submitted" else None


def _timestamp(folder: Path) -> str | None:
    """The first line of nbgrader's ``timestamp.txt`` in ``folder``: a bounded read of a regular file only."""
    try:
        fd = os.open(folder / "timestamp.txt", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, 200).decode("utf-8", "replace").strip().splitlines()
    finally:
        os.close(fd)
    return printable(text[0].strip(), 100) if text else None


def identify_student(path: Path, exercises: list[Exercise], pattern: re.Pattern | None = None) -> Entry:
    """Who handed in ``path``, read from its path only (see the module's docstring)."""
    nbgrader = _nbgrader(path)
    if nbgrader is not None:
        return Entry(str(path), nbgrader[0], nbgrader[1], _timestamp(path.parent))
    if pattern is not None:
        match = pattern.search(path.name)
        student = match and match.group("student")
    else:
        named = named_exercise(path, exercises)
        student = path.stem[len(named.name) + 1:] if named is not None else None
    return Entry(str(path), printable(student, 200) if student else None)


def class_entries(paths: list[Path], exercises: list[Exercise], pattern: re.Pattern | None = None) -> list[Entry]:
    """Every submission under ``paths`` (folders searched recursively, files as given), once each, sorted by
    path in code-point order, with its student."""
    files = {str(f): f for p in paths for f in (submission_files(p) if p.is_dir() else [p])
             if not (f.name == "timestamp.txt" and _nbgrader(f))}  # nbgrader's own file beside a submission
    return [identify_student(files[k], exercises, pattern) for k in sorted(files)]


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` as (K, N), 1 <= K <= N.

    Raises:
        ValueError: naming ``--shard``, for anything else.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    k, n = (int(match[1]), int(match[2])) if match else (0, 0)
    if not 1 <= k <= n:
        raise ValueError(f"--shard: expected K/N with 1 <= K <= N (the K-th of N slices), got {text!r}")
    return k, n


def shard(entries: list, k: int, n: int) -> list:
    """The K-th of N slices of a sorted list: every N-th item from the K-th (sizes differ by one at most)."""
    return entries[k - 1::n]


def _digest(files: list[str]) -> str:
    return hashlib.sha256("\n".join(files).encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> str | None:
    """The SHA-256 of a regular file (None for anything else: a link, a FIFO, a device)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    h = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


# --- the journal -------------------------------------------------------------------------------------------------

def journal_path(out: str | os.PathLike) -> Path:
    """The journal of the grades written to ``out``: ``<out>.jsonl`` beside it."""
    return Path(f"{out}.jsonl")


def read_journal(path: Path) -> tuple[dict | None, dict[str, dict]]:
    """The last slice a journal was written for, and its rows by file (the last row of a file wins). A torn
    last line (a run killed while writing it) is ignored."""
    sliced, rows = None, {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except ValueError:
                if line.endswith("\n"):
                    raise ValueError(f"{path}: line {n} is not JSON; is it a grading journal?") from None
                break
            if "slice" in record:
                sliced = record["slice"]
            elif "row" in record:
                rows[record["row"]["submission"]] = record["row"]
    return sliced, rows


class Journal:
    """Rows appended to ``<out>.jsonl`` as they are graded, each flushed and fsynced, under an exclusive lock
    taken before it is read (a second run on the same journal is refused). ``fresh``: empty it first."""

    def __init__(self, path: Path, fresh: bool = False):
        self.path = path
        self.file = open(path, "a+b")  # noqa: SIM115 - closed by close()
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise RuntimeError(f"{path}: another run is writing this journal; wait for it, or pass another --out")
        self.file.seek(0)
        data = self.file.read()
        self.file.truncate(0 if fresh else data.rfind(b"\n") + 1)  # a torn last line (killed mid-write): cut

    def start(self, sliced: dict) -> None:
        """Say which slice of which class the rows that follow belong to."""
        self._write({"slice": sliced})

    def _write(self, record: dict) -> None:
        self.file.seek(0, os.SEEK_END)
        self.file.write(json.dumps(record).encode() + b"\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def append(self, row: Row, sha256: str | None, fault: bool) -> None:
        """One graded row; ``fault``: the grader's failure, not the submission's (a rerun grades it again)."""
        self._write({"row": {**row.to_json(), "sha256": sha256, "fault": fault}})

    def close(self) -> None:
        self.file.close()


# --- workers -----------------------------------------------------------------------------------------------------

def default_grace(notebook_timeout: float) -> float:
    """Seconds a worker may overrun a submission's ``notebook_timeout`` (the sandbox's own deadlines normally stop
    it first: this is for a grader that hangs) before it is stopped."""
    return 10.0 + 0.1 * notebook_timeout


def _on_parent_death() -> None:
    """Linux: SIGTERM this process when the grader dies (killed with SIGKILL, it runs no clean-up of its own)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(signum, frame):
    """Unwind grade_submission (its sandbox is closed on the way out), once: a second SIGTERM (the parent-death
    signal can come more than once) must not interrupt that clean-up."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _work(conn, solution, exercises: list[Exercise], limits: dict, parent: int) -> None:
    """A worker: grade each path it is sent until it is sent None; a jail that cannot run here ends the class
    (every submission would fail the same way)."""
    _on_parent_death()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the grader's to handle: it stops the workers
    if os.getppid() != parent:
        return
    conn.send("ready")
    while (path := conn.recv()) is not None:
        try:
            conn.send(grade_submission(path, solution, exercises=exercises, **limits))
        except JailUnavailable as err:
            conn.send(("fatal", str(err)))
        except Exception as err:  # noqa: BLE001 - a fault of the grader on one file: the others are graded
            conn.send(("fault", f"the grader failed on it ({type(err).__name__}: {err})"))


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux' /proc; none elsewhere)."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat_line = Path(f"/proc/{entry}/stat").read_text()
                if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _scratch_of(pid: int) -> str | None:
    """The folder a sandbox process runs in when it is a sandbox's scratch folder (``fmlearn-grade-*`` in the
    temporary folder; None for anything else, which is never deleted)."""
    try:
        folder = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    scratch = os.path.dirname(folder) == tempfile.gettempdir() and os.path.basename(folder).startswith("fmlearn-grade-")
    return folder if scratch else None


class _Worker:
    def __init__(self, ctx, solution, exercises, limits):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_work, args=(child, solution, exercises, limits, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.entry: Entry | None = None
        self.since = 0.0

    def give(self, entry: Entry) -> None:
        self.entry, self.since = entry, time.monotonic()
        self.conn.send(entry.file)

    def kill(self) -> None:
        """SIGTERM (the worker closes its sandbox); if it does not exit, SIGKILL for its children's sessions (a
        sandbox and what it started) and for it, and the sandboxes' scratch folders deleted."""
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(3)
        scratches = []
        for child in _children(self.proc.pid) if self.proc.is_alive() else []:
            scratches.append(_scratch_of(child))
            with contextlib.suppress(OSError):
                if os.getpgid(child) == child:
                    os.killpg(child, signal.SIGKILL)
                else:
                    os.kill(child, signal.SIGKILL)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(3)
        self.conn.close()
        for scratch in filter(None, scratches):
            remove_tree(scratch)


def _ungraded(entry: Entry, reason: str, exercises: list[Exercise]) -> Result:
    """0 points and the reason, for the exercise the file's name says (if it says one)."""
    named = named_exercise(Path(entry.file), exercises)
    return Result(entry.file, named and named.name, [], named.max_points if named else 0.0, reason)


def _refusal(entry: Entry) -> str | None:
    """Why a listed path is not handed to a worker: not a regular file (a symbolic link could point at the
    solutions, a FIFO would block the reader)."""
    try:
        mode = os.lstat(entry.file).st_mode
    except OSError as err:
        return f"{Path(entry.file).name}: cannot be read ({err.strerror})"
    if stat.S_ISLNK(mode):
        return f"{Path(entry.file).name}: a symbolic link, not a file: not graded"
    if not stat.S_ISREG(mode):
        return f"{Path(entry.file).name}: not a regular file: not graded"
    return None


def _collect(w: _Worker, done, exercises: list[Exercise], limit: float, notebook_timeout: float) -> str | None:
    """Take what worker ``w`` sent (ready, a result, a grader's fault) and say why it must be replaced: it died,
    or it has had its submission longer than ``limit`` seconds (None: it goes on)."""
    message = None
    try:
        if w.conn.poll():
            message = w.conn.recv()
    except (EOFError, OSError):  # it is exiting: let it finish, to read its exit code
        w.proc.join(5)
    if message == "ready":
        w.ready = True
        return None
    if isinstance(message, tuple) and message[0] == "fatal":
        raise RuntimeError(message[1])
    if isinstance(message, (Result, tuple)):
        entry, w.entry = w.entry, None
        if isinstance(message, Result):
            done(entry, message, False)
        else:
            done(entry, _ungraded(entry, message[1], exercises), True)
        return None
    if not w.proc.is_alive():
        if not w.ready:
            raise RuntimeError(f"a grading worker could not start (exit code {w.proc.exitcode})")
        return f"the grader's worker died while grading it (exit code {w.proc.exitcode})"
    if w.entry and time.monotonic() > w.since + limit:
        return (f"the grader stopped it: no result {limit:.0f} s after it started (its time limit is "
                f"{notebook_timeout:g} s)")
    return None


def grade_entries(entries: list[Entry], done, *, jobs: int = 1, solution=None,
                  exercises: list[Exercise] | None = None, limits: dict | None = None,
                  grace: float | None = None) -> None:
    """Grade ``entries``, ``jobs`` at a time, each in a worker process.

    ``done(entry, result, fault)`` is called in this process as each one is graded (in the order they finish);
    ``fault`` is True when the grader, not the submission, is why it got nothing (a worker that failed, died or
    was stopped: a rerun tries it again). ``solution``, ``exercises`` and ``limits`` are those of
    :func:`~fmlearn.grading.grade_submission` (``exercises``: from :func:`default_solutions` by default). A worker
    with no result ``notebook_timeout`` + ``grace`` seconds (:func:`default_grace` by default) after it got a
    submission is stopped, its sandbox too: that submission gets 0 and the reason, and a fresh worker goes on.

    Raises:
        ValueError: ``jobs`` below 1.
        RuntimeError: a worker that dies before it is ready (the grader cannot start at all), or a jail that
            cannot run here (:class:`~fmlearn.grading._jail.JailUnavailable`'s message).
    """
    if type(jobs) is not int or jobs < 1:
        raise ValueError(f"jobs: expected an integer >= 1, got {jobs!r}")
    limits = dict(limits or {})
    limit = limits.get("notebook_timeout", 600.0)
    limit += default_grace(limit) if grace is None else grace
    if exercises is None:
        folder = default_solutions()
        exercises = load_exercises(folder) if folder.is_dir() else []
    pending = deque()
    for entry in entries:
        reason = _refusal(entry)
        if reason is None:
            pending.append(entry)
        else:
            done(entry, _ungraded(entry, reason, exercises), False)
    if not pending:
        return
    ctx = multiprocessing.get_context("spawn")
    workers = [_Worker(ctx, solution, exercises, limits) for _ in range(min(jobs, len(pending)))]
    try:
        while pending or any(w.entry for w in workers):
            for w in workers:
                if w.ready and w.entry is None and pending:
                    w.give(pending.popleft())
            now = time.monotonic()
            busy = [w for w in workers if w.entry]
            wait = min([w.since + limit - now for w in busy] + [5.0])
            multiprocessing.connection.wait([w.conn for w in workers] + [w.proc.sentinel for w in workers],
                                            max(wait, 0.0))
            for i, w in enumerate(workers):
                reason = _collect(w, done, exercises, limit, limits.get("notebook_timeout", 600.0))
                if reason is not None:
                    entry = w.entry
                    w.kill()
                    workers[i] = _Worker(ctx, solution, exercises, limits)
                    if entry is not None:
                        done(entry, _ungraded(entry, reason, exercises), True)
    finally:
        for w in workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                w.conn.send(None)
        for w in workers:
            w.proc.join(5 if w.entry is None else 0)
            w.kill()


# --- a class, from the file list to the gradebook --------------------------------------------------------------

def _row(entry: Entry, result: Result) -> Row:
    return Row(result, entry.student, entry.assignment or result.exercise, entry.timestamp)


def _resume(path: Path, mine: list[Entry], k: int, n: int) -> dict[str, Row]:
    """The rows a journal already holds for this slice's unchanged files (not those the grader failed on)."""
    before, old = read_journal(path)
    if before is None and not old:
        return {}
    if before is not None and before["shard"] != [k, n]:
        raise ValueError(f"--out: {path} holds the grades of slice {before['shard'][0]}/{before['shard'][1]}, "
                         f"not {k}/{n}; pass another --out")
    rows, changed, faults = {}, 0, 0
    for e in mine:
        record = old.get(e.file)
        if record is None:
            continue
        if record["sha256"] != file_digest(e.file):
            changed += 1
        elif record["fault"]:
            faults += 1
        else:
            rows[e.file] = _row(e, Row.from_json(record).result)
    again = [f"{changed} changed since"] * bool(changed) + [f"{faults} the grader failed on"] * bool(faults)
    print(f"resuming from {path}: {len(rows)} of {len(mine)} submissions already graded, {len(mine) - len(rows)} "
          "to grade" + (f" ({', '.join(again)})" if again else ""), file=sys.stderr)
    return rows


def grade_class(entries: list[Entry], out: str | os.PathLike | None = None, *, shard_of: tuple[int, int] = (1, 1),
                jobs: int = 1, regrade: bool = False, solution=None, exercises: list[Exercise] | None = None,
                limits: dict | None = None) -> list[Row]:
    """Grade the ``shard_of`` slice of ``entries`` (the whole class by default) and return its rows, in file order;
    progress goes to stderr (a line per submission graded, what was resumed, and how long the class took).

    With ``out``, every row goes to the journal ``<out>.jsonl`` as it is graded; rows the journal already holds
    for unchanged files are kept, not graded again, unless the grader was at fault (``regrade``: start the
    journal afresh).

    Raises:
        ValueError: ``out``'s journal holds another slice (``--shard``) than this one, or is no journal.
        RuntimeError: another run is writing that journal; or, from :func:`grade_entries`, the grader cannot
            start or its jail cannot run here.
    """
    k, n = shard_of
    mine = shard(entries, k, n)
    sliced = {"shard": [k, n], "files": [e.file for e in mine], "class_size": len(entries),
              "class_digest": _digest([e.file for e in entries])}
    path = journal_path(out) if out is not None else None
    rows: dict[str, Row] = {}
    journal = None if path is None else Journal(path, fresh=regrade)
    try:
        if journal is not None:
            rows = _resume(path, mine, k, n)
            journal.start(sliced)
        started, todo = time.monotonic(), [e for e in mine if e.file not in rows]

        def done(entry: Entry, result: Result, fault: bool) -> None:
            row = _row(entry, result)
            rows[entry.file] = row
            if journal is not None:
                journal.append(row, file_digest(entry.file), fault)
            print(f"graded {entry.file} ({result.seconds:.1f} s)", file=sys.stderr)

        grade_entries(todo, done, jobs=jobs, solution=solution, exercises=exercises, limits=limits)
    finally:
        if journal is not None:
            journal.close()
    seconds = time.monotonic() - started
    rate = f", {60 * len(todo) / seconds:.1f} per minute" if todo and seconds > 0 else ""
    print(f"class: {len(todo)} submissions graded in {seconds:.1f} s{rate} with {jobs} job{'s' * (jobs > 1)}"
          + (f"; {len(mine) - len(todo)} taken from {path}" if len(mine) > len(todo) else "")
          + (f" (slice {k}/{n} of {len(entries)})" if n > 1 else ""), file=sys.stderr)
    return [rows[e.file] for e in mine]


def merge(paths: list[str | os.PathLike]) -> list[Row]:
    """The rows of the journals of the N slices of one class, in file order: each ``path`` is a journal
    (``.jsonl``) or the ``--out`` it sits beside.

    Raises:
        ValueError: a path that is no journal; slices cut from different lists; a slice given twice or missing;
            a row in two slices; a slice whose submissions are not all graded.
    """
    if not paths:
        raise ValueError("merge: expected the journals of a class's slices, got none")
    slices: dict[int, tuple[Path, dict, dict]] = {}
    for p in map(Path, paths):
        path = p if p.suffix == ".jsonl" else journal_path(p)
        if not path.is_file():
            raise ValueError(f"merge: {p} is not a grading journal, and there is no {path} beside it")
        sliced, rows = read_journal(path)
        if sliced is None:
            raise ValueError(f"merge: {path} is not a grading journal (no slice record)")
        k, n = sliced["shard"]
        first = next(iter(slices.values()), None)
        if first is not None and (first[1]["shard"][1], first[1]["class_digest"]) != (n, sliced["class_digest"]):
            raise ValueError(f"merge: {path} (slice {k}/{n} of {sliced['class_size']} files) and {first[0]} (slice "
                             f"{first[1]['shard'][0]}/{first[1]['shard'][1]} of {first[1]['class_size']} files) "
                             "were not cut from the same list of submissions")
        if k in slices:
            raise ValueError(f"merge: slice {k}/{n} given twice: {slices[k][0]} and {path}")
        slices[k] = (path, sliced, rows)
    n = next(iter(slices.values()))[1]["shard"][1]
    missing = [f"{k}/{n}" for k in range(1, n + 1) if k not in slices]
    if missing:
        raise ValueError(f"merge: slice{'s' * (len(missing) > 1)} {', '.join(missing)} missing")
    merged: dict[str, tuple[Path, Row]] = {}
    for k in sorted(slices):
        path, sliced, rows = slices[k]
        absent = [f for f in sliced["files"] if f not in rows]
        if absent:
            raise ValueError(f"merge: {path}: {len(absent)} of its {len(sliced['files'])} submissions are not graded "
                             f"(e.g. {absent[0]}); run its slice again (it resumes)")
        for f in sliced["files"]:
            if f in merged:
                raise ValueError(f"merge: {f} is in two slices: {merged[f][0]} and {path}")
            merged[f] = (path, Row.from_json(rows[f]))
    return [merged[f][1] for f in sorted(merged)]
