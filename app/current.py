"""The running app's settings and lesson catalog (`current.settings()`, `current.catalog()`)."""

from __future__ import annotations

from flask import current_app

from app.lessons.catalog import Catalog
from app.settings import Settings


def settings() -> Settings:
    value: Settings = current_app.extensions["lessonbot.settings"]
    return value


def catalog() -> Catalog:
    value: Catalog = current_app.extensions["lessonbot.catalog"]
    return value
