"""Benchmark: the log shipper on a 1 GiB log beside a plain resumable upload of the same file.

Both run against the local Google test server (Drive v3 over TLS, resumable upload), each
in a child process so that its peak memory (ru_maxrss) is its own. The shipper pass
rotates, gzips, uploads in chunks, confirms size and md5 and deletes; the baseline uploads
the uncompressed log with ``MediaFileUpload(resumable=True)`` from google-api-python-client.
Prints seconds, MB/s of log shipped, bytes sent and peak memory for each, and the ratio.
Run: ``make bench`` (or ``.venv/bin/python -m bench.log_shipper [--size-mib 1024]``).
Target: shipper peak memory < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHUNK = 8 * 1024 * 1024
MIB = 1024 * 1024
SECRET = "bench-secret-key-0123456789"
MEMORY_LIMIT_MB = 150


def write_log(path: Path, size: int) -> None:
    """JSON lines like the app's: repeated structure, varying ids, paths and durations."""
    rng = random.Random(7)
    levels = ["INFO"] * 8 + ["WARNING", "ERROR"]
    words = ["poller", "run", "checked", "step", "outbox", "sent", "grade", "student", "push", "hook", "reply"]
    written = 0
    with path.open("w", encoding="utf-8") as out:
        while written < size:
            lines = []
            for _ in range(2000):
                entry = {"time": f"2026-11-22T06:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}+00:00",
                         "level": rng.choice(levels), "logger": f"app.{rng.choice(words)}",
                         "message": " ".join(rng.choice(words) for _ in range(rng.randrange(4, 14))),
                         "run_id": rng.randrange(1, 10**6), "request": "".join(rng.choices(string.hexdigits, k=16)),
                         "ms": round(rng.random() * 300, 2)}
                lines.append(json.dumps(entry))
            block = "\n".join(lines) + "\n"
            out.write(block[: size - written] if written + len(block) > size else block)
            written += len(block)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ship(config: dict[str, Any]) -> dict[str, Any]:
    from app import create_app
    from app.logship.shipper import LogShipper
    from app.settings import Settings

    settings = Settings(_env_file=None, **config["settings"])  # type: ignore[call-arg]
    app = create_app(settings)
    with app.app_context():
        started = time.perf_counter()
        report = LogShipper(settings, grace_seconds=0, force_rotation=True).run_once()
        seconds = time.perf_counter() - started
    assert not report.errors, report.errors
    return {"seconds": seconds, "peak_mb": peak_mb(), "files": len(report.shipped)}


def child_plain(config: dict[str, Any]) -> dict[str, Any]:
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build
    from googleapiclient.http import MediaFileUpload

    creds = Credentials(None, refresh_token=config["refresh_token"], client_id=config["client_id"],
                        client_secret=config["client_secret"], token_uri=config["token_uri"])
    drive = build("drive", "v3", credentials=creds, client_options={"api_endpoint": config["endpoint"]},
                  static_discovery=True, cache_discovery=False)
    started = time.perf_counter()
    media = MediaFileUpload(config["path"], mimetype="application/json", chunksize=CHUNK, resumable=True)
    request = drive.files().create(body={"name": "plain.log", "parents": [config["folder"]]}, media_body=media,
                                   fields="id,size,md5Checksum")
    response = None
    while response is None:
        _, response = request.next_chunk()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": peak_mb(), "size": int(response["size"])}


def run_child(mode: str, config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    output = subprocess.run([sys.executable, "-m", "bench.log_shipper", "--child", mode], input=json.dumps(config),
                            capture_output=True, text=True, env=env, check=False, timeout=1800)
    if output.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{output.stderr[-3000:]}")
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the log (default 1024 = 1 GiB)")
    parser.add_argument("--child", choices=["ship", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config = json.loads(sys.stdin.read())
        print(json.dumps((child_ship if args.child == "ship" else child_plain)(config)))
        return
    bench(args.size_mib)


def bench(size_mib: int) -> None:
    from app import create_app
    from app.db import db
    from app.google.tokens import store_authorization
    from app.settings import Settings
    from tests.google_server import GoogleTestServer

    with tempfile.TemporaryDirectory(prefix="lessonbot-bench-") as tmp:
        root = Path(tmp)
        log_dir = root / "logs"
        log_dir.mkdir()
        log = log_dir / "core.log"
        print(f"writing a {size_mib} MiB log …", flush=True)
        write_log(log, size_mib * MIB)
        with GoogleTestServer(storage_dir=root / "drive") as gs:
            client_id, secret = gs.add_oauth_client(gs.add_project("lessonbot"))
            scopes = ["https://www.googleapis.com/auth/drive"]
            refresh = gs.issue_refresh_token(client_id, "ops@example.com", scopes)
            folder = gs.add_drive_file("logs")
            settings = {"database_url": f"sqlite:///{root / 'bench.sqlite3'}", "secret_key": SECRET,
                        "internal_token": SECRET, "git_hook_secret": SECRET, "git_root": str(root / "git"),
                        "log_dir": str(log_dir), "google_client_id": client_id, "google_client_secret": secret,
                        "google_api_endpoint": gs.url, "google_token_uri": gs.token_uri, "google_drive_folder_id": folder}
            app = create_app(Settings(_env_file=None, **settings))  # type: ignore[arg-type]
            with app.app_context():
                from flask_migrate import upgrade

                upgrade()
                store_authorization(app.extensions["lessonbot.settings"], "ops@example.com", scopes, refresh)
                db.session.commit()
            env = {**os.environ, "REQUESTS_CA_BUNDLE": str(gs.ca_file), "HTTPLIB2_CA_CERTS": str(gs.ca_file)}
            size = log.stat().st_size
            print("plain resumable upload (client library, 8 MiB chunks) …", flush=True)
            plain = run_child("plain", {"refresh_token": refresh, "client_id": client_id, "client_secret": secret,
                                        "token_uri": gs.token_uri, "endpoint": gs.url, "path": str(log),
                                        "folder": folder}, env)
            print("log shipper pass (rotate, gzip, resumable upload, confirm, delete) …", flush=True)
            shipped = run_child("ship", {"settings": settings}, env)
            gz = [f for f in gs.drive_files() if f["name"].endswith(".log.gz")]
            sent = int(gs.drive_file(gz[0]["id"]).get("size", 0)) if gz else 0
        report(size, plain, shipped, sent)


def report(size: int, plain: dict[str, Any], shipped: dict[str, Any], sent: int) -> None:
    mb = size / 1e6
    print(f"\nlog: {size / MIB:.0f} MiB; shipped as {sent / MIB:.1f} MiB gzip ({size / max(sent, 1):.1f}x)")
    print(f"{'':26}{'seconds':>9}{'MB/s of log':>13}{'peak MB':>9}")
    print(f"{'plain resumable upload':26}{plain['seconds']:9.1f}{mb / plain['seconds']:13.1f}{plain['peak_mb']:9.1f}")
    print(f"{'log shipper':26}{shipped['seconds']:9.1f}{mb / shipped['seconds']:13.1f}{shipped['peak_mb']:9.1f}")
    print(f"shipper / plain throughput: {plain['seconds'] / shipped['seconds']:.2f}")
    verdict = "OK" if shipped["peak_mb"] < MEMORY_LIMIT_MB else "OVER"
    print(f"shipper peak memory {shipped['peak_mb']:.1f} MB (limit {MEMORY_LIMIT_MB} MB): {verdict}")
    if verdict != "OK":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
