"""JupyterLab in a real browser (issue 15): open chapter 2, run every cell in quick mode, then move each slider of
its explorer and see the figure change, as a learner would. The chapter runs in a copy (a scratch folder), so
nothing in the repository is saved over. Skipped without Chromium (see tests/_browser.py)."""

from __future__ import annotations

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

pytestmark = [needs_browser,
              pytest.mark.skipif(not (VENV / "bin" / "jupyter").exists(), reason="needs the course's environment")]


@pytest.fixture
def lab(tmp_path):
    (tmp_path / "chapters").mkdir()
    shutil.copy2(ROOT / CHAPTER, tmp_path / CHAPTER)
    port, token = free_port(), "fmlearn-browser-test"
    env = {**os.environ, "FMLEARN_QUICK": "1", "FMLEARN_PROGRESS": "0"}
    cmd = [str(VENV / "bin" / "jupyter"), "lab", "--no-browser", f"--port={port}", "--expose-app-in-browser",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with running_lab(cmd, tmp_path, env, port, token, "JupyterLab", timeout=90):
        yield f"http://127.0.0.1:{port}", token


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


def test_a_chapter_runs_in_jupyterlab_and_its_explorer_responds(lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, token = lab
    driver = chromium(1400, 1000)
    try:
        driver.get(f"{base}/lab/tree/{CHAPTER}?token={token}")
        _wait(driver, "return window.jupyterapp && document.querySelector('.jp-Notebook .jp-CodeCell') !== null",
              120, "JupyterLab to open the chapter")
        _wait(driver, "const w = window.jupyterapp.shell.currentWidget;"
                      "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
                      " && w.sessionContext.session.kernel.status === 'idle')", 120, "the kernel")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        state = _wait(driver, f"const s = (function(){{{RUN_STATE}}})(); "
                              "return (s.done === s.cells && s.running === 0) || s.errors ? s : null;",
                      240, "every cell to run")
        assert state["errors"] == 0, f"a cell raised in JupyterLab: {state}"
        _wait(driver, "return !!document.querySelector('.fmlearn-explorer img.fmlearn-explorer-frame')",
              60, "the explorer widget")
        box = driver.find_element(By.CSS_SELECTOR, ".fmlearn-explorer")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        handles = box.find_elements(By.CSS_SELECTOR, ".noUi-handle, .ui-slider-handle")
        assert len(handles) == 2, f"expected the schedule and t sliders, found {len(handles)} handles"
        image = box.find_element(By.CSS_SELECTOR, "img.fmlearn-explorer-frame")
        screenshot(box, "lab-explorer-before.png")
        for i, handle in enumerate(handles):
            before_src, before_png = image.get_attribute("src"), image.screenshot_as_png
            handle.click()
            handle.send_keys(Keys.ARROW_RIGHT)
            _wait(driver, "return arguments[0].src !== arguments[1]".replace(
                "arguments[0]", "document.querySelector('.fmlearn-explorer img.fmlearn-explorer-frame')").replace(
                "arguments[1]", repr(before_src)), 30, f"slider {i} to change the figure")
            time.sleep(0.3)
            assert image.screenshot_as_png != before_png, f"slider {i}: the figure looks the same"
        screenshot(box, "lab-explorer-after.png")
        news = "Would you like to get notified about official Jupyter news"
        assert news not in driver.execute_script("return document.body.innerText"), \
            "JupyterLab asks about news (.jupyter/lab/settings/overrides.json not installed?)"
        severe = [e for e in console_errors(driver) if "favicon" not in e]
        assert not severe, f"console errors in JupyterLab: {severe[:3]}"
    finally:
        driver.quit()
