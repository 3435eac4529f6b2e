"""training_rounds.judges and pair source auto: rounds record which AI judges they trusted

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_rounds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('judges', sa.JSON(), server_default=sa.text("'[]'"),
                                      nullable=False))
        batch_op.drop_constraint(op.f('ck_training_rounds_pair_source'), type_='check')
        batch_op.create_check_constraint(op.f('ck_training_rounds_pair_source'),
                                         "pair_source IN ('ai', 'human', 'both', 'auto')")


def downgrade() -> None:
    with op.batch_alter_table('training_rounds', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_training_rounds_pair_source'), type_='check')
        batch_op.create_check_constraint(op.f('ck_training_rounds_pair_source'),
                                         "pair_source IN ('ai', 'human', 'both')")
        batch_op.drop_column('judges')
