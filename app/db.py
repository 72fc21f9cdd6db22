"""The database handle, shared column types and time helpers."""

from __future__ import annotations

import enum
import select
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True, compare_type=True)
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "lessonbot.idle_since"


def ping_after_idle(engine: sa.Engine) -> None:
    """Check a pooled connection at checkout, as ``pool_pre_ping`` does, without a round trip when it was just in use.

    A connection that PostgreSQL ended (a restart, a failover, an idle timeout) is replaced
    at checkout instead of failing a request. ``pool_pre_ping`` pays a round trip for that on
    every checkout: on the message path, a fifth of PostgreSQL's work per message. Here a
    connection checked in less than PING_AFTER_IDLE_SECONDS ago is only looked at: a server
    that ended it has said so on its socket (a FATAL message, then end of file), which is
    then readable although no query is under way; only then, or after a longer idle time,
    is it pinged. The ping that fails raises DisconnectionError, on which the pool replaces
    the connection (and the others checked in before it) and checks out again.
    """

    @sa.event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = None  # new: no need to ask

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        check_alive(engine, dbapi_connection, record.info.get(_IDLE_SINCE))


def check_alive(engine: sa.Engine, dbapi_connection: Any, idle_since: float | None) -> None:
    """Raise DisconnectionError if the server ended this connection, idle since ``idle_since`` (time.monotonic();
    None: new, not asked). Pinged only after PING_AFTER_IDLE_SECONDS or when its socket has something to say."""
    if idle_since is None:
        return
    if time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS and not _server_spoke(dbapi_connection):
        return
    try:
        engine.dialect.do_ping(dbapi_connection)
    except engine.dialect.loaded_dbapi.Error as error:
        raise sa.exc.DisconnectionError(f"the connection was gone: {error}") from error


def _server_spoke(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket has something to read: from an idle session, only an ending (or a
    notification, which a pooled connection does not listen for); a socket that cannot be asked counts too."""
    try:
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError, AttributeError):
        return True
    return bool(readable)


def enum_column(cls: type[enum.Enum]) -> sa.Enum:
    """An enum stored as its values in a short VARCHAR (no database enum type to migrate)."""
    return sa.Enum(cls, native_enum=False, length=16, values_callable=lambda members: [m.value for m in members])


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on PostgreSQL and SQLite alike (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def upsert_insert(table: Any, dialect: str | None = None) -> Any:
    """An INSERT that supports ON CONFLICT on both PostgreSQL and SQLite."""
    if (dialect or db.engine.dialect.name) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert(table)


def expected_revision() -> str:
    """The newest migration this release has: what the database must be at."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from app.settings import PROJECT_ROOT

    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
