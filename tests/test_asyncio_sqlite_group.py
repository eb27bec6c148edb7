"""The async API on an SQLite file: writes that tasks make at once are committed as
a group (one transaction, one flush), and a conflict in a group fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from test_sqlite_group_commit import _counting_commits

from eventsourcing.asyncio import AsyncApplication
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import RecordConflictError


class Counter(Aggregate):
    @event("Started")
    def __init__(self) -> None:
        self.count = 0

    @event("Bumped")
    def bump(self) -> None:
        self.count += 1


def test_saves_of_many_tasks_are_committed_in_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = _counting_commits(monkeypatch)
    path = tmp_path / "group.db"
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": "30",
    }

    async def main() -> None:
        async with AsyncApplication[UUID](env) as app:
            taken = Counter()
            await app.save(taken)
            # Two copies of one counter, each moved to version 2: one save must fail.
            first, second = [await app.repository.get(taken.id) for _ in range(2)]
            first.bump()
            second.bump()
            counters = [Counter() for _ in range(40)]
            commits.clear()
            blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            blocker.execute("BEGIN IMMEDIATE")  # every save arrives before any commits

            def let_go() -> None:
                time.sleep(1.0)
                blocker.execute("ROLLBACK")
                blocker.close()

            thread = threading.Thread(target=let_go)
            thread.start()
            outcomes: list[Any] = await asyncio.gather(
                *(app.save(c) for c in [*counters, first, second]), return_exceptions=True
            )
            thread.join()
            assert not any(isinstance(o, BaseException) for o in outcomes[:-2])
            conflicts = [o for o in outcomes[-2:] if isinstance(o, RecordConflictError)]
            assert len(conflicts) == 1, outcomes[-2:]
            assert (await app.repository.get(taken.id)).count == 1
            for counter in counters:
                assert (await app.repository.get(counter.id)).version == 1
            assert len(commits) < 20, f"{len(commits)} commits for 42 saves made at once"

    asyncio.run(main())
