"""training_rounds.method may be 'online-dpo'

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_rounds', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_training_rounds_method'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_training_rounds_method'), "method IN ('dpo', 'online-dpo', 'grpo', 'rft')")


def downgrade() -> None:
    n = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM training_rounds WHERE method = 'online-dpo'")).scalar()
    if n:
        raise RuntimeError(f"{n} training round(s) trained by online-dpo, which revision 0006 "
                           "cannot hold; delete them first to downgrade")
    with op.batch_alter_table('training_rounds', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_training_rounds_method'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_training_rounds_method'), "method IN ('dpo', 'grpo', 'rft')")
