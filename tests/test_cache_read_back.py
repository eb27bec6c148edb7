"""The aggregate cache is invisible: what it gives is what a replay of the stored
events gives, also where events do not read back exactly as they were saved (a
tuple reads back as a list). Aggregates saved with such events are not kept as
they are in memory: the next get reads them back from the store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from eventsourcing.application import Application, events_read_back_as_saved
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.system import ProcessApplication, SingleThreadedRunner, System


class Box(Aggregate):
    @event("Packed")
    def __init__(self, items: Any) -> None:
        self.items = items

    @event("Repacked")
    def repack(self, items: Any) -> None:
        self.items = items


@pytest.mark.parametrize("maxsize", [None, "0", "10"])
def test_a_cached_aggregate_is_what_a_replay_makes(
    persistence_env: dict[str, str], maxsize: str | None
) -> None:
    env = dict(persistence_env)
    if maxsize is not None:
        env["AGGREGATE_CACHE_MAXSIZE"] = maxsize
    app = Application(env=env)
    uncached = Application(env=dict(persistence_env, AGGREGATE_CACHE_MAXSIZE="off"))
    uncached.events = app.events  # (the same store, in memory too)
    uncached.repository.event_store = app.events
    box = Box((1, 2))
    app.save(box)
    assert app.repository.get(box.id).items == [1, 2]  # not the tuple in memory
    box = app.repository.get(box.id)
    box.repack(("a", {"k": (3,)}))
    app.save(box)
    cached = app.repository.get(box.id)
    replayed = uncached.repository.get(box.id)
    assert cached.items == replayed.items == ["a", {"k": [3]}]
    assert type(cached.items) is type(replayed.items) is list


def test_aggregates_whose_events_read_back_as_saved_are_kept_as_saved() -> None:
    # (Without fast-forwarding: a fast-forwarded cache takes nothing from a save.)
    app = Application(env={"AGGREGATE_CACHE_MAXSIZE": "10", "AGGREGATE_CACHE_FASTFORWARD": "n"})
    box = Box(["a", 1, 2.5, None, True, {"k": [Decimal("1.5"), uuid4()]}])
    app.save(box)
    assert app.repository.cache is not None
    assert app.repository.cache.get(box.id) is not None  # no replay needed next


@pytest.mark.parametrize("maxsize", [None, "0", "10"])
def test_a_change_a_command_made_past_its_events_is_not_shown_from_the_cache(
    persistence_env: dict[str, str], maxsize: str | None
) -> None:
    """A fast-forwarded cache is made from recorded events only (as the 9.x library's
    is): after a save, a get shows what a replay shows, never the saved aggregate as
    a command left it."""
    env = dict(persistence_env)
    if maxsize is not None:
        env["AGGREGATE_CACHE_MAXSIZE"] = maxsize
    app = Application(env=env)
    box = Box(["packed"])
    box.items = [*box.items, "slipped in past the events"]  # (a new list: not the event's)
    app.save(box)
    assert app.repository.get(box.id).items == ["packed"]
    box = app.repository.get(box.id)
    box.repack(["repacked"])
    box.items = [*box.items, "slipped in again"]
    app.save(box)
    assert app.repository.get(box.id).items == ["repacked"]
    # (The 9.x library's cache holds nothing for an aggregate only saved.)
    fresh = Box([])
    app.save(fresh)
    assert app.repository.cache is not None
    with pytest.raises(KeyError):
        app.repository.cache.get(fresh.id)


@pytest.mark.parametrize(
    "value, reads_back",
    [
        ("text", True),
        ([1, [2.5, None]], True),
        ({"a": {"b": [Decimal("2")]}}, True),
        (datetime(2026, 1, 1, tzinfo=timezone.utc), True),
        (datetime(2026, 1, 1), True),
        ((1, 2), False),
        ({1: "a"}, False),
        ({"a", "b"}, False),
        (datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))), False),
        ([("nested", "tuple")], False),
    ],
)
def test_which_values_read_back_as_saved(value: Any, reads_back: bool) -> None:
    class Happened:
        def __init__(self, value: Any) -> None:
            self.value = value

    assert events_read_back_as_saved([Happened(value)]) is reads_back


class Packer(ProcessApplication):
    """Keeps a box per packed box upstream; each repack of its own box records what
    kind of value the box held before, as this follower saw it."""

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: Any) -> None:
        pass

    @policy.register(Box.Packed)
    def _(self, domain_event: Any, processing_event: Any) -> None:
        processing_event.collect_events(Box(("first",)))

    @policy.register(Box.Repacked)
    def _(self, domain_event: Any, processing_event: Any) -> None:
        (box_id,) = self.box_ids()
        box = self.repository.get(box_id)
        box.repack((type(box.items).__name__,))
        processing_event.collect_events(box)

    def box_ids(self) -> list[Any]:
        return [
            n.originator_id
            for n in self.notification_log.select(1, 10)
            if n.originator_version == 1
        ]


def test_a_followers_aggregates_in_memory_are_what_a_replay_makes(
    persistence_env: dict[str, str],
) -> None:
    with SingleThreadedRunner(System(pipes=[[Application, Packer]]), env=persistence_env) as runner:
        upstream = runner.get(Application)
        box = Box([])
        upstream.save(box)
        for _ in range(2):
            box.repack([])
            upstream.save(box)
        packer = runner.get(Packer)
        (box_id,) = packer.box_ids()
        # The follower saw its box as a replay makes it: its tuples as lists.
        assert packer.repository.get(box_id).items == ["list"]
        # Its box was made, then repacked twice: three events.
        assert packer.recorder.max_notification_id() == 3
