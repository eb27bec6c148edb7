"""Projections into materialised views, written as users of the 9.x projection API
write them: a view per store, run by ProjectionRunner, read after wait()."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventsourcing.application import ProcessingEvent
from eventsourcing.cipher import AESCipher
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, InterfaceError, Tracking
from eventsourcing.projection import (
    ApplicationSubscription,
    EventSourcedProjection,
    EventSourcedProjectionRunner,
    Projection,
    ProjectionRunner,
)
from tests.projection_views import (
    VIEWS,
    BatchCountProjection,
    Dog,
    DogSchool,
    TrickCounts,
    dog_school_runner,
)


@pytest.fixture
def view_class(persistence_env: dict[str, str]) -> type[TrickCounts]:
    return VIEWS[persistence_env["PERSISTENCE_MODULE"]]


RunnerMaker = Callable[..., ProjectionRunner[DogSchool, TrickCounts]]


@pytest.fixture
def new_runner(persistence_env: dict[str, str], view_class: type[TrickCounts]) -> RunnerMaker:
    """Makes a runner over a DogSchool of this store, into its view (CountProjection
    unless another projection class is given)."""
    return functools.partial(dog_school_runner, persistence_env, view_class)


def test_runner_projects_events_into_the_view(new_runner: RunnerMaker) -> None:
    with new_runner() as runner:
        school = runner.app
        school.register_dog("Billy")
        school.register_dog("Milly")
        school.add_trick("Billy", "roll over")
        school.add_trick("Milly", "roll over")
        last = school.add_trick("Billy", "fetch ball")
        runner.wait(last, timeout=10)
        assert runner.view.get_count("roll over") == 2
        assert runner.view.get_count("fetch ball") == 1
        assert runner.view.get_count("play dead") == 0
        # Events that change nothing in the view still move its position.
        last = school.register_dog("Scrappy")
        runner.wait(last, timeout=10)
        assert runner.view.max_tracking_id("DogSchool") == last


def test_runner_resumes_from_the_views_position(
    persistence_env: dict[str, str], new_runner: RunnerMaker
) -> None:
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        pytest.skip("nothing outlives a runner in memory")
    school = DogSchool(env=persistence_env)
    school.register_dog("Billy")
    first = school.add_trick("Billy", "sit")
    with new_runner() as runner:
        runner.wait(first, timeout=10)
    school.add_trick("Billy", "sit")
    last = school.add_trick("Billy", "beg")
    with new_runner() as runner:
        runner.wait(last, timeout=10)
        assert runner.view.get_count("sit") == 2  # not 3: nothing processed twice
        assert runner.view.get_count("beg") == 1


def test_a_view_refuses_a_position_twice_and_keeps_nothing_of_that_command(
    new_runner: RunnerMaker,
) -> None:
    with new_runner() as runner:
        runner.app.register_dog("Billy")
        last = runner.app.add_trick("Billy", "sit")
        runner.wait(last, timeout=10)
        with pytest.raises(IntegrityError):
            runner.view.count_trick("sit", Tracking("DogSchool", last))
        assert runner.view.get_count("sit") == 1


def test_batches_are_processed_in_one_command_each(
    persistence_env: dict[str, str], new_runner: RunnerMaker
) -> None:
    BatchCountProjection.batch_sizes = []
    school = DogSchool(env=persistence_env)
    # (In memory the runner's application is its own: write through it there.)
    durable = persistence_env["PERSISTENCE_MODULE"] != "eventsourcing.popo"
    with new_runner(BatchCountProjection) as runner:
        writer = school if durable else runner.app
        writer.register_dog("Billy")
        dog: Dog = writer.repository.get(Dog.create_id("Billy"))
        for i in range(30):
            dog.add_trick(f"trick {i % 3}")
        last = writer.save(dog)[-1].notification.id
        runner.wait(last, timeout=10)
        assert [runner.view.get_count(f"trick {i}") for i in range(3)] == [10, 10, 10]
        assert sum(BatchCountProjection.batch_sizes) == 30  # only its topic's events
        # Events recorded in one write arrive together: fewer commands than events.
        assert len(BatchCountProjection.batch_sizes) < 30


class FailingProjection(Projection[TrickCounts]):
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        if isinstance(domain_event, Dog.TrickAdded) and domain_event.trick == "bite":
            raise ValueError("no biting")
        self.view.insert_tracking(tracking)


def test_run_forever_and_wait_reraise_the_projections_error(
    persistence_env: dict[str, str], new_runner: RunnerMaker
) -> None:
    runner = new_runner(FailingProjection)
    runner.app.register_dog("Billy")
    last = runner.app.add_trick("Billy", "bite")
    with pytest.raises(ValueError, match="no biting"):
        runner.wait(last, timeout=10)
    runner.run_forever(timeout=0.01)  # (the error was raised once)
    runner.stop()
    runner2 = new_runner(FailingProjection)
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        runner2.app.register_dog("Billy")
        runner2.app.add_trick("Billy", "bite")
    # (Durable: it starts again before the failing event, and fails again.)
    with pytest.raises(ValueError, match="no biting"):
        runner2.run_forever(timeout=10)
    runner2.stop()
    runner.app.close()
    runner2.app.close()


def test_stop_ends_the_views_listening_for_wait(new_runner: RunnerMaker) -> None:
    """A runner stopped without leaving its context keeps no thread listening for the
    view's positions (on PostgreSQL one held a connection until the database went)."""
    before = {thread.ident for thread in threading.enumerate()}
    runner = new_runner()
    runner.wait(runner.app.register_dog("Billy"), timeout=10)
    runner.stop()
    runner._processing_thread.join(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [
            t.name
            for t in threading.enumerate()
            if t.ident not in before and t.name.startswith("listen")
        ]
        if not left:
            break
        time.sleep(0.01)
    assert left == []
    runner.__exit__(None, None, None)  # (closes the application and the view's pool)


def test_run_forever_returns_after_timeout_and_wait_returns_once_stopped(
    new_runner: RunnerMaker,
) -> None:
    with new_runner() as runner:
        runner.run_forever(timeout=0.05)
        with pytest.raises(TimeoutError):
            runner.wait(99, timeout=0.05)
        threading.Timer(0.1, runner.stop).start()
        runner.wait(99, timeout=10)  # stopped: returns instead of failing
        runner.run_forever()  # stopped: returns at once


def test_settings_prefixed_with_the_projections_name_configure_the_view_only(
    tmp_path: Path,
) -> None:
    events_db = tmp_path / "events.db"
    view_db = tmp_path / "view.db"
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(events_db),
        "COUNTPROJECTION_SQLITE_DBNAME": str(view_db),
    }
    with dog_school_runner(env, VIEWS["eventsourcing.sqlite"]) as runner:
        runner.app.register_dog("Billy")
        runner.wait(runner.app.add_trick("Billy", "sit"), timeout=10)

    def tables(path: Path) -> set[str]:
        with sqlite3.connect(path) as conn:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}

    assert {"trick_counts", "countprojection_tracking"} <= tables(view_db)
    assert "trick_counts" not in tables(events_db)
    assert "dogschool_events" in tables(events_db)
    assert "dogschool_events" not in tables(view_db)


def test_application_subscription_reads_through_the_mapper(
    persistence_env: dict[str, str],
) -> None:
    env = dict(persistence_env, CIPHER_KEY=AESCipher.create_key(16))
    env["COMPRESSOR_TOPIC"] = "eventsourcing.compressor:ZlibCompressor"
    school = DogSchool(env=env)
    school.register_dog("Billy")
    school.add_trick("Billy", "sit")
    with ApplicationSubscription(school, gt=1) as subscription:
        domain_event, tracking = next(subscription)
    assert isinstance(domain_event, Dog.TrickAdded)
    assert domain_event.trick == "sit"
    assert tracking == Tracking("DogSchool", 2)


class Counter(Aggregate):
    @event("Started")
    def __init__(self, trick: str) -> None:
        self.trick = trick
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class TrickCounters(EventSourcedProjection):
    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        pass

    @policy.register
    def _(self, domain_event: Dog.TrickAdded, processing_event: ProcessingEvent[Any]) -> None:
        counter_id = self.counter_ids.get(domain_event.trick)
        if counter_id is None:
            counter = Counter(domain_event.trick)
            self.counter_ids[domain_event.trick] = counter.id
        else:
            counter = self.repository.get(counter_id)
        counter.increment()
        processing_event.collect_events(counter)

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self.counter_ids: dict[str, Any] = {}

    def get_count(self, trick: str) -> int:
        counter_id = self.counter_ids.get(trick)
        return 0 if counter_id is None else int(self.repository.get(counter_id).count)


def test_event_sourced_projection_records_new_events_with_tracking(
    persistence_env: dict[str, str],
) -> None:
    with EventSourcedProjectionRunner(
        application_class=DogSchool, projection_class=TrickCounters, env=persistence_env
    ) as runner:
        runner.app.register_dog("Billy")
        runner.app.add_trick("Billy", "sit")
        last = runner.app.add_trick("Billy", "sit")
        runner.wait(last, timeout=10)
        assert runner.projection.get_count("sit") == 2
        assert runner.projection.recorder.max_tracking_id("DogSchool") == last
        # Its own events are an application's: two Started/Incremented pairs' worth.
        assert runner.projection.recorder.max_notification_id() == 3


@pytest.fixture
def clean_runner_threads() -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    leftover = {t.name for t in threading.enumerate()} - before
    assert not {name for name in leftover if name.startswith("projection-")}


def test_leaving_the_runner_ends_its_thread(
    new_runner: RunnerMaker, clean_runner_threads: None
) -> None:
    with new_runner() as runner:
        runner.app.register_dog("Billy")


def test_leaving_the_runner_closes_the_views_connections(tmp_path: Path) -> None:
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "x.db")}
    with dog_school_runner(env, VIEWS["eventsourcing.sqlite"]) as runner:
        runner.wait(runner.app.register_dog("Billy"), timeout=10)
    with pytest.raises(InterfaceError, match="closed"):
        runner.view.max_tracking_id("DogSchool")
