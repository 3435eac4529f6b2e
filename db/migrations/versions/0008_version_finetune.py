"""model_versions.finetune: an aligned version is a LoRA adapter or a fully fine-tuned model

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 11:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('finetune', sa.String(length=8), nullable=True))
        batch_op.create_check_constraint(op.f('ck_model_versions_finetune'),
                                         "finetune IN ('lora', 'full')")
    op.execute("UPDATE model_versions SET finetune = 'lora' WHERE kind = 'aligned'")


def downgrade() -> None:
    n = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM model_versions WHERE finetune = 'full'")).scalar()
    if n:
        raise RuntimeError(f"{n} fully fine-tuned version(s), which revision 0007 cannot tell "
                           "from LoRA ones; delete them first to downgrade")
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_model_versions_finetune'), type_='check')
        batch_op.drop_column('finetune')
