"""What the web book adds to the notebooks as it reads them (a Sphinx extension; see book/conf.py).

- Each chapter ends with "fmlearn objects used in this chapter": links into the API reference for every
  fmlearn function or class its code names (found by parsing the code cells, resolved by importing them).
- Each exercise page starts with a note and a link back to its chapter, and is executed with errors allowed:
  the handed-out stubs raise ``NotImplementedError`` and their checks say so.
- A book built in quick mode says so at the top of every chapter.
- Equations become MathML when the book is built (docutils' LaTeX-to-MathML converter), which every current
  browser draws itself: no MathJax, no CDN, no web fonts, nothing to run when a page is opened from disk.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

from docutils import nodes

ROOT = Path(__file__).resolve().parents[2]


def documented_modules() -> set[str]:
    """The modules the API page documents with their members (book/api.md)."""
    text = (ROOT / "book" / "api.md").read_text()
    mods = set()
    for block in re.finditer(r"\.\. automodule:: (\S+)\n(.*?)```", text, re.S):
        if ":no-members:" not in block.group(2):
            mods.add(block.group(1))
    return mods


def _code(cell: dict) -> str:
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())


def fmlearn_names(code_cells: list[str]) -> list[str]:
    """Dotted names ``fmlearn.x.y`` that the code refers to, through its imports' aliases, in order of first use."""
    aliases: dict[str, str] = {}
    trees = []
    for src in code_cells:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        trees.append(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "fmlearn":
                        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "fmlearn"
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fmlearn":
                for a in node.names:
                    if a.name != "*":
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found: list[str] = []

    def dotted(node: ast.AST) -> list[str] | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in aliases:
            return [aliases[node.id], *reversed(parts)]
        return None

    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(getattr(node, "ctx", None), ast.Load):
                parts = dotted(node)
                if parts:
                    name = ".".join(parts)
                    if name not in found:
                        found.append(name)
    for full in aliases.values():  # imported names count as used
        if full not in found:
            found.append(full)
    return found


def resolve(name: str, documented: set[str]) -> tuple[str, str] | None:
    """(documented path module.qualname, the name as the code spells it up to that object) of the object a dotted
    fmlearn name reaches, or None (a module, an instance, a private or undocumented object)."""
    parts = name.split(".")
    obj: Any = importlib.import_module(parts[0])
    used = 1
    for part in parts[1:]:
        if inspect.ismodule(obj):
            try:
                obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(f"{obj.__name__}.{part}")
            except ImportError:
                return None
            used += 1
        elif inspect.isclass(obj):
            break  # a class's attribute: link the class
        else:
            return None
    if inspect.ismodule(obj) or not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return None
    mod, qual = getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")
    if mod not in documented or "<" in qual or any(p.startswith("_") for p in qual.split(".")):
        return None
    return f"{mod}.{qual}", ".".join(parts[:used])


def used_objects(notebook: dict) -> list[tuple[str, str]]:
    """(documented path, spelled name) of every fmlearn object the notebook's code names, in order of first use."""
    documented = documented_modules()
    code = [_code(c) for c in notebook["cells"] if c["cell_type"] == "code"]
    out: dict[str, str] = {}
    for name in fmlearn_names(code):
        hit = resolve(name, documented)
        if hit and hit[0] not in out:
            out[hit[0]] = hit[1]
    return list(out.items())


def _markdown(text: str, key: str) -> dict:
    return {"cell_type": "markdown", "id": f"fmlearn-book-{key}", "metadata": {}, "source": text}


def _chapter_of(exercise: str) -> Path | None:
    number = re.match(r"ex(\d+)", exercise)
    hits = sorted((ROOT / "chapters").glob(f"{number.group(1)}_*.ipynb")) if number else []
    return hits[0] if hits else None


def on_source_read(app, docname: str, source: list[str]) -> None:
    if not (docname.startswith("chapters/") or docname.startswith("exercises/")):
        return
    nb = json.loads(source[0])
    quick = app.config.fmlearn_quick
    if docname.startswith("chapters/"):
        used = used_objects(nb)
        lines = ["## fmlearn objects used in this chapter", "",
                 "Every `fmlearn` function and class this chapter's code uses, as the code names it, linked to its "
                 "entry in the [API reference](../book/api.md):", ""]
        for target, spelled in used:
            lines.append(f"- {{py:obj}}`{spelled} <{target}>`")  # as the code spells it, linked to where it is defined
        nb["cells"].append(_markdown("\n".join(lines), "used"))
        if quick:
            nb["cells"].insert(1, _markdown(
                ":::{note}\nThis page was built in **quick mode** (`FMLEARN_QUICK=1`): every training run is "
                "shortened, so its numbers are rougher than the chapter's default run gives (the asserts use "
                "the quick thresholds).\n:::", "quick"))
    else:
        nb.setdefault("metadata", {})["mystnb"] = {"execution_allow_errors": True}
        chapter = _chapter_of(docname.split("/", 1)[1])
        back = f"[its chapter](../chapters/{chapter.name})" if chapter else "its chapter"
        nb["cells"].insert(1, _markdown(
            ":::{note}\nThis exercise is shown as it is handed out, executed: every task is still a stub, so "
            "each check below it says the task is not written yet. Read " + back + " first, then open this "
            "notebook in JupyterLab (`make lab`) and write the tasks.\n:::", "exercise"))
    source[0] = json.dumps(nb)


# -- equations as MathML ---------------------------------------------------------------------------------------
_SIZES = re.compile(r"\\[Bb]igg?[lr]?(?![a-zA-Z])")


def tex_for_mathml(tex: str) -> str:
    """The few TeX habits docutils' converter lacks, rewritten: delimiter sizes (\\big, \\Big: MathML stretches
    delimiters itself), {\\rm X} as \\mathrm{X}, \\textstyle, \\dots as \\ldots."""
    tex = _SIZES.sub("", tex)
    tex = re.sub(r"\{\\rm\s+([^{}]*)\}", r"\\mathrm{\1}", tex)
    tex = re.sub(r"\\rm\s+([A-Za-z]+)", r"\\mathrm{\1}", tex)
    tex = re.sub(r"\\rm\{", r"\\mathrm{", tex)
    tex = re.sub(r"\\(text|display|script)style(?![a-zA-Z])", "", tex)
    return re.sub(r"\\dots(?![a-zA-Z])", r"\\ldots", tex)


def to_mathml(tex: str, block: bool, where: str) -> str:
    from docutils.utils.math import latex2mathml
    from sphinx.util import logging

    try:
        return latex2mathml.tex2mathml(tex_for_mathml(tex), as_block=block)
    except Exception as err:  # a formula the converter cannot read: say which, show the TeX
        logging.getLogger(__name__).warning(f"cannot convert to MathML ({err}): {tex!r}", location=where)
        import html

        return f'<code class="math-error">{html.escape(tex)}</code>'


def visit_math_inline(self, node) -> None:
    self.body.append(to_mathml(node.astext(), False, node))
    raise nodes.SkipNode


def visit_math_block(self, node) -> None:
    number = node.get("number")
    label = f'<span class="eqno">({number})</span>' if number else ""
    ident = f' id="{node["ids"][0]}"' if node.get("ids") else ""
    self.body.append(f'<div class="math-display"{ident}>{label}{to_mathml(node.astext(), True, node)}</div>')
    raise nodes.SkipNode


# -- docstrings: written as plain text with ``literals`` and :func:`roles`; | and * are maths there, not markup --
_LITERAL = re.compile(r"(``.+?``|:\w+:`[^`]+`|`[^`]+`_?)")


def escape_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)
        lines[i] = "".join(part if k % 2 else part.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
                           for k, part in enumerate(parts))


def setup(app):
    app.add_config_value("fmlearn_quick", False, "env")
    app.connect("source-read", on_source_read)
    app.connect("autodoc-process-docstring", escape_docstring, priority=600)  # after napoleon (500)
    app.add_html_math_renderer("mathml", (visit_math_inline, None), (visit_math_block, None))
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
