"""Admins in chat: an admin's Zulip user id (admin commands to the bot), and admin jobs in the outbox

Revision ID: 0009_chat_admins
Revises: 0008_admin_pages
Create Date: 2026-12-06 10:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_chat_admins'
down_revision = '0008_admin_pages'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.add_column(sa.Column('zulip_user_id', sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_admins_zulip_user_id'), ['zulip_user_id'])


def downgrade():
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_admins_zulip_user_id'), type_='unique')
        batch_op.drop_column('zulip_user_id')
