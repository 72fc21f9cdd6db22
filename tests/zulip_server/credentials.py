"""Logging in to a test server, in-process or spawned: clients and zuliprc files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zulip

from .models import User


class Credentials:
    """Mixin for a server object with a `url`."""

    url: str

    def client(self, user: User, **kwargs: Any) -> zulip.Client:
        """An official `zulip.Client` logged in as `user`."""
        return zulip.Client(email=user.email, api_key=user.api_key, site=self.url, **kwargs)

    def zuliprc(self, user: User) -> str:
        """The text of a zuliprc file for `user`."""
        return f"[api]\nemail={user.email}\nkey={user.api_key}\nsite={self.url}\n"

    def write_zuliprc(self, user: User, path: str | Path) -> Path:
        """Write a zuliprc for `user` (mode 0600) and return its path."""
        target = Path(path)
        target.write_text(self.zuliprc(user))
        target.chmod(0o600)
        return target
