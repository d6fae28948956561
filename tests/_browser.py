"""A headless Chromium for the browser tests (Debian's chromium and chromium-driver packages; `.ci/run` installs
them). Without them the tests that need a browser are skipped with a message that says how to install them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = os.environ.get("FMLEARN_CHROMIUM") or _find("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = os.environ.get("FMLEARN_CHROMEDRIVER") or _find("chromedriver")
SKIP_REASON = ("needs Chromium and its driver (Debian/Ubuntu: apt-get install chromium chromium-driver; .ci/run "
               "installs them), and the selenium package")


def have_browser() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return bool(CHROMIUM and CHROMEDRIVER)


# CI (.ci/run) sets FMLEARN_REQUIRE_BROWSER=1: there a missing browser fails the tests instead of skipping them.
REQUIRED = os.environ.get("FMLEARN_REQUIRE_BROWSER", "") not in ("", "0")
needs_browser = pytest.mark.skipif(not REQUIRED and not have_browser(), reason=SKIP_REASON)


def chromium(width: int = 1280, height: int = 1000):
    """A headless Chromium with its console log kept (read with ``driver.get_log("browser")``)."""
    if not have_browser():
        raise RuntimeError("FMLEARN_REQUIRE_BROWSER is set but the browser is missing: this test " + SKIP_REASON)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(60)
    return driver


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(element_or_driver, name: str) -> Path:
    """Save a screenshot under build/screenshots (never into the repository's tracked files)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    if hasattr(element_or_driver, "save_screenshot"):
        element_or_driver.save_screenshot(str(path))
    else:
        element_or_driver.screenshot(str(path))
    return path
