"""The web book (issues 15 and 22), built in quick mode as CI builds it: every chapter and exercise executed,
nothing fetched from a network, equations left to the MathJax the book ships, widgets as their HTML explorers,
links that resolve, alt text on every figure; then, in a headless Chromium with the network switched off, every
page loads without a console error, every equation is typeset as JupyterLab typesets it (no subscript stacked
under an accent, the notation page's constructs in their reference layout), every figure is drawn, every
explorer's slider changes its figure, search finds pages with snippets, and axe-core finds no serious
accessibility violation on the front page and three chapters.

The build (``make book-quick``: FMLEARN_QUICK=1, outputs cached in build/book-quick/.jupyter_cache) runs once
for this module; a rebuild re-executes only notebooks whose code changed. Under ``make test`` each notebook is
executed once: the chapters run under nbval first, their executions go into that cache (tests/_executed.py), and
the handed-out exercises come from tests/test_exercises.py's executions (run as the book runs them), and the book
executes only the notebooks this run did not (a deselected or failing chapter, an exercise a learner filled in).
"""

from __future__ import annotations

import base64
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from _browser import chromium, console_errors, needs_browser, screenshot
from _executed import EXECUTED, book_notebooks, finished, planned, store_in_book_cache, wait_for

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "book-quick" / "html"
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("[0-9]*.ipynb"))
EXERCISES = sorted(p.stem for p in (ROOT / "exercises").glob("ex*.ipynb"))


def sphinx(out: Path, env: dict, include: list[str] | None = None) -> subprocess.CompletedProcess:
    """The book's build (make book-quick), into ``out``; ``include``: only these sources (and the front page)."""
    only = ["-D", "include_patterns=" + ",".join(["book/index.md", *include])] if include is not None else []
    return subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-c", "book", "-q", *only, ".", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def book(request) -> dict:
    env = {**os.environ, "FMLEARN_QUICK": "1", "FMLEARN_PROGRESS": "0"}
    start = time.monotonic()
    # Each notebook executed once: the chapters nbval runs in this session and the exercises test_exercises.py runs
    # come from their executions (tests/_executed.py). Under pytest-xdist the other worker may still be running the
    # last of them: meanwhile, the notebooks no test here executes are executed into the book's cache.
    from_tests = planned(request.session)
    running = [t for t in from_tests if not finished(t)] if hasattr(request.config, "workerinput") else []
    if running:
        others = [str(p) for p in book_notebooks() if EXECUTED / p not in from_tests]
        if others:
            pre = sphinx(OUT.parent / "prebuild", env, include=others)
            assert pre.returncode == 0, f"the book did not build:\n{pre.stdout[-2000:]}\n{pre.stderr[-4000:]}"
            shutil.rmtree(OUT.parent / "prebuild")  # its pages are rebuilt below; its executions are in the cache
        waited = time.monotonic()
        still = wait_for(running, timeout=600)  # a quick-mode chapter takes about a minute
        late = f" (not finished: the book executes {still})" if still else ""
        print(f"book: executed {len(others)} notebooks no test runs, then waited "
              f"{time.monotonic() - waited:.0f} s for the tests' last notebooks{late}")
    stored = store_in_book_cache(from_tests)
    print(f"book: {len(stored)} notebooks as this run's tests executed them: {', '.join(stored) or '-'}")
    run = sphinx(OUT, env)
    seconds = time.monotonic() - start
    assert run.returncode == 0, f"the book did not build:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    print(f"book (quick mode) built in {seconds:.0f} s")
    return {"log": run.stderr, "seconds": seconds}


def _msg(kind: str, **content) -> dict:
    return {"msg_type": kind, "header": {"msg_type": kind}, "parent_header": {"msg_id": "run"}, "content": content}


def test_nbvals_executions_give_the_outputs_nbclient_gives():
    """tests/_executed.py turns the kernel's messages nbval reads into a cell's outputs; the book's own executor
    (nbclient, through jupyter-cache) gets the same messages when it runs the cell. Reference: nbclient's own
    message handling, fed the same messages, for two cells: streams, a display updated from the next cell by its
    display id, clear_output (now and at the next output), a result and an error. Control: without the
    clear_output messages (what nbval's own outputs ignore) the outputs differ."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionComplete
    from nbformat.v4 import new_code_cell, new_notebook

    from _executed import outputs_from_messages

    png = {"image/png": "iVBORw0KGgo=", "text/html": '<img alt="a figure">', "text/plain": "<Figure>"}
    cells = [
        [_msg("stream", name="stdout", text="training\n"), _msg("stream", name="stdout", text="done\n"),
         _msg("display_data", data={"text/plain": "0%"}, metadata={}, transient={"display_id": "bar"}),
         _msg("display_data", data=png, metadata={"text/html": {"alt": "a figure"}}),
         _msg("stream", name="stderr", text="a warning\n"),
         _msg("execute_result", data={"text/plain": "42"}, metadata={}, execution_count=1)],
        [_msg("stream", name="stdout", text="gone\n"), _msg("clear_output", wait=False),
         _msg("update_display_data", data={"text/plain": "100%"}, metadata={}, transient={"display_id": "bar"}),
         _msg("stream", name="stdout", text="also gone\n"), _msg("clear_output", wait=True),
         _msg("stream", name="stdout", text="kept\n"),
         _msg("error", ename="ValueError", evalue="x", traceback=["ValueError: x"])],
    ]
    nb = new_notebook(cells=[new_code_cell("pass"), new_code_cell("pass")])
    client = NotebookClient(nb)
    for index, messages in enumerate(cells):
        client.clear_before_next_output = False  # as NotebookClient.async_execute_cell starts a cell
        for msg in messages:
            try:
                client.process_message(msg, nb.cells[index], index)
            except CellExecutionComplete:
                pass
    displays: dict = {}
    ours = [outputs_from_messages(messages, displays) for messages in cells]
    assert ours == [cell.outputs for cell in nb.cells]
    assert ours[0][2]["data"] == {"text/plain": "100%"} and ours[1][0]["text"] == "kept\n"
    assert ours[0][3]["metadata"] == {"text/html": {"alt": "a figure"}}  # the alt text the book reads

    lax = [outputs_from_messages([m for m in messages if m["msg_type"] != "clear_output"], {}) for messages in cells]
    assert lax != [cell.outputs for cell in nb.cells]


def test_nbval_runs_go_into_the_books_cache_and_a_failing_notebook_does_not(tmp_path):
    """End to end on two small notebooks in a scratch course: nbval runs them with the recorder on (as in
    make test); the one that passes is stored in a jupyter-cache, where myst-nb's lookup (the notebook as the book
    reads it: its code, plus the note cells the book inserts) finds its outputs; the one with a failing cell
    leaves only a marker (the book executes it itself), and stays a cache miss."""
    import nbformat
    from jupyter_cache import get_cache
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    course = tmp_path / "course"
    (course / "chapters").mkdir(parents=True)
    kernelspec = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    good = new_notebook(cells=[new_markdown_cell("# A"), new_code_cell("x = 6 * 7\nprint('x is', x)"),
                               new_code_cell(""), new_code_cell("x")], metadata={"kernelspec": kernelspec})
    bad = new_notebook(cells=[new_code_cell("print('before')"), new_code_cell("1 / 0"), new_code_cell("2")],
                       metadata={"kernelspec": kernelspec})
    nbformat.write(good, str(course / "chapters" / "01_good.ipynb"))
    nbformat.write(bad, str(course / "chapters" / "02_bad.ipynb"))
    (course / "conftest.py").write_text(
        "import sys\nfrom pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import _executed\n"
        "_executed.ROOT = Path(__file__).parent\n_executed.EXECUTED = _executed.ROOT / 'executed'\n"
        "def pytest_configure(config):\n"
        "    config.pluginmanager.register(_executed.NbvalRecorder(config), 'fmlearn-nbval-recorder')\n")
    env = {**os.environ, "FMLEARN_QUICK": "1", "FMLEARN_PROGRESS": "0"}
    env.pop("FMLEARN_DEVICE", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          "--nbval-lax", "--nbval-current-env", "--rootdir", str(course), "-c", "/dev/null",
                          str(course / "chapters")], cwd=course, env=env, capture_output=True, text=True,
                         timeout=600)
    assert "1 failed, 5 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]

    executed = course / "executed" / "chapters"
    assert sorted(p.name for p in executed.iterdir()) == ["01_good.ipynb", "02_bad.ipynb.failed"]
    import _executed

    stored = _executed.store_in_book_cache([executed / "01_good.ipynb", executed / "02_bad.ipynb"],
                                           cache_path=tmp_path / "cache", executed=course / "executed", root=course)
    assert stored == ["chapters/01_good.ipynb"]
    cache = get_cache(str(tmp_path / "cache"))
    as_read = nbformat.read(str(course / "chapters" / "01_good.ipynb"), as_version=4)
    as_read.cells.insert(1, new_markdown_cell(":::{note}\nquick mode\n:::"))  # what book/_ext inserts
    _, merged = cache.merge_match_into_notebook(as_read)
    code = [c for c in merged.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, None, 2]  # nbclient's numbering (an empty cell is not run)
    assert code[0].outputs[0].text == "x is 42\n" and code[0].outputs[0].name == "stdout"
    assert code[2].outputs[0].output_type == "execute_result" and code[2].outputs[0].data["text/plain"] == "42"
    assert merged.metadata["language_info"]["pygments_lexer"] == "ipython3"
    with pytest.raises(KeyError):
        cache.match_cache_notebook(nbformat.read(str(course / "chapters" / "02_bad.ipynb"), as_version=4))


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Page(HTMLParser):
    """The parts of a page the checks read: tags with their attributes, ids, text outside code and equations,
    and the TeX of each equation (Sphinx writes it as \\(..\\) or \\[..\\] in an element of class "math")."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()
        self.prose: list[str] = []
        self.tex: list[str] = []
        self._open: list[str] = []  # per open element: "" or what it is ("skip", "math")

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        if tag in _VOID:
            return
        classes = (a.get("class") or "").split()
        if "math" in classes:
            self._open.append("math")
            self.tex.append("")
        elif tag in ("pre", "code", "script", "style", "math", "svg") or "highlight" in (a.get("class") or ""):
            self._open.append("skip")
        else:
            self._open.append("")

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag not in _VOID and self._open:
            self._open.pop()

    def handle_data(self, data):
        if "math" in self._open:
            self.tex[-1] += data
        elif "skip" not in self._open:
            self.prose.append(data)


_parsed: dict[Path, _Page] = {}


def page(path: Path) -> _Page:
    if path not in _parsed:
        p = _Page()
        p.feed(path.read_text())
        _parsed[path] = p
    return _parsed[path]


def html_pages() -> list[Path]:
    return sorted(p for sub in ("book", "chapters", "exercises") for p in (OUT / sub).glob("*.html"))


def test_every_chapter_and_exercise_is_an_executed_page(book):
    for name in CHAPTERS:
        text = (OUT / "chapters" / f"{name}.html").read_text()
        assert text.count('class="cell_output') >= 5, f"{name}: too few outputs; was it executed?"
        assert "Traceback" not in text, f"{name}: an error output in a chapter"
        assert "quick mode" in text  # the page says how it was built
    for name in EXERCISES:
        text = (OUT / "exercises" / f"{name}.html").read_text()
        assert "is not written yet" in text, f"{name}: the handed-out stubs' checks did not run"


def test_no_page_needs_the_network(book):
    for path in html_pages():
        for tag, a in page(path).tags:
            for attr in ("src", "href") if tag in ("script", "img", "iframe", "link", "source") else ():
                url = a.get(attr) or ""
                assert not re.match(r"(https?:)?//", url), f"{path.name}: <{tag} {attr}={url}> comes from a network"


def test_widgets_are_explorers_and_progress_bars_are_gone(book):
    with_explorer = []
    for name in CHAPTERS:
        text = (OUT / "chapters" / f"{name}.html").read_text()
        assert "VBox(children" not in text and "widget-view+json" not in text, f"{name}: a raw widget"
        assert not re.search(r"\d+%\|[^<]*\|", text) and "it/s]" not in text, f"{name}: a progress bar"
        if 'class="fmlearn-explorer"' in text:
            with_explorer.append(name)
            assert 'class="fmx-look"><b>What to look at:</b>' in text
    assert len(with_explorer) >= 6, f"explorers in {with_explorer} only"


MATHJAX = "_static/mathjax/tex-svg-full.js"


def test_every_equation_is_left_to_the_shipped_mathjax(book):
    """Equations reach the browser as TeX for MathJax (what JupyterLab runs), whose one script ships with the book
    under its license: no page loads another renderer or a CDN, and no TeX leaks into the prose."""
    assert (OUT / MATHJAX).is_file() and (OUT / MATHJAX).stat().st_size > 1_000_000
    assert "Apache License" in (OUT / "_static" / "mathjax" / "LICENSE").read_text()
    for path in html_pages():
        text = path.read_text()
        p = page(path)
        assert "<math" not in text, f"{path.name}: MathML written at build time (docutils' converter)"
        prose = " ".join(p.prose)
        leftovers = re.findall(r"\\\(|\\\[|\$\$|\\frac|\\mathbb|\\alpha_", prose)
        assert not leftovers, f"{path.name}: TeX left in the prose: {leftovers[:5]}"
        if p.tex:
            scripts = [a.get("src", "").split("?")[0] for t, a in p.tags if t == "script"]
            rel = os.path.relpath(OUT / MATHJAX, path.parent)
            assert rel in scripts, f"{path.name}: {len(p.tex)} equations but no {rel} in {scripts}"
            assert all(re.fullmatch(r"\s*\\[(\[].*[)\]]\s*", t, re.S) for t in p.tex), path.name
    for name in CHAPTERS:
        assert len(page(OUT / "chapters" / f"{name}.html").tex) >= 10, name


_HASH = re.compile(r"[0-9a-f]{16,}|\.(png|jpe?g|gif|svg)$", re.I)


def test_every_figure_has_a_description(book):
    """Every <img> on every page has alt text that says something: not empty, not the file's hash (docutils'
    default for an image without alt), not a placeholder."""
    bad, figures = [], 0
    for path in html_pages():
        for tag, a in page(path).tags:
            if tag == "img":
                figures += 1
                alt = (a.get("alt") or "").strip()
                if len(alt) < 12 or _HASH.search(alt) or "no description" in alt:
                    bad.append(f"{path.relative_to(OUT)}: alt={alt!r}")
    print(f"{figures} figures, {len(bad)} without a description")
    assert figures >= 50
    assert not bad, f"{len(bad)} of {figures} figures without a description, e.g. {bad[:5]}"


def test_pages_carry_no_fontawesome_and_the_front_page_no_empty_column(book):
    for path in html_pages() + [OUT / "search.html", OUT / "genindex.html"]:
        assert "fontawesome" not in path.read_text(), f"{path.name} loads fontawesome.js"
    front = (OUT / "book" / "index.html").read_text()
    assert not re.search(r"<th[^>]*>\s*(<p>)?\s*status", front), "the course map's status column is back"
    assert ">ready<" not in front


def test_figures_are_embedded_or_shipped(book):
    for path in html_pages():
        for tag, a in page(path).tags:
            if tag == "img":
                src = a.get("src", "")
                if src.startswith("data:"):
                    assert len(src) > 100, f"{path.name}: an empty data image"
                else:
                    assert (path.parent / unquote(src)).is_file(), f"{path.name}: missing figure {src}"
    figures = sum(1 for t, a in page(OUT / "chapters" / f"{CHAPTERS[0]}.html").tags if t == "img")
    assert figures >= 5


def test_every_link_resolves(book):
    checked = 0
    for path in html_pages():
        for tag, a in page(path).tags:
            href = a.get("href") if tag == "a" else None
            if not href or href.startswith(("http:", "https:", "mailto:", "javascript:")):
                continue
            url = urlparse(href)
            target = (path.parent / unquote(url.path)).resolve() if url.path else path
            assert target.is_file(), f"{path.relative_to(OUT)}: link to {href} finds no file"
            if url.fragment and target.suffix == ".html":
                assert url.fragment in page(target).ids, f"{path.relative_to(OUT)}: no #{url.fragment} in {href}"
            checked += 1
    assert checked > 500


def test_chapters_link_their_exercise_and_the_objects_they_use(book):
    api_ids = page(OUT / "book" / "api.html").ids
    for name in CHAPTERS:
        p = page(OUT / "chapters" / f"{name}.html")
        hrefs = [a.get("href", "") for t, a in p.tags if t == "a"]
        number = name[:2]
        assert any(re.match(rf"\.\./exercises/ex{number}_\w+\.html", h) for h in hrefs), f"{name}: no exercise link"
        objects = [h.split("#", 1)[1] for h in hrefs if h.startswith("../book/api.html#fmlearn.")]
        assert len(set(objects)) >= 5 and all(o in api_ids for o in objects), f"{name}: {objects}"
    for name in EXERCISES:
        hrefs = [a.get("href", "") for t, a in page(OUT / "exercises" / f"{name}.html").tags if t == "a"]
        assert any(h.startswith(f"../chapters/{name[2:4]}_") for h in hrefs), f"{name}: no link to its chapter"


def test_front_page_is_the_course_map(book):
    hrefs = [a.get("href", "") for t, a in page(OUT / "book" / "index.html").tags if t == "a"]
    for name in CHAPTERS:
        assert f"../chapters/{name}.html" in hrefs, f"the front page does not link {name}"


def test_api_reference_documents_every_module(book):
    import fmlearn

    ids = page(OUT / "book" / "api.html").ids
    modules = ["fmlearn"] + [m.name for m in pkgutil.walk_packages(fmlearn.__path__, "fmlearn.")
                             if not any(part.startswith("_") for part in m.name.split("."))]
    missing = [m for m in modules if f"module-{m}" not in ids]
    assert not missing, f"not in the API reference (book/api.md): {missing}"
    for obj in ("fmlearn.training.train", "fmlearn.solvers.odeint", "fmlearn.widgets.explorer.Explorer",
                "fmlearn.discrete.paths.MixturePath", "fmlearn.generators.markov.superpose"):
        assert obj in ids, obj


# -- in a real browser, with the network off ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                                                                "downloadThroughput": 0, "uploadThroughput": 0})
    yield driver
    driver.quit()


TYPESET = """
const done = arguments[arguments.length - 1];
const startup = window.MathJax && window.MathJax.startup;
if (startup && startup.promise) startup.promise.then(() => done(true), e => done(String(e)));
else done(false);
"""

PAGE_STATE = """
const maths = Array.from(document.querySelectorAll('article .math'));
const drawn = m => { const s = m.querySelector('mjx-container svg');
                     const b = s && s.getBoundingClientRect(); return !!b && b.width > 0 && b.height > 0; };
const imgs = Array.from(document.querySelectorAll('article img'));
return {
  maths: maths.length,
  drawn: maths.filter(drawn).length,
  imgs: imgs.length,
  loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
  title: document.title,
};
"""


@needs_browser
def test_every_page_renders_offline_in_chromium(book, browser):
    shots = {"book/index.html": "page-front.png", f"chapters/{CHAPTERS[0]}.html": "page-chapter01.png",
             f"chapters/{CHAPTERS[7]}.html": "page-chapter08.png"}
    for path in html_pages() + [OUT / "genindex.html", OUT / "search.html"]:
        rel = str(path.relative_to(OUT))
        browser.get(path.as_uri())
        browser.execute_async_script(TYPESET)
        state = browser.execute_script(PAGE_STATE)
        assert state["drawn"] == state["maths"], f"{rel}: {state['maths'] - state['drawn']} equations not drawn"
        assert state["loaded"] == state["imgs"], f"{rel}: {state['imgs'] - state['loaded']} figures not loaded"
        errors = console_errors(browser)
        assert not errors, f"{rel}: console errors {errors[:3]}"
        if rel in shots:
            screenshot(browser, shots[rel])


EXPLORER_STATE = """
return Array.from(document.querySelectorAll('.fmlearn-explorer')).map(e => ({
  src: e.querySelector('img.fmx-frame').src,
  sliders: e.querySelectorAll('input[type=range]').length,
}));
"""

MOVE = """
const e = document.querySelectorAll('.fmlearn-explorer')[arguments[0]];
const s = e.querySelectorAll('input[type=range]')[arguments[1]];
s.value = (+s.value === +s.max) ? 0 : +s.max;
s.dispatchEvent(new Event('input'));
return [e.querySelector('img.fmx-frame').src, s.parentNode.nextElementSibling.textContent];
"""


@needs_browser
def test_every_explorer_changes_its_figure_when_its_slider_moves(book, browser):
    from selenium.webdriver.common.by import By

    moved, shots = 0, 0
    for name in CHAPTERS:
        browser.get((OUT / "chapters" / f"{name}.html").as_uri())
        explorers = browser.execute_script(EXPLORER_STATE)
        for i, state in enumerate(explorers):
            assert state["sliders"] >= 1
            for k in range(state["sliders"]):
                before = browser.execute_script(EXPLORER_STATE)[i]["src"]
                after, label = browser.execute_script(MOVE, i, k)
                assert after != before, f"{name}, explorer {i}, slider {k}: the figure did not change"
                a, b = (base64.b64decode(s.split(",", 1)[1]) for s in (before, after))
                assert a != b and label, f"{name}, explorer {i}: the same image after the move"
                moved += 1
            if shots < 2 and name[:2] in ("01", "09"):
                element = browser.find_elements(By.CSS_SELECTOR, ".fmlearn-explorer")[i]
                browser.execute_script("arguments[0].scrollIntoView()", element)
                screenshot(element, f"explorer-{name[:2]}.png")
                shots += 1
        assert not console_errors(browser), name
    assert moved >= 6


# -- equations: typeset as JupyterLab typesets them ------------------------------------------------------------------
EQUATIONS = """
const done = arguments[arguments.length - 1];
const collect = () => {
  const startup = window.MathJax && window.MathJax.startup;
  if (startup && startup.document) {
    return {engine: 'MathJax ' + MathJax.version, eqs: Array.from(startup.document.math).map(
      m => ({tex: m.math, mml: MathJax.startup.toMML(m.root)}))};
  }
  return {engine: 'the browser (MathML)', eqs: Array.from(document.querySelectorAll('article math')).map(
    m => ({tex: m.getAttribute('alttext') || '', mml: m.outerHTML}))};
};
const startup = window.MathJax && window.MathJax.startup;
if (startup && startup.promise) startup.promise.then(() => done(collect()));
else done(collect());
"""

# Where a subscript sits next to an accented letter (msub or msubsup around the accent's mover, in MathJax's
# SVG or in native MathML): its box must start right of the accented letter's and sit lower.
ACCENT_SUBSCRIPTS = """
const out = [];
const svg = Array.from(document.querySelectorAll('g[data-mml-node="msub"], g[data-mml-node="msubsup"]'));
const native = Array.from(document.querySelectorAll('article math msub, article math msubsup'));
for (const s of svg.concat(native)) {
  const kids = Array.from(s.children);
  const base = kids[0], sub = kids[1];
  if (!base || !sub) continue;
  const accent = base.matches('[data-mml-node="mover"], mover') ||
                 !!base.querySelector(':scope > [data-mml-node="mover"]:only-child, :scope > mover:only-child');
  if (!accent) continue;
  const b = base.getBoundingClientRect(), u = sub.getBoundingClientRect();
  out.push({base_right: b.right, base_mid: (b.top + b.bottom) / 2, sub_left: u.left,
            sub_mid: (u.top + u.bottom) / 2, text: (s.closest('mjx-container, math') || s).textContent});
}
// accents with a script stacked under them (the defect of issue 22): munderover or munder on a letter
const stacked = Array.from(document.querySelectorAll('article math munderover, article math munder,' +
                           'g[data-mml-node="munderover"], g[data-mml-node="munder"]'))
  .filter(e => { const b = e.children[0]; return b && /^(mi|mn)$/i.test(b.localName || '') &&
                                                   b.textContent.trim().length === 1; }).length;
return {pairs: out, stacked: stacked};
"""


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def skeleton(el: ET.Element) -> str:
    """A MathML tree as a compact string: tag(children), leaves as tag:text, with the font variant where one is
    set; rows with one child and the invisible operators MathJax adds (function application, times) dropped."""
    kids = [k for k in el if not (_tag(k) == "mo" and (k.text or "").strip() in ("\u2061", "\u2062", ""))]
    tag = _tag(el)
    if tag in ("math", "mrow", "mstyle", "semantics", "mpadded") and len(kids) == 1:
        return skeleton(kids[0])
    if tag == "annotation":
        return ""
    if not kids:
        variant = el.get("mathvariant")
        return f"{tag}{f'[{variant}]' if variant else ''}:{(el.text or '').strip()}"
    return f"{tag}(" + ",".join(x for x in (skeleton(k) for k in kids) if x) + ")"


def mathml_tree(mml: str) -> ET.Element:
    mml = re.sub(r"&nbsp;", "&#160;", mml)
    mml = re.sub(r"\sxmlns(:\w+)?=\"[^\"]*\"", "", mml)
    return ET.fromstring(mml)


def stacked_under_a_letter(root: ET.Element) -> int:
    """How many accents or subscripts an equation draws under a letter (docutils wrote \\dot\\alpha_t as
    munderover(α, t, ˙)): munder or munderover on a one-letter identifier."""
    return sum(1 for el in root.iter() if _tag(el) in ("munder", "munderover") and len(el)
               and _tag(el[0]) in ("mi", "mn") and len((el[0].text or "").strip()) == 1)


# The notation page (book/notation.md) typesets the constructs the course uses; each must have this layout,
# written out here by hand (MathJax's characters: U+02D9 dot above, ^ for the hat, U+03D5 for \phi).
REFERENCE = {
    r"\dot\alpha_t": "msub(mover(mi:α,mo:˙),mi:t)",
    r"\dot\kappa_t": "msub(mover(mi:κ,mo:˙),mi:t)",
    r"\hat x_0": "msub(mover(mi:x,mo:^),mn:0)",
    r"u^\phi_t": "msubsup(mi:u,mi:t,mi:ϕ)",
    r"x_t = \alpha_t x_1": "msub(mi:x,mi:t),mo:=,msub(mi:α,mi:t),msub(mi:x,mn:1)",
    r"\frac{\dot\kappa_t}{1 - \kappa_t}": "mfrac(msub(mover(mi:κ,mo:˙),mi:t),mrow(mn:1,mo:−,msub(mi:κ,mi:t)))",
    r"\left|\det ..\right|": "mrow(mo:|,mo:det,mfrac(",
    r"\mathbb R^d": "msup(mi[double-struck]:R,mi:d)",
    r"\mathbb E[x_0 \mid x_t = x]": "mi[double-struck]:E,mo:[,msub(mi:x,mn:0),mo:∣,msub(mi:x,mi:t),mo:=,mi:x,mo:]",
}


def jupyterlab_mathjax_version() -> str:
    """The MathJax release JupyterLab bundles (its static files spell it VERSION="3.x.y")."""
    static = Path(sys.prefix) / "share" / "jupyter" / "lab" / "static"
    versions = {m for f in static.glob("*.js") for m in re.findall(r'VERSION="(\d+\.\d+\.\d+)"', f.read_text())}
    assert len(versions) == 1, f"JupyterLab's MathJax version not found in {static}: {versions}"
    return versions.pop()


@needs_browser
def test_equations_are_typeset_as_jupyterlab_typesets_them(book, browser):
    """Every equation of every page: typeset without error by the MathJax release JupyterLab runs, nothing
    stacked under a letter; on the notation page every reference construct has its layout (as a tree, and as
    drawn: the subscript right of the accented letter and below it)."""
    lab = jupyterlab_mathjax_version()
    wrong, errors, engines, total = {}, [], {}, 0
    for path in html_pages():
        if not page(path).tex and "<math" not in path.read_text():
            continue
        browser.get(path.as_uri())
        found = browser.execute_async_script(EQUATIONS)
        rel = str(path.relative_to(OUT))
        engines.setdefault(found["engine"], []).append(rel)
        for eq in found["eqs"]:
            total += 1
            if "<merror" in eq["mml"] or 'mathcolor="red"' in eq["mml"]:
                errors.append(f"{rel}: {eq['tex']}")
            elif n := stacked_under_a_letter(mathml_tree(eq["mml"])):
                wrong[rel] = wrong.get(rel, 0) + n
    print(f"{total} equations, {sum(wrong.values())} scripts stacked under a letter, {len(errors)} errors")
    assert not errors, f"MathJax could not typeset {len(errors)}: {errors[:5]}"
    assert not wrong, f"{sum(wrong.values())} accents or subscripts stacked under a letter: {wrong}"
    assert list(engines) == [f"MathJax {lab}"], f"typeset by {engines}; JupyterLab runs MathJax {lab}"
    assert total > 500

    browser.get((OUT / "book" / "notation.html").as_uri())
    found = browser.execute_async_script(EQUATIONS)
    skeletons = [skeleton(mathml_tree(eq["mml"])) for eq in found["eqs"]]
    missing = {tex: want for tex, want in REFERENCE.items() if not any(want in s for s in skeletons)}
    assert not missing, f"not typeset as it must be: {missing}\nthe page's equations: {skeletons}"
    drawn = browser.execute_script(ACCENT_SUBSCRIPTS)
    assert drawn["stacked"] == 0
    assert len(drawn["pairs"]) >= 7, f"accented letters with a subscript: {drawn['pairs']}"
    for pair in drawn["pairs"]:
        assert pair["sub_left"] >= pair["base_right"] - 1, f"subscript not right of its accent: {pair}"
        assert pair["sub_mid"] > pair["base_mid"] + 1, f"subscript not below the accented letter's middle: {pair}"
    screenshot(browser, "page-notation.png")


# -- search from disk ------------------------------------------------------------------------------------------------
SEARCH_STATE = """
// hits on a page's text or title (an API object's hit shows its description instead of a snippet)
const items = Array.from(document.querySelectorAll('#search-results li.kind-text, #search-results li.kind-title'));
return {done: !!document.querySelector('#search-results h2') &&
              !document.querySelector('#search-progress')?.textContent.includes('Preparing'),
        hits: items.length,
        snippets: items.filter(li => (li.querySelector('p.context')?.textContent || '').trim().length > 20).length,
        first: items.slice(0, 3).map(li => li.textContent.slice(0, 200))};
"""


@needs_browser
def test_search_finds_pages_with_snippets_from_disk(book, browser):
    """search.html opened from disk: hits, each with a snippet of its page, and no "Failed to fetch"."""
    browser.get((OUT / "search.html").as_uri() + "?q=velocity")
    state = {}
    for _ in range(60):
        time.sleep(0.5)
        state = browser.execute_script(SEARCH_STATE)
        if state["done"] and state["hits"] and state["snippets"] == state["hits"]:
            break
    assert state["hits"] >= 5, state
    assert state["snippets"] == state["hits"], f"hits without a snippet: {state}"
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not errors, errors[:3]
    screenshot(browser, "page-search.png")


VISIBLE_SEARCH = """
return Array.from(document.querySelectorAll('.search-button-field, .search-button, form.bd-search'))
  .filter(e => { const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0 &&
                 getComputedStyle(e).visibility !== 'hidden'; }).length;
"""


@needs_browser
def test_a_page_offers_one_search_box(book, browser):
    browser.get((OUT / "chapters" / f"{CHAPTERS[0]}.html").as_uri())
    assert browser.execute_script(VISIBLE_SEARCH) == 1, "search boxes on a wide page"
    browser.set_window_size(700, 900)  # narrow: the sidebar folds away, the header's button remains
    try:
        assert browser.execute_script(VISIBLE_SEARCH) == 1, "search boxes on a narrow page"
    finally:
        browser.set_window_size(1280, 1000)


# -- accessibility: axe-core (from the pip package axe-core-python), offline ------------------------------------------
# Violations that come from the theme (sphinx-book-theme / pydata-sphinx-theme) and that the book cannot change
# through its configuration or CSS, each with its reason. Everything else serious or critical fails the test.
THEME_VIOLATIONS: dict[str, str] = {}

AXE_PAGES = ["book/index.html", f"chapters/{CHAPTERS[0]}.html", f"chapters/{CHAPTERS[7]}.html",
             f"chapters/{CHAPTERS[8]}.html"]


def axe_script() -> str:
    import axe_core_python

    return (Path(axe_core_python.__file__).parent / "axe.min.js").read_text()


RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']})
  .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5), count: v.nodes.length}))))
  .catch(e => done(String(e)));
"""


@needs_browser
def test_axe_finds_no_serious_violation(book, browser):
    script = axe_script()
    report = {}
    for rel in AXE_PAGES:
        browser.get((OUT / rel).as_uri())
        browser.execute_async_script(TYPESET)
        browser.execute_script(script)
        violations = browser.execute_async_script(RUN_AXE)
        assert isinstance(violations, list), violations
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        ours = [v for v in serious if v["id"] not in THEME_VIOLATIONS]
        report[rel] = {"serious": [(v["id"], v["count"]) for v in serious],
                       "minor": [(v["id"], v["impact"], v["count"]) for v in violations if v not in serious]}
        assert not ours, f"{rel}: {json.dumps(ours, indent=1, ensure_ascii=False)[:3000]}"
    print(json.dumps(report, indent=1))
