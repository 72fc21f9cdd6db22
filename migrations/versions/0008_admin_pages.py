"""Admin pages: the actions admins took, what happened on steps short of passing, rosters by Classroom user id

Revision ID: 0008_admin_pages
Revises: 0007_history_indexes
Create Date: 2026-12-06 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_admin_pages'
down_revision = '0007_history_indexes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('admin_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('admin_email', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=True),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_admin_actions_student_id_students'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_actions'))
    )
    with op.batch_alter_table('admin_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_actions_student_id'), ['student_id'], unique=False)

    op.create_table('step_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.Enum('hint', 'not_yet', 'wrong_answer', name='stepeventkind', native_enum=False,
                              length=16), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['lesson_runs.id'], name=op.f('fk_step_events_run_id_lesson_runs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_step_events'))
    )
    with op.batch_alter_table('step_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_step_events_run_id'), ['run_id'], unique=False)

    with op.batch_alter_table('course_students', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_course_students_classroom_user_id'), ['classroom_user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('course_students', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_course_students_classroom_user_id'))

    with op.batch_alter_table('step_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_step_events_run_id'))
    op.drop_table('step_events')
    with op.batch_alter_table('admin_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_actions_student_id'))
    op.drop_table('admin_actions')
