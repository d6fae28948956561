"""What the web book adds to the notebooks as it reads them (a Sphinx extension; see book/conf.py).

- Each chapter ends with "fmlearn objects used in this chapter": links into the API reference for every
  fmlearn function or class its code names (found by parsing the code cells, resolved by importing them).
- Each exercise page starts with a note and a link back to its chapter, and is executed with errors allowed:
  the handed-out stubs raise ``NotImplementedError`` and their checks say so.
- A book built in quick mode says so at the top of every chapter.
- Equations are typeset by MathJax 3.2.2 (SVG output, the version JupyterLab bundles), copied into the book's
  _static folder from the pip package django-static-mathjax: no CDN, no web font.
- Every figure gets alt text: the notebook output's own when it has one (fmlearn.plotting displays a figure as
  an <img alt> text/html, which the book shows, and stores the same text in the output's metadata), else, for
  an image output without one, the sentence that introduces it (the markdown paragraph before its code cell).
- The front page's course map (read from the README) drops the README's status column.
- Search works from disk: Sphinx fetches each hit's page for its snippet, which a browser refuses under
  file://, so the search page carries the pages' text (_static/fmlearn-search-pages.js) and answers those
  fetches from it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import html
import re
from html.parser import HTMLParser
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
    _intros[docname] = figure_intros(nb)
    source[0] = json.dumps(nb)


# -- alt text for every figure ------------------------------------------------------------------------------------
_intros: dict[str, dict[int, str]] = {}  # docname -> {code cell index: the sentence that introduces its figures}


_SYMBOLS = {"propto": "∝", "partial": "∂", "nabla": "∇", "mid": "|", "to": "→", "le": "≤", "leq": "≤", "ge": "≥",
            "geq": "≥", "approx": "≈", "cdot": "·", "times": "×", "sim": "~", "infty": "∞", "in": "∈", "quad": " ",
            "qquad": " ", "ldots": "…", "dots": "…"}


def plain_text(markdown: str) -> str:
    """Markdown as a screen reader should hear it: no markup, no TeX commands, one line."""
    text = re.sub(r"<[^>]+>", "", markdown)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"\{[a-z:]+\}`([^`<]*?)\s*(<[^>]*>)?`", r"\1", text)  # roles: their text
    text = re.sub(r"\\(?:mathrm|mathbf|mathbb|mathcal|operatorname|text|textrm|boldsymbol)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    text = re.sub(r"\\(?:mathrm|mathbf|mathbb|mathcal|operatorname|boldsymbol|left|right|[Bb]igg?[lr]?)(?![A-Za-z])\s*",
                  "", text)
    text = re.sub(r"\\([A-Za-z]+)", lambda m: _SYMBOLS.get(m.group(1), m.group(1)), text).replace("$", "")
    text = re.sub(r"[*`#>{}]|^\s*[-:]+\s*", "", text, flags=re.M)
    return re.sub(r"\s+", " ", text).strip()


def intro_sentence(markdown: str, limit: int = 240) -> str:
    """The last paragraph of a markdown cell (the one that leads into the code below it), cut at a sentence."""
    paragraphs = [p for p in re.split(r"\n\s*\n", markdown) if p.strip() and not p.lstrip().startswith(":::")]
    text = plain_text(paragraphs[-1]) if paragraphs else ""
    if len(text) > limit:
        cut = max(text.rfind(". ", 0, limit), text.rfind("; ", 0, limit))
        text = text[: cut + 1] if cut > 40 else text[:limit].rsplit(" ", 1)[0] + "…"
    return text


def figure_intros(nb: dict) -> dict[int, str]:
    """For each code cell, the sentence that would introduce a figure it draws: the last paragraph of the markdown
    before it (or its section's title)."""
    out: dict[int, str] = {}
    last, heading = "", ""
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            headings = re.findall(r"^#+\s+(.*)$", src, re.M)
            heading = plain_text(headings[-1]) if headings else heading
            last = intro_sentence(src) or (f"Figure of the section {heading}" if heading else "")
        elif cell["cell_type"] == "code":  # outputs come later (executed or cached): every code cell gets one
            out[i] = last or f"A figure of {nb.get('metadata', {}).get('title', 'this page')}"
    return out


def output_alt(data) -> str:
    """The alt text a notebook output carries itself: fmlearn.plotting stores a figure's as
    metadata["text/html"]["alt"] (beside its <img alt> text/html); any image's metadata "alt" is read too."""
    meta = data.output_metadata or {}
    for value in (meta.get(data.mime_type), meta.get("text/html"), *meta.values()):
        if isinstance(value, dict) and str(value.get("alt") or "").strip():
            return str(value["alt"]).strip()
    return str(meta.get("alt") or "").strip()


def _patch_image_alt() -> None:
    """myst-nb writes an image with no alt (docutils then uses its file name, a hash): give it one."""
    from myst_nb.core.render import NbElementRenderer

    if getattr(NbElementRenderer.render_image, "_fmlearn", False):
        return
    original = NbElementRenderer.render_image

    def render_image(self, data):
        result = original(self, data)
        docname = self.renderer.document.settings.env.docname
        alt = output_alt(data) or _intros.get(docname, {}).get(data.cell_index, "")
        for node in result:
            if isinstance(node, nodes.image) and not node.get("alt"):
                node["alt"] = alt or "A figure (no description given)"
        return result

    render_image._fmlearn = True
    NbElementRenderer.render_image = render_image


# -- the front page: the README's course map without its status column ------------------------------------------
def drop_status_column(app, relative_path, parent_docname, content: list[str]) -> None:
    if Path(relative_path).name != "README.md":
        return
    lines = content[0].splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\|\s*#\s*\|\s*chapter\s*\|\s*status\s*\|\s*$", line):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                cells = lines[j].rstrip().rstrip("|").split("|")
                lines[j] = "|".join(cells[:-1]) + "|"
                j += 1
            break
    content[0] = "\n".join(lines) + "\n"


# -- MathJax, shipped with the book ----------------------------------------------------------------------------
MATHJAX_FILES = ("tex-svg-full.js",)


def mathjax_dir() -> Path:
    """MathJax 3's browser components as the pip package django-static-mathjax installs them."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    found = [Path(p) / "static" / "mathjax" for p in (spec.submodule_search_locations or [])] if spec else []
    for path in found:
        if (path / "es5" / MATHJAX_FILES[0]).is_file():
            return path
    raise RuntimeError("MathJax not found: the book needs the pip package django-static-mathjax "
                       "(pip install -e '.[dev]', or make setup)")


def add_mathjax(app) -> None:
    """Copy MathJax's one component the book loads, with its license, to _static/mathjax/."""
    if app.builder.format != "html":
        return
    src = mathjax_dir()
    static = Path(app.outdir).parent / "static-mathjax"
    (static / "mathjax").mkdir(parents=True, exist_ok=True)
    for name in MATHJAX_FILES:
        data = (src / "es5" / name).read_bytes()
        target = static / "mathjax" / name
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
    (static / "mathjax" / "LICENSE").write_bytes((src / "LICENSE").read_bytes())
    if str(static) not in app.config.html_static_path:
        app.config.html_static_path.append(str(static))


# -- search from disk ------------------------------------------------------------------------------------------
class _Text(HTMLParser):
    """A page's article as light HTML: its text, in elements that keep only their ids (the search's anchors)."""

    SKIP = {"script", "style", "svg", "img", "button", "nav", "form"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[str] = []
        self.skip = 0
        self.inside = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article":
            self.inside += 1
        if not self.inside or tag in ("br", "hr", "input", "meta", "link", "img"):
            return
        if self.skip or tag in self.SKIP or "headerlink" in (a.get("class") or ""):
            self.stack.append("skip")
            self.skip += 1
            return
        if a.get("id"):
            self.out.append(f'<div id="{html.escape(a["id"], quote=True)}">')
            self.stack.append("div")
        else:
            self.stack.append("")
            if tag in ("p", "li", "h1", "h2", "h3", "h4", "pre", "tr", "div"):
                self.out.append(" ")

    def handle_endtag(self, tag):
        if tag in ("br", "hr", "input", "meta", "link", "img") or not self.inside:
            return
        if tag == "article":
            self.inside -= 1
        if not self.stack:
            return
        kind = self.stack.pop()
        if kind == "skip":
            self.skip -= 1
        elif kind == "div":
            self.out.append("</div>")

    def handle_data(self, data):
        if self.inside and not self.skip:
            self.out.append(html.escape(re.sub(r"\s+", " ", data), quote=False))


def page_text(page_html: str) -> str:
    parser = _Text()
    parser.feed(page_html)
    return '<div role="main">' + "".join(parser.out) + "</div>"


def write_search_pages(app, exception) -> None:
    """_static/fmlearn-search-pages.js: every page's text, for the snippets under each search hit."""
    if exception or app.builder.format != "html":
        return
    out = Path(app.outdir)
    pages = {}
    for docname in sorted(app.env.found_docs):
        path = out / f"{docname}.html"
        if path.is_file():
            pages[f"{docname}.html"] = page_text(path.read_text(encoding="utf-8"))
    body = "window.FMLEARN_PAGES = " + json.dumps(pages, ensure_ascii=False) + ";\n"
    (out / "_static" / "fmlearn-search-pages.js").write_text(body, encoding="utf-8")


def search_page_assets(app, pagename, templatename, context, doctree) -> None:
    if pagename == "search":
        app.builder.add_js_file("fmlearn-search-pages.js")
        app.builder.add_js_file("fmlearn-search.js")


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
    app.connect("include-read", drop_status_column)
    app.connect("builder-inited", add_mathjax)
    app.connect("html-page-context", search_page_assets)
    app.connect("build-finished", write_search_pages)
    _patch_image_alt()
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
