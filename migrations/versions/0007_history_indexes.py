"""Claims cost what the due work costs: partial indexes on active runs and unsent outbox items

Revision ID: 0007_history_indexes
Revises: 0006_zulip_dead_letters
Create Date: 2026-12-06 09:30:00.000000

The old indexes led with the status, so every finished run and every delivered reply sat in
them, and the poller's claims (ordered by id) walked all of history to find an active run.
Each partial index holds only the rows its query looks for, in the order the query takes them.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_history_indexes'
down_revision = '0006_zulip_dead_letters'
branch_labels = None
depends_on = None

ACTIVE = "status = 'active'"
PARTIAL = {
    "ix_lesson_runs_active_due": ("lesson_runs", ["next_check_at"], f"{ACTIVE} AND next_check_at IS NOT NULL"),
    "ix_lesson_runs_active_idle": ("lesson_runs", ["last_activity_at"], ACTIVE),
    "ix_lesson_runs_unreminded": ("lesson_runs", ["last_activity_at"], f"{ACTIVE} AND reminded_at IS NULL"),
    "ix_outbox_pending": ("outbox", ["kind", "next_attempt_at", "id"], "status = 'pending'"),
    "ix_outbox_failed": ("outbox", ["kind", "id"], "status = 'failed'"),
}


def upgrade():
    op.drop_index("ix_lesson_runs_due", table_name="lesson_runs")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    for name, (table, columns, where) in PARTIAL.items():
        op.create_index(name, table, columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def downgrade():
    for name, (table, _, _) in PARTIAL.items():
        op.drop_index(name, table_name=table)
    op.create_index("ix_outbox_pending", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_lesson_runs_due", "lesson_runs", ["status", "next_check_at"])
