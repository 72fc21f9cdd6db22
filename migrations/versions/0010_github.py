"""GitHub: a student's GitHub login, claimed in chat and confirmed by accepting a repository invitation; webhook deliveries already received

Revision ID: 0010_github
Revises: 0009_chat_admins
Create Date: 2026-12-06 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_github'
down_revision = '0009_chat_admins'
branch_labels = None
depends_on = None

CONFIRMED = "github_confirmed_at IS NOT NULL"


def upgrade():
    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.add_column(sa.Column('github_login', sa.String(length=39), nullable=True))
        batch_op.add_column(sa.Column('github_confirmed_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('uq_students_github_login_confirmed', 'students', ['github_login'], unique=True,
                    postgresql_where=sa.text(CONFIRMED), sqlite_where=sa.text(CONFIRMED))
    op.create_table('github_deliveries',
                    sa.Column('delivery_id', sa.String(length=64), nullable=False),
                    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('delivery_id', name=op.f('pk_github_deliveries')))
    op.create_index(op.f('ix_github_deliveries_received_at'), 'github_deliveries', ['received_at'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_github_deliveries_received_at'), table_name='github_deliveries')
    op.drop_table('github_deliveries')
    op.drop_index('uq_students_github_login_confirmed', table_name='students')
    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.drop_column('github_confirmed_at')
        batch_op.drop_column('github_login')
