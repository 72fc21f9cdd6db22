"""Admin sessions end at sign-out (session version); sign-in requests remember the client address

Revision ID: 0004_admin_sessions
Revises: 0003
Create Date: 2026-12-02 15:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_admin_sessions'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('oauth_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_address', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('oauth_requests', schema=None) as batch_op:
        batch_op.drop_column('client_address')
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.drop_column('session_version')
