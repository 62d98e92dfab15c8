"""Group commit: changes of many callers share a transaction, yet each keeps its own fate."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from trellis.core.errors import ClosedError
from trellis.store.group_commit import GroupCommitter

ROWS = sa.table("rows", sa.column("k", sa.Integer), sa.column("v", sa.Text))


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE rows (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return engine


def _insert(k: int, v: str = "x") -> sa.Executable:
    return ROWS.insert().values(k=k, v=v)


def _stored(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as c:
        return {int(k): str(v) for k, v in c.execute(sa.select(ROWS.c.k, ROWS.c.v))}


def test_concurrent_changes_commit_together_and_each_gets_its_answer(engine: sa.Engine) -> None:
    committer = GroupCommitter(engine)

    def change(k: int) -> Callable[[sa.Connection], int]:
        def run(c: sa.Connection) -> int:
            c.execute(_insert(k))
            return k * 10

        return run

    async def many() -> list[int]:
        return list(await asyncio.gather(*(committer.run(change(k)) for k in range(200))))

    answers = asyncio.run(many())
    committer.close()
    assert answers == [k * 10 for k in range(200)]
    assert sorted(_stored(engine)) == list(range(200))
    assert committer.changes == 200
    # Submitted in one turn of the loop: far fewer transactions than changes.
    assert committer.commits <= 200 // 64 + 1


def test_a_failing_change_fails_alone_and_takes_nothing_with_it(engine: sa.Engine) -> None:
    committer = GroupCommitter(engine)
    with engine.begin() as c:
        c.execute(_insert(7, "first"))

    def insert(k: int) -> Callable[[sa.Connection], int]:
        def run(c: sa.Connection) -> int:
            c.execute(_insert(k, "new"))  # k = 7 violates the primary key
            return k

        return run

    async def many() -> list[object]:
        jobs = [committer.run(insert(k)) for k in (1, 2, 7, 3)]
        return list(await asyncio.gather(*jobs, return_exceptions=True))

    answers = asyncio.run(many())
    committer.close()
    assert [answers[0], answers[1], answers[3]] == [1, 2, 3]
    assert isinstance(answers[2], sa.exc.IntegrityError)
    assert _stored(engine) == {1: "new", 2: "new", 3: "new", 7: "first"}


def test_blocking_callers_from_threads_are_answered(engine: sa.Engine) -> None:
    committer = GroupCommitter(engine)
    answers: list[int] = []

    def worker(base: int) -> None:
        for k in range(base, base + 50):
            answers.append(committer.call(lambda c, k=k: (c.execute(_insert(k)), k)[1]))

    threads = [threading.Thread(target=worker, args=(b,)) for b in (0, 100, 200, 300)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    committer.close()
    expected = [k for base in (0, 100, 200, 300) for k in range(base, base + 50)]
    assert sorted(answers) == sorted(_stored(engine)) == expected


def test_closed_committer_refuses_new_changes_after_finishing_queued_ones(
    engine: sa.Engine,
) -> None:
    committer = GroupCommitter(engine)
    assert committer.call(lambda c: c.execute(_insert(1)).rowcount) == 1
    committer.close()
    with pytest.raises(ClosedError):
        committer.call(lambda c: c.execute(_insert(2)).rowcount)

    async def late() -> None:
        await committer.run(lambda c: c.execute(_insert(3)).rowcount)

    with pytest.raises(ClosedError):
        asyncio.run(late())
    assert _stored(engine) == {1: "x"}


def test_a_caller_that_went_away_does_not_undo_its_change(engine: sa.Engine) -> None:
    """A request cancelled while its change waits (the client hung up): the change still
    commits, and the writer goes on with the next ones."""
    committer = GroupCommitter(engine)
    gate = threading.Event()

    def slow(c: sa.Connection) -> int:
        gate.wait(5)
        c.execute(_insert(1))
        return 1

    async def scenario() -> int:
        task = asyncio.ensure_future(committer.run(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        return await committer.run(lambda c: c.execute(_insert(2)).rowcount)

    assert asyncio.run(scenario()) == 1
    committer.close()
    assert _stored(engine) == {1: "x", 2: "x"}
