"""models and late outcomes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('models',
    sa.Column('loop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('lineage', sa.Integer(), nullable=False),
    sa.Column('config_version', sa.Integer(), nullable=False),
    sa.Column('blob', sa.LargeBinary(), nullable=False),
    sa.Column('events_learned', sa.BigInteger(), nullable=False),
    sa.Column('total_learned', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('apprentice_agreement', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['loop_id'], ['loops.id'], name=op.f('fk_models_loop_id_loops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('loop_id', 'version', name=op.f('pk_models'))
    )
    with op.batch_alter_table('outcomes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('late', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('outcomes', schema=None) as batch_op:
        batch_op.drop_column('late')

    op.drop_table('models')
