"""Fixtures for the admin pages: a signed-in admin's browser, a seeded course, reading a page's numbers."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import db
from app.google.signin import add_admin
from tests.admin.seed import Seeded, seed_course

ADMIN = "teacher@school.example"


def signed_in(app: Flask, email: str = ADMIN) -> FlaskClient:
    """A browser holding the session the Google sign-in callback gives an allowed admin (tests/google signs in for real)."""
    add_admin(email)
    db.session.commit()
    browser = app.test_client()
    with browser.session_transaction() as session:
        session.update(admin_email=email, admin_version=0, admin_signed_in_at=time.time())
    return browser


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    return signed_in(app)


@pytest.fixture
def seeded(app: Flask) -> Seeded:
    return seed_course(db, 200)


def cell(html: str, row_attribute: str, column: str) -> str:
    """The text of a table cell: the row marked data-<row_attribute>, the cell marked data-col=<column>."""
    row = re.search(rf"<tr {row_attribute}>(.*?)</tr>", html, re.S)
    assert row, f"no row {row_attribute}"
    found = re.search(rf'data-col="{column}">(.*?)</td>', row.group(1), re.S)
    assert found, f"no column {column} in row {row_attribute}"
    return unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)
