"""Backups need the Google test server (Drive) as the Google tests do: reuse their fixtures."""

from tests.google.conftest import authorized, gs, lessons_dir, settings, world  # noqa: F401  (fixtures)
