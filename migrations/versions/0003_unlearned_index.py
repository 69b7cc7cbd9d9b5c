"""index the unlearned decisions only, in timestamp order

The trainer looks for unlearned decisions oldest first. A partial index on (loop_id, ts) where
learned_at is null holds exactly those, in the order wanted, and stays small however long the log
grows; marking a decision learned takes it out instead of adding an entry, as the index on
(loop_id, learned_at) that it replaces did.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_loop_learned_at')
        batch_op.create_index(
            'ix_decisions_unlearned', ['loop_id', 'ts'], unique=False,
            postgresql_where=sa.text('learned_at IS NULL'), sqlite_where=sa.text('learned_at IS NULL'),
        )


def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_unlearned')
        batch_op.create_index('ix_decisions_loop_learned_at', ['loop_id', 'learned_at'], unique=False)
