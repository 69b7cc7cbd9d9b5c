"""loop_config_versions.source: what made a config version (e.g. an applied tuning)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('loop_config_versions', sa.Column('source', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('loop_config_versions', 'source')
