"""The admin pages in a real browser: the production web stack (nginx, uWSGI, PostgreSQL) signing admins in
through the Google test server, and headless chromium looking at it as an admin would.

One stack and one browser per test module (each takes a second or two to start); every test starts
with no cookies and a desktop-sized window. `screenshot` keeps what the browser showed under
tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from app import create_app
from app.db import db
from app.google.signin import add_admin
from app.settings import PROJECT_ROOT
from tests.browser.chromium import DESKTOP, cdp, running_browser
from tests.conftest import SECRETS, _truncate_all, make_settings
from tests.google_server import GoogleTestServer
from tests.stack import Stack, leftover_processes, running_stack

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
SCREENSHOT_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
ADMIN = "admin@example.com"


@dataclass
class Site:
    """The running stack, the Google test server it signs in through, and an app on the same database
    (``with site.app.app_context():`` to seed data or read what a page did)."""

    stack: Stack
    gs: GoogleTestServer
    app: Flask

    def url(self, path: str) -> str:
        return self.stack.https_url + path


@pytest.fixture(scope="module")
def gs() -> Iterator[GoogleTestServer]:
    with GoogleTestServer(seed=12) as server:
        yield server
        # A browser asks every site it shows a page of for /favicon.ico; that is no API call.
        errors = [error for error in server.validation_errors if " /favicon.ico?" not in error]
        assert errors == [], "server saw requests/responses outside discovery"


@pytest.fixture(scope="module")
def site(database_url: str, gs: GoogleTestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The stack with Google sign-in configured against `gs`, on an emptied database."""
    client_id, client_secret = gs.add_oauth_client(gs.add_project("lessonbot"))
    app = create_app(make_settings(database_url, tmp_path_factory.mktemp("git"), default_language="en"))
    with app.app_context():
        _truncate_all()
    google = {
        "LESSONBOT_GOOGLE_CLIENT_ID": client_id, "LESSONBOT_GOOGLE_CLIENT_SECRET": client_secret,
        "LESSONBOT_GOOGLE_AUTH_URI": gs.https_url + "/o/oauth2/auth", "LESSONBOT_GOOGLE_TOKEN_URI": gs.https_url + "/token",
        "LESSONBOT_GOOGLE_API_ENDPOINT": gs.url,
    }
    # The app fetches tokens from the test server over HTTPS (oauthlib refuses plain HTTP).
    with running_stack(database_url, SECRETS, app_settings=google,
                       uwsgi_environment={"REQUESTS_CA_BUNDLE": str(gs.ca_file)}) as stack:
        yield Site(stack, gs, app)
    assert leftover_processes(stack.root) == []
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[WebDriver]:
    """Headless chromium that trusts the stack's and the Google test server's certificates, and no others."""
    with running_browser(trusted=[site.stack.cafile, site.gs.tls.cert_file]) as driver:
        yield driver


@pytest.fixture(autouse=True)
def _fresh_browser(request: pytest.FixtureRequest) -> None:
    """Each test starts signed out, at desktop size."""
    if "browser" in request.fixturenames:
        driver: WebDriver = request.getfixturevalue("browser")
        cdp(driver, "Network.clearBrowserCookies")
        driver.set_window_size(*DESKTOP)


def allow_admin(site: Site, email: str) -> None:
    """Put `email` on the admin allowlist (as ``manage.py admins add``)."""
    with site.app.app_context():
        add_admin(email)
        db.session.commit()


def sign_in(browser: WebDriver, site: Site, email: str) -> None:
    """Start at /admin/login and let Google's consent page approve as `email` (its login_hint); wherever
    the app sends the browser then is where it stays."""
    site.gs.add_account(email)
    browser.get(site.url("/admin/login?" + urlencode({"login_hint": email})))


def signed_in_admin(browser: WebDriver, site: Site, email: str = ADMIN) -> None:
    """Allowlist `email`, sign in as it, and land on the admin's first page."""
    allow_admin(site, email)
    sign_in(browser, site, email)
    assert browser.current_url == site.url("/admin/"), f"{browser.current_url}: {page_text(browser)}"


def click_and_wait(browser: WebDriver, button_text: str) -> None:
    """Click the button reading `button_text` and wait until the page it leads to has loaded."""
    assert "'" not in button_text, button_text
    press_and_wait(browser, browser.find_element(By.XPATH, f"//button[normalize-space()='{button_text}']"))


def press_and_wait(browser: WebDriver, button: WebElement) -> None:
    """Press `button` and wait until the page it leads to has loaded.

    The old page is marked with a flag on its window; a new document has a fresh window without it. (Asking
    whether the old <html> element went stale, as selenium's `staleness_of` does, races the navigation:
    chromedriver then sometimes answers "Node with given id does not belong to the document".)"""
    browser.execute_script("window.lessonbotOldPage = true")
    button.click()
    WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(_new_page_loaded)


def _new_page_loaded(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return window.lessonbotOldPage === undefined && document.readyState === 'complete'"))


def page_text(browser: WebDriver) -> str:
    """What a reader sees of the page (its body's rendered text)."""
    return str(browser.find_element(By.TAG_NAME, "body").text)


def heading(browser: WebDriver) -> str:
    return str(browser.find_element(By.TAG_NAME, "h1").text)


def screenshot(browser: WebDriver, name: str) -> Path:
    """The whole page as shown now, not just the window, in tests/artifacts/<name>.png."""
    assert SCREENSHOT_NAME.fullmatch(name), f"screenshot names are lowercase words joined by '-': {name!r}"
    size = cdp(browser, "Page.getLayoutMetrics")["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = cdp(browser, "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


@contextlib.contextmanager
def window_size(browser: WebDriver, size: tuple[int, int]) -> Iterator[None]:
    """Look at pages through a window of `size` (chromium.PHONE, say), then back to desktop size."""
    browser.set_window_size(*size)
    try:
        yield
    finally:
        browser.set_window_size(*DESKTOP)


def horizontal_overflow(browser: WebDriver) -> int:
    """How many CSS pixels the page is wider than the window (0 or less: no sideways scrolling)."""
    return int(browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth"))
