"""JupyterLab in a real browser (issues 15 and 22): open chapter 2 (an explorer and a training run), run every cell
in quick mode with the progress bars on, move each slider of its explorer from the keyboard and see the figure,
its alt text and the slider's announced value change, as a learner would; then save, restart the kernel, reload
the page and look at what a learner sees the next day: every explorer (its frame, with an alt text, and sliders that
still answer), each training run's one-line summary, and never "Error displaying widget: model not found". The
chapter runs in a copy (a scratch folder), so nothing in the repository is saved over. Skipped without Chromium
(see tests/_browser.py)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from _browser import chromium, console_errors, needs_browser, screenshot
from _servers import free_port, running_lab

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
CHAPTER = "chapters/02_probability_paths.ipynb"
WIDGET_ERRORS = ("Error displaying widget", "model not found", "Loading widget...")

pytestmark = [needs_browser,
              pytest.mark.skipif(not (VENV / "bin" / "jupyter").exists(), reason="needs the course's environment")]


@pytest.fixture
def lab(tmp_path):
    (tmp_path / "chapters").mkdir()
    shutil.copy2(ROOT / CHAPTER, tmp_path / CHAPTER)
    port, token = free_port(), "fmlearn-browser-test"
    # progress bars on, as in `make lab` (the test command turns them off for headless runs)
    env = {**os.environ, "FMLEARN_QUICK": "1", "FMLEARN_PROGRESS": "1"}
    cmd = [str(VENV / "bin" / "jupyter"), "lab", "--no-browser", f"--port={port}", "--expose-app-in-browser",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
           # a workspace of its own: a reload reopens this chapter only, not what another JupyterLab left open
           f"--LabApp.workspaces_dir={tmp_path / '.workspaces'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with running_lab(cmd, tmp_path, env, port, token, "JupyterLab", timeout=90):
        yield f"http://127.0.0.1:{port}", token, tmp_path


def _wait(driver, script: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.5)
    screenshot(driver, "lab-timeout.png")
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (screenshot: build/screenshots/lab-timeout.png)")


RUN_STATE = """
const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell'));
const prompts = cells.map(c => (c.querySelector('.jp-InputPrompt') || {}).textContent || '');
return {cells: cells.length, running: prompts.filter(p => p.includes('*')).length,
        done: prompts.filter(p => /\\[\\d+\\]/.test(p)).length,
        errors: document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]').length};
"""

KERNEL_IDLE = ("const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
               "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
               " && w.sessionContext.session.kernel.status === 'idle')")

# What the notebook shows: the explorers (frame, alt text, sliders), the widget views left, the error texts, the
# lines that summarise a training run.
LOOK = """
const nb = document.querySelector('.jp-Notebook');
const text = nb ? nb.textContent : '';
const explorers = Array.from(nb.querySelectorAll('.fmlearn-explorer')).map(e => {
  const img = e.querySelector('img');
  return {alt: img ? img.getAttribute('alt') || '' : null, loaded: !!(img && img.complete && img.naturalWidth > 0),
          sliders: Array.from(e.querySelectorAll('input[type=range]')).map(
            s => ({label: s.getAttribute('aria-label'), valuetext: s.getAttribute('aria-valuetext')}))};
});
return {explorers: explorers,
        widget_views: nb.querySelectorAll('[data-mime-type="application/vnd.jupyter.widget-view+json"], .jupyter-widgets').length,
        errors: arguments[0].filter(e => text.includes(e)),
        summaries: Array.from(nb.querySelectorAll('.jp-OutputArea-output')).map(o => o.textContent)
                     .filter(t => /trained \\d+ steps in [\\d.]+ s/.test(t)),
        script_warnings: text.includes('This HTML output contains inline scripts')};
"""


def _look(driver) -> dict:
    return driver.execute_script(LOOK, list(WIDGET_ERRORS))


def _check_keyboard(driver, problems: list, when: str):
    """Each slider of the first explorer, moved one step from the keyboard, changes the frame (its pixels), the
    frame's alt text and the slider's announced value. Screenshots before: lab-<when>.png and
    lab-<when>-explorer.png."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook .fmlearn-explorer")
    for _ in range(2):  # once more after JupyterLab has settled its own scrolling
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        time.sleep(1)
    screenshot(driver, f"lab-{when}.png")
    screenshot(box, f"lab-{when}-explorer.png")
    sliders = box.find_elements(By.CSS_SELECTOR, "input[type=range]")
    if len(sliders) != 2:
        problems.append(f"{when}: expected the schedule and t sliders of chapter 2's explorer, found {len(sliders)}")
        return
    image = box.find_element(By.CSS_SELECTOR, "img")
    for slider in sliders:
        name = slider.get_attribute("aria-label")
        before = (image.get_attribute("src"), image.get_attribute("alt"), slider.get_attribute("aria-valuetext"))
        pixels = image.screenshot_as_png
        slider.send_keys(Keys.ARROW_RIGHT if slider.get_attribute("value") != slider.get_attribute("max")
                         else Keys.ARROW_LEFT)
        time.sleep(0.5)
        after = (image.get_attribute("src"), image.get_attribute("alt"), slider.get_attribute("aria-valuetext"))
        for what, b, a in zip(("frame", "alt text", "aria-valuetext"), before, after):
            if a == b:
                problems.append(f"{when}: slider {name!r} moved, its {what} stayed {b[:80]!r}")
        if image.screenshot_as_png == pixels:
            problems.append(f"{when}: slider {name!r} moved, the figure looks the same")


def test_a_chapter_runs_saves_and_reopens_in_jupyterlab(lab):
    base, token, folder = lab
    driver = chromium(1400, 1000)
    problems: list[str] = []
    try:
        driver.get(f"{base}/lab/tree/{CHAPTER}?token={token}")
        _wait(driver, "return window.jupyterapp && document.querySelector('.jp-Notebook .jp-CodeCell') !== null",
              120, "JupyterLab to open the chapter")
        _wait(driver, KERNEL_IDLE, 120, "the kernel")
        t0 = time.monotonic()
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        state = _wait(driver, f"const s = (function(){{{RUN_STATE}}})(); "
                              "return (s.done === s.cells && s.running === 0) || s.errors ? s : null;",
                      240, "every cell to run")
        print(f"chapter 2 ran in JupyterLab in {time.monotonic() - t0:.0f} s")
        assert state["errors"] == 0, f"a cell raised in JupyterLab: {state}"
        _wait(driver, "return !!document.querySelector('.jp-Notebook .fmlearn-explorer img')", 60, "the explorer")
        live = _look(driver)
        print("live:", json.dumps(live)[:1500])
        if not live["summaries"]:
            problems.append("live: no training run left its summary line ('trained N steps in T s')")
        _check_keyboard(driver, problems, "live")
        news = "Would you like to get notified about official Jupyter news"
        assert news not in driver.execute_script("return document.body.innerText"), \
            "JupyterLab asks about news (.jupyter/lab/settings/overrides.json not installed?)"

        # The second day: save, restart the kernel (its widgets are gone), reload the page.
        driver.execute_script("window.jupyterapp.commands.execute('docmanager:save');")
        _wait(driver, "const w = window.jupyterapp.shell.currentWidget;"
                      "return !!(w && w.context && !w.context.model.dirty)", 60, "the notebook to be saved")
        saved = json.loads((folder / CHAPTER).read_text())
        mimes = sorted({m for c in saved["cells"] for o in c.get("outputs", []) for m in o.get("data", {})})
        print("mime types saved:", mimes)
        if "application/vnd.jupyter.widget-view+json" in mimes:
            problems.append("saved: a widget view is stored in the notebook (it needs a live kernel to show)")
        driver.execute_script("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart();")
        time.sleep(2)
        _wait(driver, KERNEL_IDLE, 120, "the kernel to restart")
        driver.refresh()
        _wait(driver, "return window.jupyterapp && document.querySelector('.jp-Notebook .jp-CodeCell') !== null",
              120, "JupyterLab to reopen the chapter")
        _wait(driver, KERNEL_IDLE, 120, "the kernel after the reload")
        time.sleep(5)  # the widget manager has restored (or not) by now: what it shows stays
        reopened = _look(driver)
        print("reopened:", json.dumps(reopened)[:1500])
        if reopened["errors"] or reopened["widget_views"]:
            problems.append(f"reopened: {reopened['widget_views']} widget view(s), showing {reopened['errors']}")
        if not reopened["explorers"] or any(e["alt"] is None or not e["alt"].strip() or not e["loaded"]
                                            for e in reopened["explorers"]):
            problems.append(f"reopened: an explorer without its frame or alt text: {reopened['explorers']}")
        if len(reopened["summaries"]) < len(live["summaries"]) or not reopened["summaries"]:
            problems.append(f"reopened: the training summaries are gone ({reopened['summaries']})")
        if reopened["script_warnings"]:
            problems.append("reopened: JupyterLab treats the saved outputs as untrusted (a script warning shows)")
        if reopened["explorers"]:
            _check_keyboard(driver, problems, "reopened")  # screenshots: lab-reopened.png, lab-reopened-explorer.png
        else:
            screenshot(driver, "lab-reopened.png")
        summary = driver.find_elements("xpath", "//div[contains(@class, 'jp-OutputArea-output')]"
                                                "[contains(., 'trained') and contains(., 'steps in')]")
        if summary:
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary[0])
            time.sleep(0.5)
            screenshot(driver, "lab-reopened-training.png")
        severe = [e for e in console_errors(driver) if "favicon" not in e]
        if severe:
            problems.append(f"console errors in JupyterLab: {severe[:3]}")
        assert not problems, "\n".join(problems) + "\n(screenshots: build/screenshots/lab-reopened*.png)"
    finally:
        driver.quit()
