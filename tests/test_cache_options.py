"""The aggregate cache's documented options, as the 9.x library has them.

``deepcopy_from_cache`` (an argument of ``repository.get``, the repository's
attribute, or ``DEEPCOPY_FROM_AGGREGATE_CACHE``): False gives callers the cached
aggregate itself, without a copy, for queries that only read it. A projector given
to ``get`` is used with the cache too: the cached aggregate is brought up to date
by giving the projector the newer events only. And a fast-forwarded cache is made
from recorded events only: saving an aggregate puts nothing in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from note_model import Note

from eventsourcing.application import Application, project_aggregate
from eventsourcing.system import ProcessApplication


def cached_app(persistence_env: dict[str, str], **settings: str) -> Application[Any]:
    return Application(env=dict(persistence_env, AGGREGATE_CACHE_MAXSIZE="10", **settings))


def test_without_deepcopy_a_get_gives_the_cached_aggregate_itself(
    persistence_env: dict[str, str],
) -> None:
    app = cached_app(persistence_env)
    note = Note("draft")
    app.save(note)
    repository = app.repository
    assert repository.cache is not None

    copy = repository.get(note.id)  # (by default, a copy of its own)
    itself = repository.get(note.id, deepcopy_from_cache=False)
    assert itself is repository.cache.get(note.id)
    assert itself is repository.get(note.id, deepcopy_from_cache=False)
    assert copy is not itself and repository.get(note.id) is not itself

    # A change to it is a change to the cache (the caller's risk, as documented).
    itself.text = "scribbled"
    assert repository.get(note.id).text == "scribbled"
    assert copy.text == "draft"


def test_the_attribute_and_the_setting_turn_copying_off_for_every_get(
    persistence_env: dict[str, str],
) -> None:
    app = cached_app(persistence_env)
    note = Note("draft")
    app.save(note)
    assert app.repository.deepcopy_from_cache is True
    assert app.repository.get(note.id) is not app.repository.get(note.id)
    app.repository.deepcopy_from_cache = False
    assert app.repository.get(note.id) is app.repository.get(note.id)

    other = cached_app(persistence_env, DEEPCOPY_FROM_AGGREGATE_CACHE="n")
    other.save(Note("other"))  # (in memory, its own store)
    assert other.repository.deepcopy_from_cache is False
    some_id = other.notification_log.select(1, 1)[0].originator_id
    assert other.repository.get(some_id) is other.repository.get(some_id)


def test_the_cached_aggregate_given_out_is_brought_up_to_date(
    persistence_env: dict[str, str],
) -> None:
    app = cached_app(persistence_env)
    note = Note("draft")
    app.save(note)
    app.repository.get(note.id, deepcopy_from_cache=False)
    editing = app.repository.get(note.id)
    editing.edit("final")
    app.save(editing)
    after = app.repository.get(note.id, deepcopy_from_cache=False)
    assert (after.version, after.text) == (2, "final")
    assert app.repository.cache is not None and after is app.repository.cache.get(note.id)


def test_copies_stay_apart_after_the_cached_aggregate_was_given_out_and_changed(
    persistence_env: dict[str, str],
) -> None:
    app = cached_app(persistence_env)
    note = Note("draft")
    app.save(note)
    app.repository.get(note.id)  # (cached, and copied once)
    shared = app.repository.get(note.id, deepcopy_from_cache=False)
    shared.tags = []  # a value the cache had not seen when it was first copied
    mine = app.repository.get(note.id)
    mine.tags.append("mine")
    assert app.repository.get(note.id).tags == []
    assert shared.tags == []


def test_a_projector_is_used_with_the_cache(persistence_env: dict[str, str]) -> None:
    app = cached_app(persistence_env)
    note = Note("draft")
    app.save(note)
    calls: list[tuple[bool, list[int]]] = []

    def projector(aggregate: Any, events: Iterable[Any]) -> Any:
        events = list(events)
        calls.append((aggregate is None, [e.originator_version for e in events]))
        return project_aggregate(aggregate, events)

    assert app.repository.get(note.id, projector_func=projector).text == "draft"
    assert calls == [(True, [1])]  # replayed, then cached
    assert app.repository.get(note.id, projector_func=projector).text == "draft"
    assert calls == [(True, [1])]  # from the cache: nothing newer to project
    note.edit("final")
    note.edit("done")
    app.save(note)
    got = app.repository.get(note.id, projector_func=projector)
    assert (got.version, got.text) == (3, "done")
    assert calls == [(True, [1]), (False, [2, 3])]  # the cached one, brought up to date
    assert app.repository.get(note.id, version=2, projector_func=projector).text == "final"
    assert calls[-1] == (True, [1, 2])  # (a version asked for: replayed, as ever)


def test_without_fast_forwarding_or_copying_a_saved_aggregate_is_cached_itself(
    persistence_env: dict[str, str],
) -> None:
    app = cached_app(
        persistence_env, AGGREGATE_CACHE_FASTFORWARD="n", DEEPCOPY_FROM_AGGREGATE_CACHE="n"
    )
    note = Note("draft")
    app.save(note)
    assert app.repository.get(note.id) is note


def test_a_followers_repository_takes_the_options_too() -> None:
    app = ProcessApplication(
        env={
            "AGGREGATE_CACHE_MAXSIZE": "10",
            "AGGREGATE_CACHE_FASTFORWARD_SKIPPING": "y",
            "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
        }
    )
    note = Note("draft")
    app.save(note)
    repository = app.repository
    assert (repository.fastforward_skipping, repository.deepcopy_from_cache) == (True, False)
    assert repository.get(note.id) is repository.get(note.id)
    repository.deepcopy_from_cache = True
    assert repository.get(note.id, deepcopy_from_cache=False) is repository.get(
        note.id, deepcopy_from_cache=False
    )
    assert repository.get(note.id) is not repository.get(note.id)
