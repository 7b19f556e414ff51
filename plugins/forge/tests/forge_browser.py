"""Helpers of the forge's browser tests: headless Debian Chromium driven by Selenium
(``chromium`` and ``chromium-driver``; nothing is downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

#: Where Debian's packages put the browser and its driver.
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = "chromedriver"
#: Seconds a page may take to load before the test fails.
PAGE_LOAD_SECONDS = 60


def missing() -> str:
    """Why the browser tests cannot run here ('' if they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (uv sync --all-packages)"
    if not any(shutil.which(name) for name in CHROMIUM):
        return "chromium is not installed (apt-get install -y chromium chromium-driver)"
    if shutil.which(CHROMEDRIVER) is None:
        return "chromedriver is not installed (apt-get install -y chromium-driver)"
    return ""


def start_chromium(profile: Path) -> Any:
    """A headless Chromium with its own profile directory, driven by chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(str(shutil.which(n)) for n in CHROMIUM if shutil.which(n))
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    service = Service(executable_path=str(shutil.which(CHROMEDRIVER)))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
    return driver


def screenshot_on_failure(request: Any, driver: Any, where: Path) -> None:
    """If the test ``request`` ran failed, save the browser's screen and page to ``where``
    and print the paths."""
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    where.mkdir(parents=True, exist_ok=True)
    png = where / f"{request.node.name}.png"
    driver.save_screenshot(str(png))
    (where / f"{request.node.name}.html").write_text(driver.page_source)
    print(f"\nbrowser screenshot: {png} (page at {driver.current_url}, source next to it)")
