"""The Alembic migrations build exactly the schema the models describe, on SQLite and Postgres."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from store.db import upgrade
from store.models import Base


def test_migrated_database_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_upgrading_an_up_to_date_database_again_changes_nothing(engine: Engine, database_url: str) -> None:
    upgrade(database_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
