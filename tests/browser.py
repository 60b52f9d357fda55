"""Headless Chromium for the tests that open archviz's HTML where users meet it: in a browser.

Selenium drives Debian's ``chromium`` through ``chromium-driver`` (``scripts/setup --test``
installs both). Pages are opened from disk (``file://``) with the network off, and the
browser's console is read back so a test can assert that a page loaded with no error.
Where Chromium cannot be started the tests skip, naming what is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver", "chromium-driver")


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if path:
            return path
    return None


class Page:
    """One headless Chromium window: open a file, run JavaScript, read the console."""

    def __init__(self, driver):
        self.driver = driver

    def open(self, path: Path) -> None:
        self.driver.get(Path(path).resolve().as_uri())

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def console_errors(self) -> list[str]:
        """Console messages at level SEVERE since the last call (uncaught exceptions, failed loads)."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))


@pytest.fixture(scope="session")
def browser():
    """A session-wide headless Chromium with the network switched off; yields a ``Page``."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (scripts/setup --test installs it)")
    chromium, driver_path = _which(CHROMIUM), _which(DRIVER)
    if chromium is None or driver_path is None:
        pytest.skip("headless browser tests need Debian's chromium and chromium-driver (scripts/setup --test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--allow-file-access-from-files",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        # Offline for real: any request that leaves the machine fails (file:// is unaffected).
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        yield Page(driver)
    finally:
        driver.quit()
