"""Admin sign-in, sign-out and the CSRF refusal, in chromium against the production stack."""

from __future__ import annotations

import requests
import sqlalchemy as sa
from selenium.webdriver.remote.webdriver import WebDriver

from app.db import db
from app.google.models import Admin
from tests.browser.chromium import PHONE
from tests.browser.conftest import (
    ADMIN,
    Site,
    click_and_wait,
    heading,
    horizontal_overflow,
    page_text,
    screenshot,
    sign_in,
    signed_in_admin,
    window_size,
)


def _opens_grades(site: Site, session_cookie: str) -> bool:
    """Whether a client holding only this cookie (a copy, as a thief would hold it) gets the grades page."""
    response = requests.get(site.url("/admin/grades"), cookies={"session": session_cookie},
                            verify=str(site.stack.cafile), allow_redirects=False, timeout=10)
    assert response.status_code in (200, 302), response.text
    return response.status_code == 200


def _session_version(site: Site, email: str) -> int:
    with site.app.app_context():
        return db.session.scalars(sa.select(Admin.session_version).where(Admin.email == email)).one()


def test_an_allowlisted_admin_signs_in_through_google_and_sees_the_overview(browser: WebDriver, site: Site) -> None:
    signed_in_admin(browser, site)

    assert heading(browser) == "Courses and lessons"
    assert f"Signed in as {ADMIN}" in page_text(browser)
    screenshot(browser, "admin-signed-in")


def test_a_google_account_not_on_the_allowlist_is_refused_with_a_sentence(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, "stranger@example.com")

    assert heading(browser) == "Sign-in failed"
    assert "stranger@example.com is not an admin of Lessonbot" in page_text(browser)
    screenshot(browser, "admin-sign-in-refused")
    cookie = browser.get_cookie("session")
    assert cookie is None or not _opens_grades(site, cookie["value"])


def test_signing_out_through_the_page_ends_the_session_and_every_copy_of_its_cookie(browser: WebDriver,
                                                                                     site: Site) -> None:
    signed_in_admin(browser, site)
    cookie = browser.get_cookie("session")
    assert cookie is not None and _opens_grades(site, cookie["value"])

    click_and_wait(browser, "Sign out")

    assert heading(browser) == "Signed out"
    screenshot(browser, "admin-signed-out")
    assert not _opens_grades(site, cookie["value"])
    browser.get(site.url("/admin/grades"))
    assert browser.current_url != site.url("/admin/grades")


def test_a_form_sent_without_its_csrf_token_is_refused_and_changes_nothing(browser: WebDriver, site: Site) -> None:
    signed_in_admin(browser, site)
    version = _session_version(site, ADMIN)
    browser.execute_script("document.querySelector('form[action$=\"/admin/logout\"] input[name=csrf_token]').value = ''")

    click_and_wait(browser, "Sign out")

    assert heading(browser) == "Form refused"
    assert "did not come from this site, so nothing was done" in page_text(browser)
    screenshot(browser, "admin-form-refused")
    assert _session_version(site, ADMIN) == version
    browser.get(site.url("/admin/grades"))
    assert browser.current_url == site.url("/admin/grades")  # still signed in


def test_the_grades_page_fits_a_phone_screen(browser: WebDriver, site: Site) -> None:
    signed_in_admin(browser, site)
    browser.get(site.url("/admin/grades"))
    with window_size(browser, PHONE):
        browser.refresh()
        screenshot(browser, "admin-grades-phone")
        assert horizontal_overflow(browser) <= 0
