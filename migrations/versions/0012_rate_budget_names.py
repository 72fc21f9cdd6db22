"""Rate budget names long enough for any bot email: "zulip:" + up to 254 characters + ":events"

Revision ID: 0012_rate_budget_names
Revises: 0011_outbox_queues
Create Date: 2026-12-07 00:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_rate_budget_names'
down_revision = '0011_outbox_queues'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rate_budgets') as batch_op:
        batch_op.alter_column('name', existing_type=sa.String(length=100), type_=sa.String(length=300),
                              existing_nullable=False)


def downgrade():
    # A name longer than 100 characters cannot be kept: such budgets are started again from full.
    op.execute("DELETE FROM rate_budgets WHERE length(name) > 100")
    with op.batch_alter_table('rate_budgets') as batch_op:
        batch_op.alter_column('name', existing_type=sa.String(length=300), type_=sa.String(length=100),
                              existing_nullable=False)
