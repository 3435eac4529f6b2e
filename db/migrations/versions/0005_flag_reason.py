"""judgments.flag_reason: every flagged vote says why (votes flagged before: "unrecorded")

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 11:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flag_reason', sa.String(length=32), nullable=True))
    op.execute("UPDATE judgments SET flag_reason = 'unrecorded' WHERE flagged")
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f('ck_judgments_flag_reason'),
            "flag_reason IS NULL OR flag_reason IN ('trap_failed', 'gold_accuracy', 'admin', "
            "'unrecorded')")
        batch_op.create_check_constraint(
            op.f('ck_judgments_flag_has_reason'),
            "(flagged AND flag_reason IS NOT NULL) OR (NOT flagged AND flag_reason IS NULL)")


def downgrade() -> None:
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_judgments_flag_has_reason'), type_='check')
        batch_op.drop_constraint(op.f('ck_judgments_flag_reason'), type_='check')
        batch_op.drop_column('flag_reason')
