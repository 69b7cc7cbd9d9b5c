"""action_pools: a decision's actions stored once per list of actions, named by decisions.actions_pool

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('action_pools',
    sa.Column('loop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['loop_id'], ['loops.id'], name=op.f('fk_action_pools_loop_id_loops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('loop_id', 'digest', name=op.f('pk_action_pools'))
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actions_pool', sa.String(length=32), nullable=True))
        batch_op.alter_column('actions', existing_type=sa.JSON(), nullable=True)


def downgrade() -> None:
    # Decisions that name a pool get its actions back before the pools go.
    op.execute(
        "UPDATE decisions SET actions = (SELECT action_pools.actions FROM action_pools "
        "WHERE action_pools.loop_id = decisions.loop_id "
        "AND action_pools.digest = decisions.actions_pool) WHERE actions IS NULL"
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.alter_column('actions', existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column('actions_pool')
    op.drop_table('action_pools')
