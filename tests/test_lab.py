"""The README's first command, tried as a learner would: `make lab` starts JupyterLab (as root too), a chapter
opened, run and saved there keeps its .py byte for byte, an exercise saved with an answer and outputs is the
learner's own business, and the test command's notebook and exercise rules still pass.

Runs on a copy of the working tree (tracked and new files) committed to a scratch git repository, with the
course's own virtual environment; nothing in the repository is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from _servers import free_port, running_lab
from _tracked import tracked_text

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
CHAPTER = "chapters/01_gaussian_mixture_cfm"

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None
                                or not (VENV / "bin" / "jupyter").exists(),
                                reason="needs make, git and the course's virtual environment")


def _copy_tree(dest: Path) -> None:
    """The course as git would commit it: staged copies of tracked files (not a learner's saved outputs; file
    times kept, so make sees the environment as up to date), new files as they are."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
            staged = tracked_text(ROOT / rel) if rel.endswith((".ipynb", ".py")) else None
            if staged is not None and staged != (ROOT / rel).read_text():
                (dest / rel).write_text(staged)
                shutil.copystat(ROOT / rel, dest / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run(git + cmd, cwd=dest, check=True, capture_output=True)


def _api(port: int, token: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}", method="PUT" if body else "GET",
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture
def lab(tmp_path):
    """`make lab` in a copy of the course; yields (folder, port, token)."""
    _copy_tree(tmp_path)
    port, token = free_port(), "fmlearn-test"
    # -o setup: use the existing environment as it is (never reinstall it from the copy).
    cmd = ["make", "-o", "setup", "lab", f"VENV={VENV}",
           f"LAB_ARGS=--no-browser --port {port} --IdentityProvider.token={token}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMLEARN_")}
    with running_lab(cmd, tmp_path, env, port, token, "make lab"):
        yield tmp_path, port, token


def test_make_lab_answers_and_a_saved_chapter_passes_the_notebook_tests(lab):
    folder, port, token = lab
    listing = sorted(item["name"] for item in _api(port, token, "contents/chapters")["content"])
    assert "01_gaussian_mixture_cfm.ipynb" in listing
    assert not [name for name in listing if name.endswith(".py")], f"the paired .py files show too: {listing}"

    py_before = (folder / f"{CHAPTER}.py").read_bytes()
    model = _api(port, token, f"contents/{CHAPTER}.ipynb")
    nb = model["content"]
    for cell in nb["cells"]:  # what running every cell and saving leaves behind
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "a learner's output\n"}]
            cell["execution_count"] = 1
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11"}
    _api(port, token, f"contents/{CHAPTER}.ipynb", {"type": "notebook", "format": "json", "content": nb})

    exercise = "exercises/ex01_gaussian_mixture_cfm"  # and a learner's answer in an exercise, saved with outputs
    nb = _api(port, token, f"contents/{exercise}.ipynb")["content"]
    blank = next(c for c in nb["cells"] if "raise NotImplementedError()" in "".join(c["source"]))
    blank["source"] = "".join(blank["source"]).replace("raise NotImplementedError()", "pass  # my answer")
    blank["outputs"], blank["execution_count"] = [{"output_type": "stream", "name": "stdout", "text": "ok\n"}], 3
    _api(port, token, f"contents/{exercise}.ipynb", {"type": "notebook", "format": "json", "content": nb})
    assert "# my answer" in (folder / f"{exercise}.py").read_text()

    saved = json.loads((folder / f"{CHAPTER}.ipynb").read_text())
    assert any(c.get("outputs") for c in saved["cells"]), "the save did not reach the file"
    assert (folder / f"{CHAPTER}.py").read_bytes() == py_before, "saving in JupyterLab rewrote the .py"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_notebooks.py",
                          "tests/test_exercises.py::test_committed_exercises_equal_a_fresh_build"],
                         cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]


def test_executing_a_notebook_prints_no_kernel_warning(tmp_path):
    """`jupyter nbconvert --execute` in the course's environment is quiet: no "Kernel is running over TCP without
    encryption" line (ipykernel >= 7 prints it at every start; the course's kernel settings log errors only)."""
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, tmp_path / "t.ipynb")
    run = subprocess.run([str(VENV / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "t.ipynb",
                          "--output", "out.ipynb"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "42" in (tmp_path / "out.ipynb").read_text()
    assert "without encryption" not in run.stderr, run.stderr
    assert not list(tmp_path.glob("kernel-*")), "the kernel left socket files in the notebook's folder"
