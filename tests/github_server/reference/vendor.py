"""Regenerate `github-openapi.json`: the part of GitHub's REST description that the test server speaks.

    python -m tests.github_server.reference.vendor            # the pinned version
    python -m tests.github_server.reference.vendor --from api.github.com.json

It fetches the npm package `@octokit/openapi` with `npm pack` (npm checks the download against
the registry's integrity hash; the script checks it against the pinned one too), takes
`generated/api.github.com.json` and keeps only the operations in `OPERATIONS` with every
component they reference, without examples. Tests read only the written file.
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
)


def fetch(workdir: Path) -> Path:
    """The pinned package's api.github.com.json, unpacked into `workdir`."""
    answer = subprocess.run(["npm", "pack", "--json", f"{PACKAGE}@{VERSION}"], cwd=workdir, check=True,
                            capture_output=True, text=True)
    packed = json.loads(answer.stdout)[0]
    if packed["integrity"] != INTEGRITY:
        raise SystemExit(f"{PACKAGE}@{VERSION}: integrity {packed['integrity']} is not the pinned {INTEGRITY}")
    with tarfile.open(workdir / packed["filename"]) as archive:
        archive.extract(MEMBER, workdir, filter="data")
    return workdir / MEMBER


def _strip_examples(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _strip_examples(value) for key, value in node.items() if key not in ("example", "examples")}
    if isinstance(node, list):
        return [_strip_examples(item) for item in node]
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
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        if kind == "examples":
            continue
        node = _strip_examples(spec["components"][kind][name])
        components.setdefault(kind, {})[name] = node
        pending |= _refs(node) - seen
    return {
        "openapi": spec["openapi"],
        "info": {**spec["info"], "x-lessonbot-subset": f"{PACKAGE}@{VERSION} {MEMBER}, {len(OPERATIONS)} operations"},
        "servers": spec["servers"],
        "paths": paths,
        "components": {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source", type=Path, help="an api.github.com.json already unpacked")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        source = args.source or fetch(Path(workdir))
        spec = json.loads(source.read_text())
    OUTPUT.write_text(json.dumps(subset(spec), indent=1, sort_keys=False) + "\n")
    digest = hashlib.sha256(OUTPUT.read_bytes()).hexdigest()
    print(f"{OUTPUT.name}: {OUTPUT.stat().st_size} bytes, SHA-256 {digest}")


if __name__ == "__main__":
    main()
