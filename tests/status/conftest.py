"""manage.py status is checked against the Google and Zulip test servers: reuse their fixtures."""

from tests.google.conftest import authorized, gs, lessons_dir, settings, world  # noqa: F401  (fixtures)
from tests.zulip.conftest import bot, contract, zs, zulip_app  # noqa: F401  (fixtures)
