"""The async repository's cache options, as the sync repository has them (see
test_cache_options.py): ``deepcopy_from_cache`` (an argument of ``get``, the
repository's attribute, or ``DEEPCOPY_FROM_AGGREGATE_CACHE``) False gives the cached
aggregate itself; a projector given to ``get`` is used with the cache (given the
newer events only); ``fastforward_skipping`` is taken; and a cached aggregate whose
last event is no longer recorded is not shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from note_model import Note
from test_cache_rolled_back import _forget_recorded

from eventsourcing.application import AggregateNotFoundError, project_aggregate
from eventsourcing.asyncio import AsyncApplication


@pytest.fixture
def persistence_env(persistence_env: dict[str, str]) -> dict[str, str]:
    """Smaller pools than the default (the test server's connections are shared)."""
    return {"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "4", **persistence_env}


def cached_app(persistence_env: dict[str, str], **settings: str) -> AsyncApplication[Any]:
    return AsyncApplication(env=dict(persistence_env, AGGREGATE_CACHE_MAXSIZE="10", **settings))


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_without_deepcopy_a_get_gives_the_cached_aggregate_itself(
    persistence_env: dict[str, str],
) -> None:
    async def main() -> None:
        async with cached_app(persistence_env) as app:
            note = Note("draft")
            await app.save(note)
            repository = app.repository
            assert repository.cache is not None

            copy = await repository.get(note.id)  # (by default, a copy of its own)
            itself = await repository.get(note.id, deepcopy_from_cache=False)
            assert itself is repository.cache.get(note.id)
            assert itself is await repository.get(note.id, deepcopy_from_cache=False)
            assert copy is not itself and await repository.get(note.id) is not itself

            # A change to it is a change to the cache (the caller's risk, as documented).
            itself.text = "scribbled"
            assert (await repository.get(note.id)).text == "scribbled"
            assert copy.text == "draft"

            # Brought up to date, it is still given out itself.
            editing = await repository.get(note.id)
            editing.edit("final")
            await app.save(editing)
            after = await repository.get(note.id, deepcopy_from_cache=False)
            assert (after.version, after.text) == (2, "final")
            assert after is repository.cache.get(note.id)

    run(main())


def test_the_attribute_and_the_setting_turn_copying_off_for_every_get(
    persistence_env: dict[str, str],
) -> None:
    async def main() -> None:
        async with cached_app(persistence_env) as app:
            note = Note("draft")
            await app.save(note)
            repository = app.repository
            assert repository.deepcopy_from_cache is True
            assert repository.fastforward_skipping is False
            assert await repository.get(note.id) is not await repository.get(note.id)
            repository.deepcopy_from_cache = False
            assert await repository.get(note.id) is await repository.get(note.id)
            # (fastforward_skipping is taken, and changes nothing, as in the sync API)
            got = await repository.get(note.id, fastforward_skipping=True)
            assert got is await repository.get(note.id)

        settings = {
            "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
            "AGGREGATE_CACHE_FASTFORWARD_SKIPPING": "y",
        }
        async with cached_app(persistence_env, **settings) as other:
            repository = other.repository
            assert (repository.fastforward_skipping, repository.deepcopy_from_cache) == (
                True,
                False,
            )
            note = Note("other")
            await other.save(note)
            assert await repository.get(note.id) is await repository.get(note.id)

    run(main())


def test_a_projector_is_used_with_the_cache(persistence_env: dict[str, str]) -> None:
    calls: list[tuple[bool, list[int]]] = []

    def projector(aggregate: Any, events: Iterable[Any]) -> Any:
        events = list(events)
        calls.append((aggregate is None, [e.originator_version for e in events]))
        return project_aggregate(aggregate, events)

    async def main() -> None:
        async with cached_app(persistence_env) as app:
            note = Note("draft")
            await app.save(note)
            repository = app.repository
            assert (await repository.get(note.id, projector_func=projector)).text == "draft"
            assert calls == [(True, [1])]  # replayed, then cached
            assert (await repository.get(note.id, projector_func=projector)).text == "draft"
            assert calls == [(True, [1])]  # from the cache: nothing newer to project
            note.edit("final")
            note.edit("done")
            await app.save(note)
            got = await repository.get(note.id, projector_func=projector)
            assert (got.version, got.text) == (3, "done")
            assert calls == [(True, [1]), (False, [2, 3])]  # the cached one, brought up to date
            old = await repository.get(note.id, version=2, projector_func=projector)
            assert old.text == "final"
            assert calls[-1] == (True, [1, 2])  # (a version asked for: replayed, as ever)

    run(main())


def test_without_fast_forwarding_or_copying_a_saved_aggregate_is_cached_itself(
    persistence_env: dict[str, str],
) -> None:
    async def main() -> None:
        settings = {"AGGREGATE_CACHE_FASTFORWARD": "n", "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}
        async with cached_app(persistence_env, **settings) as app:
            note = Note("draft")
            await app.save(note)
            assert await app.repository.get(note.id) is note

    run(main())


def test_a_cached_aggregate_whose_last_event_is_gone_is_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}

    async def main() -> None:
        async with cached_app(env) as app:
            note = Note("draft")
            await app.save(note)
            note.edit("final")
            await app.save(note)
            assert (await app.repository.get(note.id)).text == "final"  # (cached now)
            _forget_recorded(path, version_above=1)
            got = await app.repository.get(note.id)
            assert (got.text, got.version) == ("draft", 1)
            _forget_recorded(path, version_above=0)
            with pytest.raises(AggregateNotFoundError):
                await app.repository.get(note.id)

    run(main())
