"""A GitHub REST API test server that githubkit (and so the app's GitHub code) runs against.

    with GitHubTestServer() as gh:
        gh.add_template("hello-template", {"README.md": b"# Hello\\n"})
        alice = gh.add_student("alice")

`contract.ContractChecker` (checks against GitHub's OpenAPI description) needs openapi-core, a
test-only dependency, so it is imported from its module rather than from here.
"""

from .api import Exchange, RequestRecord, secondary_limit
from .server import GitHubTestServer, new_private_key
from .spawn import SpawnedGitHubTestServer

__all__ = ["Exchange", "GitHubTestServer", "RequestRecord", "SpawnedGitHubTestServer", "new_private_key",
           "secondary_limit"]
