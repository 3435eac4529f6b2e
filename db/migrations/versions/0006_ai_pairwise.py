"""judgments: an AI judgment may be a pairwise verdict (a choice instead of a value)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:00:00
"""

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_judgments_ai_value_or_error'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_judgments_ai_value_or_error'),
            "kind != 'ai' OR value IS NOT NULL OR choice IS NOT NULL OR error IS NOT NULL")


def downgrade() -> None:
    op.execute("DELETE FROM judgments WHERE kind = 'ai' AND value IS NULL AND error IS NULL")
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_judgments_ai_value_or_error'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_judgments_ai_value_or_error'),
            "kind != 'ai' OR value IS NOT NULL OR error IS NOT NULL")
