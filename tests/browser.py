"""Headless Chromium for the browser tests: what a visitor does on the served demo, and what they see."""

import os
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
MIN_WINDOW_WIDTH = 500  # headless Chromium's narrowest window (a 390 px --window-size gives 500 px)


def chromium(tmp_path: Path, width: int, height: int):
    """A headless Chromium driver with a `width` x `height` window (its caller quits it).

    .ci/run sets ARTNET_REQUIRE_BROWSER=1 after installing Chromium: in CI a missing browser fails the test
    instead of skipping it, so a broken install cannot pass as green. Elsewhere it skips, saying what it needs."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        needs = f"needs Debian's chromium and chromium-driver at {CHROMIUM} and {CHROMEDRIVER} (.ci/run installs them)"
        if os.environ.get("ARTNET_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ARTNET_REQUIRE_BROWSER=1 but the browser is missing: {needs}")
        pytest.skip(needs)
    if os.environ.get("ARTNET_REQUIRE_BROWSER") == "1":
        import selenium.webdriver as webdriver  # required: an ImportError fails the test
    else:
        webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--window-size={width},{height}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    if width < MIN_WINDOW_WIDTH:  # a phone: Chromium's window is never narrower, so emulate the phone's screen
        metrics = {"width": width, "height": height, "deviceScaleFactor": 3, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver
