"""Regenerate `github-openapi.json` and `github-webhooks.json`: the parts of GitHub's descriptions that the
test server speaks.

    python -m tests.github_server.reference.vendor            # the pinned versions
    python -m tests.github_server.reference.vendor --from api.github.com.json --webhooks-from webhooks.json

It fetches the npm packages `@octokit/openapi` and `@octokit/openapi-webhooks` with `npm pack`
(npm checks each download against the registry's integrity hash; the script checks it against the
pinned one too), takes each one's `generated/api.github.com.json` and keeps only the operations in
`OPERATIONS` (the webhooks in `WEBHOOKS`) with every component they reference, without examples
(and, for the webhooks, without descriptions: their payload schemas are large). Tests read only the
written files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "@octokit/openapi"
VERSION = "23.0.2"
INTEGRITY = "sha512-pV8M7L9GY23AybNvTmo2nyjmpmnt6+2sRE/tqr0ZLQcPS4lnw7u5eZGNmwRNkBC3D7gZXbFx5AHzLUVRBXGDhg=="
MEMBER = "package/generated/api.github.com.json"
OUTPUT = Path(__file__).resolve().parent / "github-openapi.json"

WEBHOOKS_PACKAGE = "@octokit/openapi-webhooks"
WEBHOOKS_VERSION = "12.1.0"
WEBHOOKS_INTEGRITY = ("sha512-Z5eDsLCUNbx1zHpZb1LNQirADqdMTvWJQ/deahi0ws+tWWnwHXB+Pr4jfmM9OrETS9Y5iW8ZRu1fdbudObhLrg==")
WEBHOOKS_OUTPUT = Path(__file__).resolve().parent / "github-webhooks.json"
# The deliveries the test server makes: `<event>` or `<event>-<action>`, as the package names them.
WEBHOOKS: tuple[str, ...] = (
    "push", "member-added", "issues-opened", "issues-closed", "issues-reopened", "issues-edited", "issues-labeled",
    "pull-request-opened", "pull-request-closed", "pull-request-review-submitted",
    "pull-request-review-comment-created",
)

OPERATIONS: tuple[tuple[str, str], ...] = (
    ("get", "/app"),
    ("get", "/orgs/{org}/installation"),
    ("post", "/app/installations/{installation_id}/access_tokens"),
    ("get", "/rate_limit"),
    ("get", "/user"),
    ("get", "/users/{username}"),
    ("get", "/user/repository_invitations"),
    ("patch", "/user/repository_invitations/{invitation_id}"),
    ("post", "/repos/{template_owner}/{template_repo}/generate"),
    ("get", "/repos/{owner}/{repo}"),
    ("patch", "/repos/{owner}/{repo}"),
    ("get", "/repos/{owner}/{repo}/collaborators"),
    ("get", "/repos/{owner}/{repo}/collaborators/{username}"),
    ("put", "/repos/{owner}/{repo}/collaborators/{username}"),
    ("get", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("get", "/repos/{owner}/{repo}/git/matching-refs/{ref}"),
    ("post", "/repos/{owner}/{repo}/git/refs"),
    ("get", "/repos/{owner}/{repo}/contents/{path}"),
    ("put", "/repos/{owner}/{repo}/contents/{path}"),
    ("get", "/repos/{owner}/{repo}/pulls"),
    ("post", "/repos/{owner}/{repo}/pulls"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("put", "/repos/{owner}/{repo}/pulls/{pull_number}/merge"),
    ("get", "/repos/{owner}/{repo}/issues"),
    ("post", "/repos/{owner}/{repo}/issues"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("patch", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("post", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    ("get", "/repos/{owner}/{repo}/actions/runs"),
    ("get", "/repos/{owner}/{repo}/invitations"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    ("post", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    ("post", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies"),
)


def fetch(workdir: Path, package: str = PACKAGE, version: str = VERSION, integrity: str = INTEGRITY) -> Path:
    """The pinned package's api.github.com.json, unpacked into its own folder under `workdir`."""
    target = workdir / package.replace("/", "+")
    target.mkdir()
    answer = subprocess.run(["npm", "pack", "--json", f"{package}@{version}"], cwd=target, check=True,
                            capture_output=True, text=True)
    packed = json.loads(answer.stdout)[0]
    if packed["integrity"] != integrity:
        raise SystemExit(f"{package}@{version}: integrity {packed['integrity']} is not the pinned {integrity}")
    with tarfile.open(target / packed["filename"]) as archive:
        archive.extract(MEMBER, target, filter="data")
    return target / MEMBER


def _strip_examples(node: Any, dropped: tuple[str, ...] = ("example", "examples"), texts: tuple[str, ...] = ()) -> Any:
    """The node without the keys `dropped`, nor the keys `texts` where they hold text (a property that happens
    to be called `description` holds a schema, and stays)."""
    if isinstance(node, dict):
        return {key: _strip_examples(value, dropped, texts) for key, value in node.items()
                if key not in dropped and not (key in texts and isinstance(value, str))}
    if isinstance(node, list):
        return [_strip_examples(item, dropped, texts) for item in node]
    return node


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def subset(spec: dict[str, Any]) -> dict[str, Any]:
    """The description with only OPERATIONS and what they reference."""
    paths: dict[str, Any] = {}
    for method, path in OPERATIONS:
        item = spec["paths"][path]
        kept = paths.setdefault(path, {key: value for key, value in item.items() if key == "parameters"})
        kept[method] = _strip_examples(item[method])
    return {
        "openapi": spec["openapi"],
        "info": {**spec["info"], "x-lessonbot-subset": f"{PACKAGE}@{VERSION} {MEMBER}, {len(OPERATIONS)} operations"},
        "servers": spec["servers"],
        "paths": paths,
        "components": _referenced(spec, paths),
    }


WEBHOOK_TEXTS = ("description", "summary", "title")  # annotations, where they hold text


def webhooks_subset(spec: dict[str, Any]) -> dict[str, Any]:
    """The webhooks description with only WEBHOOKS and the components they reference, annotations left out."""
    webhooks = {name: _strip_examples(spec["webhooks"][name], texts=WEBHOOK_TEXTS) for name in WEBHOOKS}
    return {
        "openapi": spec["openapi"],
        "info": {**spec["info"], "x-lessonbot-subset": f"{WEBHOOKS_PACKAGE}@{WEBHOOKS_VERSION} {MEMBER}, "
                                                      f"{len(WEBHOOKS)} webhooks"},
        "webhooks": webhooks,
        "components": _referenced(spec, webhooks, WEBHOOK_TEXTS),
    }


def _referenced(spec: dict[str, Any], root: Any, texts: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Every component `root` references, directly or through others, without examples (nor `texts`)."""
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(root)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        if kind == "examples":
            continue
        node = _strip_examples(spec["components"][kind][name], texts=texts)
        components.setdefault(kind, {})[name] = node
        pending |= _refs(node) - seen
    return {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"{path.name}: {path.stat().st_size} bytes, SHA-256 {digest}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source", type=Path, help="an api.github.com.json already unpacked")
    parser.add_argument("--webhooks-from", dest="webhooks_source", type=Path,
                        help="@octokit/openapi-webhooks' api.github.com.json already unpacked")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        source = args.source or fetch(Path(workdir))
        spec = json.loads(source.read_text())
        webhooks_source = args.webhooks_source or fetch(Path(workdir), WEBHOOKS_PACKAGE, WEBHOOKS_VERSION,
                                                        WEBHOOKS_INTEGRITY)
        webhooks = json.loads(webhooks_source.read_text())
    _write(OUTPUT, subset(spec))
    _write(WEBHOOKS_OUTPUT, webhooks_subset(webhooks))


if __name__ == "__main__":
    main()
