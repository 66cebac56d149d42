"""The change log replicas follow (a row per face added or removed, where the log starts) and the hosts following it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Every host keeps its own index replica and catches up by reading the changes after the
generation it holds (removals first), instead of comparing every face id with the database.
``store_state.log_start`` is the generation from which the log is complete: a replica older
than it (an index file saved before this migration) catches up by comparing ids once.
The log holds ids only, never names or biometrics. ``replica_hosts`` records the generation
each host's replica has applied, so a removal can say which hosts still hold the person.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``face_changes`` and start the log at the current generation."""
    op.create_table(
        "face_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_changes")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("face_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_face_changes_generation"), ["generation"], unique=False)
    op.create_table(
        "replica_hosts",
        sa.Column("host_id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("left_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_replica_hosts")),
    )
    with op.batch_alter_table("store_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("log_start", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE store_state SET log_start = faces_generation")


def downgrade() -> None:
    """Drop the log (replicas fall back to comparing ids)."""
    with op.batch_alter_table("store_state", schema=None) as batch_op:
        batch_op.drop_column("log_start")
    with op.batch_alter_table("face_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_face_changes_generation"))
    op.drop_table("face_changes")
    op.drop_table("replica_hosts")
