"""corpora.index_dir: the index directory a re-index switches to

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Databases of the pre-migration code may already have the column (added ad hoc).
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("corpora")}
    if "index_dir" not in columns:
        op.add_column("corpora", sa.Column("index_dir", sa.String(length=64), nullable=False,
                                           server_default="index"))


def downgrade() -> None:
    with op.batch_alter_table("corpora") as batch_op:
        batch_op.drop_column("index_dir")
