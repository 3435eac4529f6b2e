"""training_rounds.method and train_config: rounds train by DPO, GRPO or RFT

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 13:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_rounds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=16), server_default='dpo',
                                      nullable=False))
        batch_op.alter_column('dpo_config', new_column_name='train_config')
        batch_op.create_check_constraint(op.f('ck_training_rounds_method'), "method IN ('dpo', 'grpo', 'rft')")


def downgrade() -> None:
    with op.batch_alter_table('training_rounds', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_training_rounds_method'), type_='check')
        batch_op.alter_column('train_config', new_column_name='dpo_config')
        batch_op.drop_column('method')
