"""What git tracks: the version of a file that a commit would hold.

A learner who opens, runs and saves a chapter in JupyterLab stores outputs in its .ipynb (and fills in
exercises); those local changes are theirs to keep and must never make the test command fail. The
rules about *committed* notebooks (no outputs, exercises equal to a fresh build) are therefore checked
on git's staged copy (the index), which holds what was cloned until someone stages a change.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def in_git_checkout() -> bool:
    try:
        out = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    except FileNotFoundError:
        return False
    return out.returncode == 0 and out.stdout.strip() == "true"


def tracked_text(path: Path) -> str | None:
    """The staged (index) text of ``path``, or None when git does not track it."""
    rel = Path(path).resolve().relative_to(ROOT).as_posix()
    out = subprocess.run(["git", "show", f":{rel}"], cwd=ROOT, capture_output=True)
    return out.stdout.decode() if out.returncode == 0 else None


def committed_text(path: Path) -> str:
    """What a commit would hold for ``path``: git's staged copy when git tracks the file (a learner's
    unstaged outputs and answers are ignored), else the file itself (a new file, or no git at all)."""
    if in_git_checkout():
        text = tracked_text(path)
        if text is not None:
            return text
    return Path(path).read_text()
