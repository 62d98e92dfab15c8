"""Prepared statements give what ``Connection.execute`` gives, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.services import postgres_url
from trellis.store.prepared import Prepared

_P = sa.bindparam


@pytest.fixture(params=["sqlite", "postgresql"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """A table with the column types the hot paths use, in a fresh SQLite file or in the
    run's PostgreSQL database (a table of its own)."""
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    else:
        engine = sa.create_engine(postgres_url().replace("postgresql://", "postgresql+psycopg://"))
    meta = sa.MetaData()
    things = sa.Table(
        f"things_{uuid.uuid4().hex[:8]}",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("at_ms", sa.BigInteger, nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    meta.create_all(engine)
    yield engine, things
    meta.drop_all(engine)
    engine.dispose()


def test_update_returning_and_insert_match_connection_execute(
    table: tuple[sa.Engine, sa.Table],
) -> None:
    engine, things = table
    insert = Prepared(
        things.insert()
        .inline()
        .values(name=_P("name"), detail=_P("detail", type_=things.c.detail.type))
    )
    finish = Prepared(
        things.update()
        .where(things.c.name == _P("p_name"), things.c.done.is_(False))
        .values(done=True, at_ms=_P("p_at"), value=_P("p_value"))
        .returning(*things.c)
    )
    with engine.begin() as c:
        assert insert.run(c, {"name": "a", "detail": {"k": [1, "ü"]}}) == []
        assert insert.run(c, {"name": "b", "detail": {}}) == []
    with engine.begin() as c:
        (row,) = finish.run(c, {"p_name": "a", "p_at": 2**40, "p_value": 1.5})
        assert finish.run(c, {"p_name": "a", "p_at": 1, "p_value": 0.0}) == []  # done already
    expected = dict(zip(finish.columns, row, strict=True))
    with engine.connect() as c:
        stored = c.execute(sa.select(things).where(things.c.name == "a")).mappings().one()
    assert expected == dict(stored)
    assert expected["done"] is True
    assert expected["detail"] == {"k": [1, "ü"]}
    assert finish.columns == tuple(column.key for column in things.c)


def test_a_rollback_takes_prepared_writes_with_it(table: tuple[sa.Engine, sa.Table]) -> None:
    """Prepared statements run in the connection's transaction, not beside it."""
    engine, things = table
    insert = Prepared(things.insert().inline().values(name=_P("name"), detail=_P("detail")))

    def failing_change() -> None:
        with engine.begin() as c:
            insert.run(c, {"name": "gone", "detail": {}})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(things)).scalar_one() == 0


def test_expanding_in_and_hidden_returning_are_refused(table: tuple[sa.Engine, sa.Table]) -> None:
    engine, things = table
    expanding = Prepared(sa.select(things.c.id).where(things.c.name.in_(["a", "b"])))
    with engine.connect() as c, pytest.raises(ValueError, match="expanding IN"):
        expanding.run(c, {})


@settings(max_examples=40, deadline=None)
@given(
    name=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=64),
    value=st.floats(allow_nan=False, allow_infinity=False, width=32) | st.none(),
    at=st.integers(min_value=-(2**62), max_value=2**62) | st.none(),
)
def test_any_values_round_trip_as_execute_stores_them(
    tmp_path_factory: pytest.TempPathFactory, name: str, value: float | None, at: int | None
) -> None:
    """Whatever a row holds, a prepared RETURNING answers what ``execute`` would read."""
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('h') / 'p.db'}")
    meta = sa.MetaData()
    rows = sa.Table(
        "rows",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64)),
        sa.Column("value", sa.Float),
        sa.Column("at_ms", sa.BigInteger),
        sa.Column("flag", sa.Boolean),
    )
    meta.create_all(engine)
    insert = Prepared(
        rows.insert()
        .values(name=_P("n"), value=_P("v"), at_ms=_P("a"), flag=_P("f", type_=sa.Boolean))
        .returning(*rows.c)
    )
    with engine.begin() as c:
        (returned,) = insert.run(c, {"n": name, "v": value, "a": at, "f": value is None})
        read = c.execute(sa.select(rows)).one()
    assert returned == tuple(read)
    engine.dispose()
