"""Setup files agree with each other: pyproject.toml, environment.yml, .ci/run, the README."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return dict(_split(r) for r in reqs)


def _environment() -> dict[str, str]:
    deps = {}
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        if in_deps and re.match(r"^\s+-\s", line):
            name, spec = _split(line.split("-", 1)[1].strip())
            deps[CONDA_TO_PYPI.get(name, name)] = spec
        elif in_deps and line.strip() and not line.startswith(" "):
            in_deps = False
    return {k: v for k, v in deps.items() if k not in {"python", "pip"}}


def test_environment_lists_the_same_packages_as_pyproject():
    """Same names and the same lower bounds in both files (parsed independently)."""
    assert _environment() == _pyproject()


def test_pyproject_uses_lower_bounds_only():
    """Dependencies are open-ended (>=), so the course installs beside newer releases."""
    for name, spec in _pyproject().items():
        assert spec.startswith(">=") and "," not in spec and "<" not in spec, f"{name}{spec}"


def test_ci_runs_the_readme_test_command():
    """.ci/run calls the command the README gives as its second command."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    assert len(commands) >= 2, "the README must open with its two commands in code blocks"
    test_command = commands[1].strip().splitlines()[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines(), f"{test_command!r} not in .ci/run"
