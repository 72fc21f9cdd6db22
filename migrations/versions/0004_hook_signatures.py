"""Git hook signatures already accepted (replays are refused)

Revision ID: 0004_hook_signatures
Revises: 0003
Create Date: 2026-12-02 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_hook_signatures'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('hook_signatures',
    sa.Column('signature', sa.String(length=71), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('signature', name=op.f('pk_hook_signatures'))
    )
    with op.batch_alter_table('hook_signatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hook_signatures_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('hook_signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hook_signatures_expires_at'))

    op.drop_table('hook_signatures')
