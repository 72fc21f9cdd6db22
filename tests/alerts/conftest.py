"""The Zulip test server and the core configured for it, as the Zulip tests have them."""

from tests.zulip.conftest import bot, contract, zs, zulip_app  # noqa: F401  (fixtures)
