#!/usr/bin/env python3
"""Pack the local checkout into a release archive; runs on the Ansible controller.

The archive holds the files git tracks (``git ls-files``), as they are in the
working tree, and nothing else: an untracked file (a decrypted
``vault.plain.yml``, a local ``.env``) never ships, whatever .gitignore says.
Every file is owned by root with mode 0644 (0755 if executable), so the app
user can read its code but not change it.  It is reproducible: the same tree
gives the same bytes and the same content hash, so an unchanged checkout is not
deployed again.

Prints one JSON object: archive path, content hash, requirements hash, a UTC
timestamp.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

EXCLUDED_PARTS = {
    ".venv",
    ".ansible",
    "instance",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "build",
    "node_modules",
}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


class NotACheckout(Exception):
    """The source is not a git checkout of the app: nothing can say which files are tracked."""


def release_files(source: Path) -> list[str]:
    """Relative paths of the tracked files that make up a release, sorted."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached"],
            cwd=source,
            check=True,
            capture_output=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or str(error).encode()
        raise NotACheckout(f"{source} is not a git checkout ({detail.decode().strip()})") from None
    files = set()
    for name in filter(None, listing.split("\0")):
        path = source / name
        parts = Path(name).parts
        if EXCLUDED_PARTS.intersection(parts) or name.endswith(EXCLUDED_SUFFIXES):
            continue
        # Tracked but deleted in the working tree, or a directory (submodule).
        if path.is_symlink() or path.is_file():
            files.add(name)
    return sorted(files)


def content_hash(source: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        path = source / name
        digest.update(name.encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def write_archive(source: Path, files: list[str], archive: Path) -> None:
    """A gzipped tar with fixed owners and times, so equal trees give equal bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in files:
            info = tar.gettarinfo(str(source / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isreg():
                info.mode = 0o755 if info.mode & 0o100 else 0o644
                with (source / name).open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    with partial.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
        packed.write(buffer.getvalue())
    partial.replace(archive)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="checkout to pack")
    parser.add_argument("--output", type=Path, required=True, help="directory for the archive")
    options = parser.parse_args()
    source = options.source.resolve()
    try:
        files = release_files(source)
    except NotACheckout as error:
        print(f"{error}: a release is packed from the tracked files of a checkout", file=sys.stderr)
        return 1
    if "requirements.lock" not in files:
        print(f"{source} tracks no requirements.lock: not an app checkout", file=sys.stderr)
        return 1
    tree_hash = content_hash(source, files)[:12]
    archive = options.output / f"lessonbot-{tree_hash}.tar.gz"
    if not archive.exists():
        for old in options.output.glob("lessonbot-*.tar.gz"):
            old.unlink()
        write_archive(source, files, archive)
    # The virtualenv is shared by the releases with the same lock.
    requirements = (source / "requirements.lock").read_bytes()
    print(
        json.dumps(
            {
                "archive": str(archive),
                "hash": tree_hash,
                "requirements_hash": hashlib.sha256(requirements).hexdigest()[:12],
                "timestamp": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                "files": len(files),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
