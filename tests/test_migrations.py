"""Migrations run on PostgreSQL and SQLite and match the models."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from app.db import db
from tests.conftest import make_settings


def _assert_models_match_database() -> None:
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), db.metadata)
    assert diff == []


def test_sqlite_upgrade_from_scratch_matches_models(tmp_path: Path) -> None:
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'demo.sqlite3'}", tmp_path / "git"))
    with app.app_context():
        upgrade()
        _assert_models_match_database()
        downgrade(revision="base")
        assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
        upgrade()


def test_postgresql_schema_matches_models(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path / "git"))
    with app.app_context():
        _assert_models_match_database()
        db.engine.dispose()
