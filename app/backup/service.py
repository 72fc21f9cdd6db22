"""Backups: pg_dump → age → a local file → Drive (md5-verified), retention, and restore.

A backup is ``pg_dump --format=custom`` piped straight into ``age`` (Debian's package), so
the dump is encrypted to the ops' public keys before it touches the disk; the private key
never is on the server. The file is uploaded with the log shipper's resumable, md5-checked
uploader and kept locally too. Old backups are deleted (locally and on Drive) only after a
new one was uploaded and verified. One backup runs at a time: a PostgreSQL advisory lock,
which also holds across hosts.

Restore goes the other way into an empty database, then checks that the schema is at the
migration this release expects and counts the rows of every table.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.backup.retention import to_keep
from app.db import expected_revision
from app.logship.drive import DriveUploader
from app.logship.files import digest
from app.loop import advisory_unlock, try_advisory_lock
from app.settings import Settings, sqlalchemy_url

log = logging.getLogger(__name__)

SUFFIX = ".dump.age"
MIME_TYPE = "application/octet-stream"
MANIFEST = "manifest.json"
LOCK_KEY = (0x4C42, 0x4B50)  # "LB", "KP": the advisory lock of `backup create`
Progress = Callable[[int], None]


class BackupError(Exception):
    """A backup or restore could not be done; the message says why and what to do."""


@dataclass
class Backup:
    """One backup as the manifest records it."""

    name: str
    created: str
    size: int
    md5: str
    local: bool = True
    drive_id: str | None = None
    verified: bool = False  # Drive confirmed the size and md5 of the upload

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created)


@dataclass
class RestoreReport:
    database: str
    revision: str
    rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BackupFolder:
    """The backup directory; also where the uploader keeps its resumable-session state."""

    path: Path

    @property
    def outgoing(self) -> Path:
        return self.path

    @property
    def state_file(self) -> Path:
        return self.path / ".upload-state.json"

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    def load(self) -> dict[str, Backup]:
        try:
            entries = json.loads(self.manifest.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise BackupError(f"{self.manifest} is unreadable ({error}); move it away to start a new one") from None
        return {entry["name"]: Backup(**entry) for entry in entries}

    def save(self, backups: dict[str, Backup]) -> None:
        """Replace the manifest atomically (write, fsync, rename)."""
        temporary = self.manifest.with_suffix(".tmp")
        with temporary.open("w") as handle:
            json.dump([asdict(b) for b in sorted(backups.values(), key=lambda b: b.name)], handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.manifest)


# --- connecting the PostgreSQL tools -----------------------------------------------------------


def libpq_environment(database_url: str) -> dict[str, str]:
    """PG* variables for pg_dump/pg_restore: the password stays out of the command line (and ps)."""
    url = sa.engine.make_url(database_url)
    if not url.drivername.startswith("postgres"):
        raise BackupError("backups need PostgreSQL (DATABASE_URL is not postgresql://…); the demo's SQLite is a plain file")
    values = {"PGHOST": url.host, "PGPORT": url.port, "PGUSER": url.username, "PGPASSWORD": url.password,
              "PGDATABASE": url.database, "PGCONNECT_TIMEOUT": "10"}
    return {**os.environ, **{key: str(value) for key, value in values.items() if value is not None}}


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        package = "age" if name.startswith("age") else "postgresql-client"
        raise BackupError(f"{name} is not installed (apt-get install {package})")
    return found


def _pipeline(producer: list[str], consumer: list[str], env: dict[str, str], what: str) -> None:
    """producer | consumer; both must succeed. Errors name the failing program and its last line."""
    with subprocess.Popen(producer, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as first:
        assert first.stdout is not None
        second = subprocess.run(consumer, stdin=first.stdout, capture_output=True, env=env, check=False)
        first.stdout.close()
        first_error = first.stderr.read() if first.stderr else b""
        first.wait()
    for program, code, stderr in ((producer[0], first.returncode, first_error),
                                  (consumer[0], second.returncode, second.stderr)):
        if code != 0:
            raise BackupError(f"{what} failed: {Path(program).name} exited {code}: {_reason(stderr)}")


def _reason(stderr: bytes) -> str:
    """The line of a tool's error output that says what went wrong (age adds a line asking for bug reports)."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and "report unexpected" not in line]
    return (errors or lines or ["no message"])[0]


@contextmanager
def _only_backup(engine: sa.Engine) -> Iterator[None]:
    with engine.connect() as connection:
        if not try_advisory_lock(connection, LOCK_KEY):
            raise BackupError("another backup is running (its advisory lock is held); try again when it has finished")
        try:
            yield
        finally:
            advisory_unlock(connection, LOCK_KEY)


# --- create ------------------------------------------------------------------------------------


def backup_name(now: datetime) -> str:
    return f"lessonbot-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}{SUFFIX}"


def create_backup(settings: Settings, engine: sa.Engine, *, now: datetime | None = None,
                  progress: Progress = lambda n: None) -> Backup:
    """Dump, encrypt, keep locally, upload and verify; then apply retention. One at a time."""
    if not settings.backup_age_recipients:
        raise BackupError("LESSONBOT_BACKUP_AGE_RECIPIENTS is not set: name the age public key(s) that may decrypt backups")
    env = libpq_environment(settings.database_url)
    folder = BackupFolder(settings.backup_dir)
    folder.path.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = now or datetime.now(UTC)
    with _only_backup(engine):
        backup = _dump(settings, folder, env, backup_name(now), now)
        if settings.backup_drive_folder_id:
            upload_backup(settings, folder, backup, progress)
            apply_retention(settings, folder, now)
    return backup


def _dump(settings: Settings, folder: BackupFolder, env: dict[str, str], name: str, now: datetime) -> Backup:
    target = folder.path / name
    partial = target.with_name(target.name + ".partial")
    recipients = [arg for key in settings.backup_age_recipients for arg in ("-r", key)]
    dump = [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-acl"]
    encrypt = [_tool("age"), *recipients, "-o", str(partial)]
    try:
        _pipeline(dump, encrypt, env, "pg_dump | age")
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.chmod(0o600)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    size, md5 = digest(target)
    backup = Backup(name=name, created=now.astimezone(UTC).isoformat(), size=size, md5=md5)
    backups = folder.load()
    backups[name] = backup
    folder.save(backups)
    log.info("backup %s written (%d bytes, encrypted to %d key(s))", name, size, len(settings.backup_age_recipients))
    return backup


def upload_backup(settings: Settings, folder: BackupFolder, backup: Backup, progress: Progress = lambda n: None) -> None:
    """Resumable upload; Drive must confirm size and md5 before the backup counts as verified."""
    assert settings.backup_drive_folder_id
    uploader = DriveUploader(settings, folder, settings.backup_drive_folder_id, mime_type=MIME_TYPE, keep_local=True)
    backup.drive_id = uploader.ship(folder.path / backup.name, progress)
    backup.verified = True
    backups = folder.load()
    backups[backup.name] = backup
    folder.save(backups)
    log.info("backup %s uploaded to Drive as %s and verified", backup.name, backup.drive_id)


# --- list and retention ------------------------------------------------------------------------


def list_backups(settings: Settings) -> list[Backup]:
    """What the manifest knows, with whether each file is still on disk; newest first."""
    folder = BackupFolder(settings.backup_dir)
    backups = folder.load()
    for backup in backups.values():
        backup.local = (folder.path / backup.name).exists()
    return sorted(backups.values(), key=lambda b: b.created, reverse=True)


def drive_backups(settings: Settings) -> list[dict[str, Any]]:
    """The backups in the Drive folder (name, id, size, md5, createdTime)."""
    from app.google.client import call, service

    if not settings.backup_drive_folder_id:
        return []
    query = f"'{settings.backup_drive_folder_id}' in parents and trashed = false and name contains '{SUFFIX}'"
    request = service(settings, "drive").files().list(q=query, fields="files(id,name,size,md5Checksum,createdTime)",
                                                       supportsAllDrives=True, includeItemsFromAllDrives=True, pageSize=1000)
    return [f for f in call(request, "listing the backups on Drive").get("files", []) if f["name"].endswith(SUFFIX)]


def apply_retention(settings: Settings, folder: BackupFolder, now: datetime) -> list[str]:
    """Delete the backups retention does not keep, locally and on Drive; their names."""
    from app.google.client import call, service

    backups = folder.load()
    keep = to_keep({name: b.created_at for name, b in backups.items() if b.verified}, now,
                   daily=settings.backup_keep_daily, weekly=settings.backup_keep_weekly, monthly=settings.backup_keep_monthly)
    removed = []
    for name, backup in sorted(backups.items()):
        if not backup.verified or name in keep:
            continue  # an unverified backup is never the reason another one goes
        if backup.drive_id:
            call(service(settings, "drive").files().delete(fileId=backup.drive_id, supportsAllDrives=True),
                 f"deleting the old backup {name} on Drive")
        (folder.path / name).unlink(missing_ok=True)
        del backups[name]
        folder.save(backups)
        removed.append(name)
    if removed:
        log.info("retention removed %d backup(s): %s", len(removed), ", ".join(removed))
    return removed


# --- restore -----------------------------------------------------------------------------------


def fetch_from_drive(settings: Settings, file_id: str, destination: Path) -> Path:
    """Download a backup by Drive id, checking the md5 Drive reports."""
    from googleapiclient.http import MediaIoBaseDownload

    from app.google.client import GoogleError, call, service

    drive = service(settings, "drive")
    meta = call(drive.files().get(fileId=file_id, fields="id,name,size,md5Checksum", supportsAllDrives=True),
                f"looking up the backup {file_id} on Drive")
    target = destination / str(meta["name"])
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("wb") as handle:
            downloader = MediaIoBaseDownload(handle, drive.files().get_media(fileId=file_id, supportsAllDrives=True))
            done = False
            while not done:
                _, done = downloader.next_chunk(num_retries=3)
    except Exception as error:  # googleapiclient raises HttpError and transport errors alike
        partial.unlink(missing_ok=True)
        raise GoogleError(f"downloading the backup {file_id} from Drive failed: {error}") from error
    if digest(partial)[1] != meta.get("md5Checksum"):
        partial.unlink(missing_ok=True)
        raise BackupError(f"the download of {meta['name']} does not match Drive's md5; try again")
    os.replace(partial, target)
    return target


def restore_backup(settings: Settings, path: Path, identity: Path, target_url: str) -> RestoreReport:
    """Decrypt and restore into an empty database; check the migration and count the rows."""
    if not path.is_file():
        raise BackupError(f"{path} is not a backup file here; give a file name or a Drive file id")
    if not identity.is_file():
        raise BackupError(f"the age identity {identity} does not exist (the private key ops keep, from age-keygen)")
    env = libpq_environment(target_url)
    engine = sa.create_engine(sqlalchemy_url(target_url))
    try:
        with engine.connect() as connection:
            tables = _tables(connection)
            if tables:
                raise BackupError(f"the database {env.get('PGDATABASE')} is not empty ({len(tables)} tables); "
                                  "restore into a new, empty one (createdb) and point DATABASE_URL at it")
        decrypt = [_tool("age"), "--decrypt", "-i", str(identity), str(path)]
        restore = [_tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "--single-transaction",
                   "-d", env.get("PGDATABASE", "")]
        _pipeline(decrypt, restore, env, "age --decrypt | pg_restore")
        with engine.connect() as connection:
            revision = str(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar())
            rows = _row_counts(connection)
    finally:
        engine.dispose()
    expected = expected_revision()
    if revision != expected:
        raise BackupError(f"restored, but the schema is at migration {revision} and this release expects {expected}: "
                          "run ./manage.py db upgrade against it (or restore with the release that took the backup)")
    return RestoreReport(database=env.get("PGDATABASE", ""), revision=revision, rows=rows)


def _tables(connection: sa.Connection) -> list[str]:
    return sorted(sa.inspect(connection).get_table_names())


def _row_counts(connection: sa.Connection) -> dict[str, int]:
    return {t: int(connection.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar() or 0) for t in _tables(connection)}


def row_counts(database_url: str) -> dict[str, int]:
    """Rows per table of a database (what a restore is compared by)."""
    engine = sa.create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            return _row_counts(connection)
    finally:
        engine.dispose()
