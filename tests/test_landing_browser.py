"""The landing page of the running demo in headless Chromium: the charts are drawn, they
change as windows close (the page refreshes itself), and a screenshot is taken: into
the test's temporary folder, or to docs/landing.png (shown by the README) with
MLWATCHER_UPDATE_SCREENSHOT=1, so that a test run leaves the checkout as it was.

Skips without Chromium, chromedriver or selenium on a laptop; fails instead when
MLWATCHER_REQUIRE_PROMETHEUS=1 (CI installs chromium and chromium-driver)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REQUIRE_PROMETHEUS
from _prometheus import LineReader, free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parent.parent
README_SCREENSHOT = ROOT / "docs" / "landing.png"
CHROMIUM = ("chromium", "chromium-browser")
CHARTS = ("pred1-median", "spread12-median", "class-ratio", "accuracy")


def _missing(message):
    if REQUIRE_PROMETHEUS:
        pytest.fail(message + " and MLWATCHER_REQUIRE_PROMETHEUS=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    chromium = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        _missing("chromium or chromedriver is not installed (Debian packages 'chromium', "
                 "'chromium-driver')")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        _missing("selenium is not installed (the test extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1400", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=DriverService(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo():
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlwatcher_exporter", "demo", "--port", str(port),
         "--window-seconds", "2", "--windows-per-scenario", "2", "--duration", "600",
         "--rows-per-second", "150", "--reservoir-size", "2000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True)
    reader = LineReader(process)
    try:
        # The demo trains its models first (tens of seconds on a loaded machine).
        wait_for(lambda: process.poll() is not None or any(
            line.startswith("window ") for line in reader.snapshot()), 300,
            lambda: "no window line from the demo: " + " | ".join(reader.snapshot()[-5:]))
        assert process.poll() is None, reader.snapshot()[-5:]
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop_process(process)
        reader.close()


def charts(driver):
    """Per chart: the points it says it draws and the drawn polylines' coordinates."""
    return driver.execute_script("""
        const out = {};
        for (const svg of document.querySelectorAll('section[data-model="digits"] svg.chart')) {
            const lines = Array.from(svg.querySelectorAll('polyline'));
            out[svg.dataset.chart] = {
                points: Number(svg.dataset.points),
                drawn: lines.map(l => l.getTotalLength()).reduce((a, b) => a + b, 0),
                width: svg.getBoundingClientRect().width,
                coords: lines.map(l => l.getAttribute('points')).join('|'),
            };
        }
        return out;
    """)


def test_the_demo_landing_page_draws_charts_that_follow_the_windows(browser, demo, tmp_path):
    browser.get(demo)
    assert browser.title == "mlwatcher-exporter"
    first = wait_for(lambda: (lambda c: c if all(
        name in c and c[name]["points"] >= 2 for name in ("pred1-median", "accuracy"))
        else None)(charts(browser)), 120,
        lambda: f"charts not drawn with 2 windows: {charts(browser)}", interval=0.5)
    assert set(first) == set(CHARTS)
    for name, chart in first.items():
        # drawn by the browser: visible, and lines of a real length
        assert chart["width"] > 100 and chart["drawn"] > 0, (name, chart)
    # No reload by the test: the page's own refresh brings the next windows.
    later = wait_for(lambda: (lambda c: c if c.get("pred1-median", {}).get("points", 0)
                              > first["pred1-median"]["points"] and
                              c["pred1-median"]["coords"] != first["pred1-median"]["coords"]
                              else None)(charts(browser)), 120,
                     lambda: f"the charts did not change: {charts(browser)}", interval=0.5)
    assert later["class-ratio"]["coords"] != first["class-ratio"]["coords"]
    models = browser.execute_script(
        "return Array.from(document.querySelectorAll('section.model'))"
        ".map(s => s.dataset.model)")
    assert models == ["digits", "digits-canary"]
    link = browser.execute_script("return document.querySelector('a[href=\"/metrics\"]')"
                                  ".href")
    assert link == demo + "metrics"
    # Enough windows for a chart worth showing in the README, then the screenshot.
    wait_for(lambda: charts(browser).get("pred1-median", {}).get("points", 0) >= 12, 120,
             lambda: f"fewer than 12 windows drawn: {charts(browser)}", interval=0.5)
    browser.set_window_size(1280, 1400)
    screenshot = (README_SCREENSHOT if os.environ.get("MLWATCHER_UPDATE_SCREENSHOT") == "1"
                  else tmp_path / "landing.png")
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
