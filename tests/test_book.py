"""The web book (issue 15), built in quick mode as CI builds it: every chapter and exercise executed, nothing
fetched from a network, equations as MathML, widgets as their HTML explorers, links that resolve; then, in a
headless Chromium with the network switched off, every page loads without a console error, every equation and
figure is drawn, and every explorer's slider changes its figure.

The build (``make book-quick``: FMLEARN_QUICK=1, outputs cached in build/book-quick/.jupyter_cache) runs once
for this module; a rebuild re-executes only notebooks whose code changed.
"""

from __future__ import annotations

import base64
import os
import pkgutil
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from _browser import chromium, console_errors, needs_browser, screenshot

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "book-quick" / "html"
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("[0-9]*.ipynb"))
EXERCISES = sorted(p.stem for p in (ROOT / "exercises").glob("ex*.ipynb"))


@pytest.fixture(scope="module")
def book() -> dict:
    env = {**os.environ, "FMLEARN_QUICK": "1", "FMLEARN_PROGRESS": "0"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-c", "book", "-q", ".", str(OUT)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - start
    assert run.returncode == 0, f"the book did not build:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    print(f"book (quick mode) built in {seconds:.0f} s")
    return {"log": run.stderr, "seconds": seconds}


class _Page(HTMLParser):
    """The parts of a page the checks read: tags with their attributes, ids, and text outside code."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()
        self.prose: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        if tag in ("pre", "code", "script", "style", "math") or "highlight" in (a.get("class") or ""):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("pre", "code", "script", "style", "math") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
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


def test_every_equation_is_mathml(book):
    for path in html_pages():
        text = path.read_text()
        assert 'class="math-error"' not in text, f"{path.name}: an equation docutils could not convert"
        prose = " ".join(page(path).prose)
        leftovers = re.findall(r"\\\(|\\\[|\$\$|\\frac|\\mathbb|\\alpha_", prose)
        assert not leftovers, f"{path.name}: TeX left in the prose: {leftovers[:5]}"
    for name in CHAPTERS:
        assert (OUT / "chapters" / f"{name}.html").read_text().count("<math") >= 10, name


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


PAGE_STATE = """
const maths = Array.from(document.querySelectorAll('math'));
const imgs = Array.from(document.querySelectorAll('article img'));
return {
  maths: maths.length,
  drawn: maths.filter(m => { const b = m.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length,
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
