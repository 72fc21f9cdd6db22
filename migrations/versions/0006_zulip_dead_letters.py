"""Zulip dead letters: messages the core could not take, set aside by the receiver

Revision ID: 0006_zulip_dead_letters
Revises: 0005_hook_signatures
Create Date: 2026-12-02 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_zulip_dead_letters'
down_revision = '0005_hook_signatures'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('dead_letters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=False),
    sa.Column('sender', sa.String(length=254), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters')),
    sa.UniqueConstraint('message_id', name=op.f('uq_dead_letters_message_id'))
    )


def downgrade():
    op.drop_table('dead_letters')
