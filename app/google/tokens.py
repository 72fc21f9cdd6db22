"""The stored authorization: the refresh token, encrypted with a key derived from the app's secret key."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from app.db import db, utcnow
from app.google.models import GoogleAuthorization
from app.settings import Settings


@dataclass(frozen=True)
class StoredAuthorization:
    email: str
    scopes: tuple[str, ...]
    refresh_token: str

    def __repr__(self) -> str:  # never print the token
        return f"StoredAuthorization({self.email!r}, {len(self.scopes)} scopes)"


def _fernet(settings: Settings) -> Fernet:
    digest = hashlib.sha256(b"lessonbot google token\0" + settings.secret_key.get_secret_value().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def store_authorization(settings: Settings, email: str, scopes: list[str], refresh_token: str) -> None:
    """Replace the stored authorization (the caller commits)."""
    db.session.execute(sa.delete(GoogleAuthorization))
    encrypted = _fernet(settings).encrypt(refresh_token.encode()).decode()
    db.session.add(GoogleAuthorization(email=email, scopes=sorted(scopes), refresh_token_encrypted=encrypted,
                                       authorized_at=utcnow()))


def load_authorization(settings: Settings) -> StoredAuthorization | None:
    row = db.session.scalars(sa.select(GoogleAuthorization).order_by(GoogleAuthorization.id.desc()).limit(1)).first()
    if row is None:
        return None
    try:
        token = _fernet(settings).decrypt(row.refresh_token_encrypted.encode()).decode()
    except InvalidToken:
        return None  # the secret key changed: the admin must authorize again
    return StoredAuthorization(row.email, tuple(row.scopes or ()), token)


def authorized_at() -> str | None:
    row = db.session.scalars(sa.select(GoogleAuthorization).limit(1)).first()
    return row.authorized_at.isoformat(timespec="seconds") if row else None
