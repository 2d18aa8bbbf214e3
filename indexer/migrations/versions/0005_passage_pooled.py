"""passages.pooled: the encoder's pooled vector as sign bits, for hybrid search

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by create_all before migrations existed may have the column already.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("passages")}
    if "pooled" not in columns:
        op.add_column("passages", sa.Column("pooled", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("passages") as batch_op:
        batch_op.drop_column("pooled")
