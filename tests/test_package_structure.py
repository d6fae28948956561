"""The package's structure (issue 11): no private name imported across modules, no import cycle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fmlearn"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _relative_imports(path: Path):
    """(module imported, names) of every relative import at any level of the file."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            yield ".".join(base + ([node.module] if node.module else [])), [a.name for a in node.names], node


def _modules():
    return [p for p in PACKAGE.rglob("*.py") if "exercises" not in p.parts and "grading" not in p.parts]


def test_no_private_name_crosses_a_module():
    crossing = [f"{_module_name(p)} imports {name} from {mod}" for p in _modules()
                for mod, names, _ in _relative_imports(p) for name in names if name.startswith("_")]
    assert not crossing, crossing


def test_no_import_cycle_at_module_level():
    """The graph of top-level relative imports (imports inside functions excluded) has no cycle."""
    graph = {}
    for p in _modules():
        top = {node.lineno for node in ast.parse(p.read_text()).body}
        graph[_module_name(p)] = {mod for mod, _, node in _relative_imports(p) if node.lineno in top}
    state = {}

    def visit(m, stack):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", " -> ".join(stack + [m])
        state[m] = "open"
        for n in graph.get(m, ()):
            if n != m and not n.startswith(m + "."):  # a package's __init__ importing its own submodules
                visit(n, stack + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


def _public_functions():
    import importlib
    import inspect

    for p in _modules():
        module = importlib.import_module(_module_name(p))
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for mname, meth in vars(obj).items():
                    if inspect.isfunction(meth) and not mname.startswith("_"):
                        yield f"{module.__name__}.{name}.{mname}", meth


def test_type_hints_name_real_types():
    """Every annotation of a public function resolves (typing.get_type_hints evaluates the postponed strings):
    a hint that names something not imported fails here rather than misleading a reader."""
    import typing

    bad = []
    for where, fn in _public_functions():
        try:
            typing.get_type_hints(fn)
        except Exception as err:  # noqa: BLE001 - any failure to resolve is the finding
            bad.append(f"{where}: {err}")
    assert not bad, bad
