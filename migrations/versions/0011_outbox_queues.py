"""Outbox queues: an index that finds a queue's head (no older pending item of the same student) directly

Revision ID: 0011_outbox_queues
Revises: 0010_github
Create Date: 2026-12-06 13:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_outbox_queues'
down_revision = '0010_github'
branch_labels = None
depends_on = None

PENDING = "status = 'pending'"


def upgrade():
    op.create_index('ix_outbox_pending_queue', 'outbox', ['kind', sa.text('coalesce(student_id, 0)'), 'id'],
                    postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))


def downgrade():
    op.drop_index('ix_outbox_pending_queue', table_name='outbox')
