"""Every admin page and action in chromium, against the production stack and a seeded course of 300 students.

Each page is saved as a screenshot under tests/artifacts/ (desktop and phone width), so anyone
can look at what an admin sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from app.admin.models import AdminAction
from app.db import db
from app.grading.service import GRADE_KINDS
from app.outbox.models import OutboxItem, OutboxStatus
from app.runs.models import LessonRun, RunStatus
from tests.admin.seed import Seeded, seed_course
from tests.browser.chromium import PHONE
from tests.browser.conftest import (
    ADMIN,
    Site,
    heading,
    horizontal_overflow,
    page_text,
    press_and_wait,
    screenshot,
    sign_in,
    signed_in_admin,
    window_size,
)

STUDENTS = 300


@pytest.fixture(scope="module")
def seeded(site: Site) -> Iterator[Seeded]:
    with site.app.app_context():
        yield seed_course(db, STUDENTS)


def _confirm_and_press(browser: WebDriver, form_action: str) -> None:
    """Tick the form's “I confirm” box and press its button (both are needed for an action to happen)."""
    form = browser.find_element(By.CSS_SELECTOR, f"form[action='{form_action}']")
    form.find_element(By.NAME, "confirm").click()
    press_and_wait(browser, form.find_element(By.TAG_NAME, "button"))


def _loaded_from_elsewhere(browser: WebDriver, site: Site) -> list[str]:
    """Every resource the page loaded from anywhere but the app itself (a CDN would show here)."""
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [name for name in names if not name.startswith(site.url("/"))]


def _look_at(browser: WebDriver, site: Site, name: str) -> None:
    """Screenshots at desktop and phone width; nothing from outside the app; the page fits a phone."""
    assert _loaded_from_elsewhere(browser, site) == []
    assert browser.find_elements(By.TAG_NAME, "script") == []
    screenshot(browser, name)
    with window_size(browser, PHONE):
        browser.refresh()
        screenshot(browser, f"{name}-phone")
        assert horizontal_overflow(browser) <= 0, f"{name} is wider than a phone"


def _actions(site: Site, student_id: int) -> list[str]:
    with site.app.app_context():
        return [a.action for a in db.session.scalars(
            sa.select(AdminAction).where(AdminAction.student_id == student_id).order_by(AdminAction.id))]


def test_every_page_shows_the_seeded_course(browser: WebDriver, site: Site, seeded: Seeded) -> None:
    signed_in_admin(browser, site)
    assert browser.current_url == site.url("/admin/")
    assert heading(browser) == "Courses and lessons" and seeded.alias in page_text(browser)
    _look_at(browser, site, "admin-overview")

    browser.find_element(By.LINK_TEXT, "git-basics").click()
    assert heading(browser) == "Lesson funnel: git-basics"
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg")) >= 2  # the funnel and the time to complete
    _look_at(browser, site, "admin-funnel")

    browser.get(site.url("/admin/students?q=seed.student1"))
    assert heading(browser) == "Students" and "Found:" in page_text(browser)
    _look_at(browser, site, "admin-students")

    browser.get(site.url(f"/admin/students/{seeded.student_of_state['completed']}"))
    assert "Conversation with the bot" in page_text(browser) and "Grade deliveries" in page_text(browser)
    _look_at(browser, site, "admin-student")

    browser.get(site.url("/admin/grades?status=failed"))
    assert heading(browser) == "Grades"
    _look_at(browser, site, "admin-grades")

    browser.get(site.url("/admin/problems"))
    assert heading(browser) == "Problems" and "dead letter" in page_text(browser).lower()
    _look_at(browser, site, "admin-problems")


def test_the_admin_reads_the_pages_in_russian(browser: WebDriver, site: Site, seeded: Seeded) -> None:
    signed_in_admin(browser, site)
    press_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "button[name=language][value=ru]"))
    assert heading(browser) == "Курсы и уроки"
    browser.get(site.url("/admin/problems"))
    assert heading(browser) == "Проблемы"
    screenshot(browser, "admin-problems-ru")
    press_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "button[name=language][value=en]"))
    assert heading(browser) == "Problems"


def test_each_action_from_a_students_page_is_done_and_recorded(browser: WebDriver, site: Site, seeded: Seeded) -> None:
    signed_in_admin(browser, site)
    stuck, active, completed = (seeded.run_of_state[state] for state in ("stuck", "active", "completed"))

    browser.get(site.url(f"/admin/students/{seeded.student_of_state['stuck']}"))
    _confirm_and_press(browser, f"/admin/runs/{stuck}/restart")
    assert f"run {stuck} (git-basics) restarted as run" in page_text(browser)
    screenshot(browser, "admin-action-restarted")

    browser.get(site.url(f"/admin/students/{seeded.student_of_state['active']}"))
    _confirm_and_press(browser, f"/admin/runs/{active}/stop")
    assert f"run {active} (git-basics) stopped" in page_text(browser)

    browser.get(site.url(f"/admin/students/{seeded.student_of_state['completed']}"))
    _confirm_and_press(browser, f"/admin/runs/{completed}/regrade")
    assert f"run {completed}: grade of" in page_text(browser)

    failed_reply = seeded.failed_replies[0]
    browser.get(site.url("/admin/problems"))
    _confirm_and_press(browser, f"/admin/outbox/{failed_reply}/resend")
    assert f"reply {failed_reply} queued again" in page_text(browser)

    browser.get(site.url("/admin/grades?status=failed"))
    _confirm_and_press(browser, "/admin/grades/retry")
    assert "failed grade(s) and row(s) queued again" in page_text(browser)

    with site.app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxItem).where(
            OutboxItem.kind.in_(GRADE_KINDS), OutboxItem.status == OutboxStatus.FAILED)) == 0
        assert db.session.get(LessonRun, stuck).status == RunStatus.STOPPED  # type: ignore[union-attr]
        assert db.session.get(LessonRun, active).status == RunStatus.STOPPED  # type: ignore[union-attr]
        assert db.session.get(OutboxItem, failed_reply).status == OutboxStatus.PENDING  # type: ignore[union-attr]
    assert _actions(site, seeded.student_of_state["stuck"]) == ["restart"]
    assert _actions(site, seeded.student_of_state["active"]) == ["stop"]
    assert _actions(site, seeded.student_of_state["completed"]) == ["regrade"]


def test_an_action_without_its_token_or_its_confirmation_changes_nothing(browser: WebDriver, site: Site,
                                                                          seeded: Seeded) -> None:
    signed_in_admin(browser, site)
    student, run_id = next((student, run) for student, run in _active_runs(site).items()
                           if student != seeded.student_of_state["active"])  # one the actions test leaves alone
    before = _actions(site, student)
    browser.get(site.url(f"/admin/students/{student}"))
    form = f"/admin/runs/{run_id}/stop"
    browser.execute_script(f"document.querySelector(\"form[action='{form}'] input[name=csrf_token]\").value = ''")
    _confirm_and_press(browser, form)
    assert heading(browser) == "Form refused" and "nothing was done" in page_text(browser)
    screenshot(browser, "admin-action-csrf-refused")

    browser.get(site.url(f"/admin/students/{student}"))
    browser.execute_script(f"document.querySelector(\"form[action='{form}'] input[name=confirm]\").required = false")
    press_and_wait(browser, browser.find_element(By.CSS_SELECTOR, f"form[action='{form}'] button"))
    assert "confirm" in page_text(browser).lower()
    with site.app.app_context():
        assert db.session.get(LessonRun, run_id).status == RunStatus.ACTIVE  # type: ignore[union-attr]
    assert _actions(site, student) == before


def _active_runs(site: Site) -> dict[int, int]:
    with site.app.app_context():
        return dict(db.session.execute(sa.select(LessonRun.student_id, LessonRun.id)
                                       .where(LessonRun.status == RunStatus.ACTIVE).order_by(LessonRun.id).limit(5)).all())


def test_someone_not_signed_in_or_not_an_admin_sees_no_page(browser: WebDriver, site: Site, seeded: Seeded) -> None:
    for path in ("/admin/", "/admin/students", f"/admin/students/{seeded.student_of_state['completed']}",
                 "/admin/grades", "/admin/problems"):
        browser.delete_all_cookies()
        browser.get(site.url(path))
        assert not browser.current_url.startswith(site.url("/admin/")) or "login" in browser.current_url, path
    sign_in(browser, site, "stranger@example.com")
    assert heading(browser) == "Sign-in failed"
    browser.get(site.url("/admin/students"))
    assert heading(browser) != "Students"
    assert ADMIN not in page_text(browser)
