"""corpora.bm25_weight: BM25's share in hybrid search, calibrated by post-training

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by create_all before migrations existed may have the column already.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("corpora")}
    if "bm25_weight" not in columns:
        op.add_column("corpora", sa.Column("bm25_weight", sa.Float(), nullable=False,
                                           server_default="0.1"))


def downgrade() -> None:
    with op.batch_alter_table("corpora") as batch_op:
        batch_op.drop_column("bm25_weight")
