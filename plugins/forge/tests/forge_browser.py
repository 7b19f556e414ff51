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


def css(driver: Any, selector: str) -> Any:
    """The element ``selector`` finds (waiting for it to appear)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    wait = WebDriverWait(driver, PAGE_LOAD_SECONDS)
    return wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)))


#: What chromedriver sometimes says, instead of "stale element", about a node of a
#: document that a navigation is replacing.
_GONE = "does not belong to the document"


def go(driver: Any, element: Any) -> None:
    """Click ``element`` and wait until the page it leads to has replaced this one."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    try:
        element.click()
    except WebDriverException as exc:
        # The click's navigation replaced the document before chromedriver was done with
        # the node: the click has landed (the wait below fails if it had not).
        if _GONE not in str(exc):
            raise

    def replaced(_: Any) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if _GONE not in str(exc):
                raise
            return True
        return False

    WebDriverWait(driver, PAGE_LOAD_SECONDS).until(replaced)


def find_all(driver: Any, selector: str) -> list[Any]:
    """Every element ``selector`` finds now (no waiting)."""
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def link(driver: Any, text: str) -> Any:
    """The link whose text is ``text``."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.LINK_TEXT, text)


def log_in(driver: Any, base: str, token: str) -> None:
    """Log ``driver`` in at ``base`` (``http://host:port``) with ``token``."""
    driver.get(base + "/-/login")
    css(driver, "#token").send_keys(token)
    go(driver, css(driver, "#submit"))


def form_csrf(client: Any, path: str) -> str:
    """The CSRF token of the form on page ``path``, read as a browser would with the
    ``httpx.Client`` ``client`` (which keeps the cookie the page sets)."""
    import re

    page = client.get(path)
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None, f"no CSRF field on {path}"
    return found.group(1)
