"""audit entries are sealed into the hash chain after commit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_pos', _BIGINT, nullable=True))
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=True)
        batch_op.create_unique_constraint(batch_op.f('uq_audit_event_chain_pos'), ['chain_pos'])
    # Entries chained before this revision were chained in seq order.
    op.execute("UPDATE audit_event SET chain_pos = seq")
    op.create_index('ix_audit_event_unsealed', 'audit_event', ['seq'], unique=False,
                    postgresql_where=sa.text('chain_pos IS NULL'), sqlite_where=sa.text('chain_pos IS NULL'))


def downgrade() -> None:
    # Seal everything first (`telemed audit verify` does): unsealed entries cannot go back to NOT NULL hashes.
    op.drop_index('ix_audit_event_unsealed', table_name='audit_event')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_event_chain_pos'), type_='unique')
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column('chain_pos')
