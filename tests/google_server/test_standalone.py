"""``python -m tests.google_server`` runs the server on its own and stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import google.auth.transport.requests
import requests
from google.oauth2.credentials import Credentials

from tests import lifetime

REPO_ROOT = Path(__file__).resolve().parents[2]


def _read_banner(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("}"):
            break
    return dict(json.loads("".join(lines)))


def test_standalone_server_prints_credentials_and_stops_on_sigterm() -> None:
    process = lifetime.popen(
        [sys.executable, "-m", "tests.google_server", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        banner = _read_banner(process)
        credentials = Credentials(
            None,
            refresh_token=banner["refresh_token"],
            client_id=banner["client_id"],
            client_secret=banner["client_secret"],
            token_uri=banner["token_uri"],
        )
        credentials.refresh(google.auth.transport.requests.Request())
        info = requests.get(
            banner["url"] + "/oauth2/v3/userinfo", headers={"Authorization": f"Bearer {credentials.token}"}, timeout=10
        )
        assert banner["url"].startswith("http://127.0.0.1:")
        assert info.json()["sub"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_standalone_server_makes_a_drive_folder_and_writes_its_banner_to_a_file(tmp_path: Path) -> None:
    banner_file = tmp_path / "google.json"
    process = lifetime.popen(
        [sys.executable, "-m", "tests.google_server", "--port", "0", "--drive-folder", "backups",
         "--credentials-json", str(banner_file)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        printed = _read_banner(process)
        assert json.loads(banner_file.read_text()) == printed
        credentials = Credentials(
            None,
            refresh_token=printed["refresh_token"],
            client_id=printed["client_id"],
            client_secret=printed["client_secret"],
            token_uri=printed["token_uri"],
        )
        credentials.refresh(google.auth.transport.requests.Request())
        folder = requests.get(f"{printed['url']}/drive/v3/files/{printed['drive_folder_id']}",
                              headers={"Authorization": f"Bearer {credentials.token}"}, timeout=10)
        assert folder.json()["name"] == "backups"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
