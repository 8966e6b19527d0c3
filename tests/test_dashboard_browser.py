"""End to end: `llmsim dashboard` serves the app on a free loopback port; headless Chromium runs a
simulation from the form, waits for the KPI cards and charts, and saves screenshots to test-artifacts/.
Skips (with the reason) only when no Chromium/Chrome and chromedriver can be found."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("/usr/bin/chromedriver", "chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,2600")

pytestmark = pytest.mark.browser


def _which(names: tuple[str, ...]) -> str | None:
    for n in names:
        p = shutil.which(n) or (n if os.path.isabs(n) and os.access(n, os.X_OK) else None)
        if p:
            return p
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "dashboard", "--port", str(port), "--address",
                             "127.0.0.1", "--headless"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                pytest.fail(f"dashboard server did not come up: {log.read().decode(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _which(BROWSERS), _which(DRIVERS)
    if not chromium or not driver_path:
        pytest.skip(f"no headless browser: chromium={chromium!r}, chromedriver={driver_path!r} "
                    "(install Debian's chromium and chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="llmsim-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(drv, fn, timeout_s: float = 60, what: str = ""):
    """Poll `fn(driver)` until truthy; elements Streamlit re-renders meanwhile (stale) just mean: poll again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(drv, timeout_s, poll_frequency=0.25,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: fn(d))
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        drv.save_screenshot(str(ARTIFACTS / "dashboard_failure.png"))
        raise AssertionError(f"timed out waiting for {what}; screenshot in test-artifacts/dashboard_failure.png")


def _css(drv, sel):
    from selenium.webdriver.common.by import By

    return drv.find_elements(By.CSS_SELECTOR, sel)


def _button(drv, label: str):
    for b in _css(drv, "button"):
        if b.text.strip() == label and b.is_displayed():
            return b
    return None


def _click(drv, label: str) -> None:
    """Click the button with this label (retrying while Streamlit re-renders it)."""
    def attempt(d):
        b = _button(d, label)
        if b is None:
            return False
        b.click()
        return True

    _wait(drv, attempt, what=f"clicking {label!r}")


def _set_number(drv, label: str, value: int) -> None:
    from selenium.webdriver.common.keys import Keys

    def attempt(d):
        box = next((i for i in _css(d, "input[type=number]") if i.get_attribute("aria-label") == label), None)
        if box is None:
            return False
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(str(value), Keys.ENTER)
        return box.get_attribute("value") == str(value)

    _wait(drv, attempt, what=f"setting {label} = {value}")


def _idle(drv) -> bool:
    """Streamlit shows a 'running' status widget while a script runs."""
    return not _css(drv, '[data-testid="stStatusWidget"]')


def test_simulate_from_the_form_renders_kpis_and_charts(server, browser):
    drv = browser
    drv.get(f"{server}/Simulate")
    _click(drv, "Run simulation")
    _wait(drv, lambda d: len(_css(d, '[data-testid="stMetric"]')) >= 12, what="the KPI cards")
    _wait(drv, lambda d: len(_css(d, '[data-testid="stPlotlyChart"] .main-svg')) >= 7 and _idle(d),
          what="all seven plotly charts")
    assert not _css(drv, '[data-testid="stException"]')
    cards = _wait(drv, lambda d: [(m.find_element("css selector", '[data-testid="stMetricLabel"]').text,
                                   m.find_element("css selector", '[data-testid="stMetricValue"]').text)
                                  for m in _css(d, '[data-testid="stMetric"]')], what="reading the KPI cards")
    shown = dict(cards)
    assert float(shown["TTFT p50 (ms)"].replace(",", "")) > 0 and float(shown["Goodput (req/s)"]) > 0
    assert float(shown["USD / M output tokens"]) > 0
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1.0)  # let plotly finish its transitions before the screenshot
    drv.save_screenshot(str(ARTIFACTS / "dashboard_simulate.png"))


def test_bad_tp_shows_an_error_not_a_traceback(server, browser):
    drv = browser
    drv.get(f"{server}/Simulate")
    _wait(drv, lambda d: _button(d, "Run simulation"), what="the Run button")
    _set_number(drv, "TP", 3)
    _wait(drv, _idle, what="the rerun after editing TP")
    _click(drv, "Run simulation")
    alert = _wait(drv, lambda d: next((a for a in _css(d, '[data-testid="stAlert"]')
                                       if "parallel.tp = 3" in a.text), None), what="the TP error")
    assert "must divide the number of attention heads" in alert.text
    assert not _css(drv, '[data-testid="stException"]')
    ARTIFACTS.mkdir(exist_ok=True)
    drv.save_screenshot(str(ARTIFACTS / "dashboard_error.png"))


def test_a_long_run_shows_progress_and_can_be_cancelled(server, browser):
    drv = browser
    drv.get(f"{server}/Simulate")
    _wait(drv, lambda d: _button(d, "Run simulation"), what="the Run button")
    _set_number(drv, "Requests", 200_000)  # tens of seconds of simulation: long enough to cancel
    _wait(drv, _idle, what="the rerun after editing Requests")
    _click(drv, "Run simulation")
    _wait(drv, lambda d: _css(d, '[data-testid="stProgress"]'), timeout_s=30, what="the progress bar")
    t0 = time.time()
    _click(drv, "Cancel")
    _wait(drv, lambda d: any("Simulation cancelled" in a.text for a in _css(d, '[data-testid="stAlert"]')),
          timeout_s=20, what="the cancelled message")
    assert time.time() - t0 < 10
    assert not _css(drv, '[data-testid="stMetric"]') and not _css(drv, '[data-testid="stException"]')
