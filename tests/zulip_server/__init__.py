"""A Zulip REST API test server that the official `zulip` client and `zulip_bots` run against.

    with ZulipTestServer() as zs:
        bot = zs.add_user("bot@example.com", "Lessonbot", bot=True)
        client = zs.client(bot)

`contract.ContractChecker` (OpenAPI checks) needs openapi-core, a test-only
dependency, so it is imported from its module rather than from here.
"""

from .api import Exchange, RequestRecord
from .faults import Fault, Faults, InjectedFault, RateLimiter
from .listener import MessageListener
from .models import Message, Reaction, Stream, User
from .server import ZulipTestServer
from .spawn import SpawnedZulipTestServer

__all__ = [
    "Exchange",
    "Fault",
    "Faults",
    "InjectedFault",
    "Message",
    "MessageListener",
    "RateLimiter",
    "Reaction",
    "RequestRecord",
    "SpawnedZulipTestServer",
    "Stream",
    "User",
    "ZulipTestServer",
]
