"""A follower's ``topics``, and its documented pulling steps: pull_notifications,
filter_received_notifications, convert_notifications, pull_section_size."""

from __future__ import annotations

from typing import Any

import pytest

from eventsourcing.application import Application
from eventsourcing.cipher import AESCipher
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.system import (
    MultiProcessRunner,
    MultiThreadedRunner,
    NotificationConvertingError,
    NotificationLogReader,
    ProcessApplication,
    ProcessingEvent,
    SingleThreadedRunner,
    System,
    WorkerRunner,
)
from eventsourcing.utils import get_topic


class Pet(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name

    @event("Barked")
    def bark(self) -> None:
        pass


class Kennel(Application):
    def register_and_bark(self, name: str, barks: int = 1) -> None:
        pet = Pet(name)
        for _ in range(barks):
            pet.bark()
        self.save(pet)


BARKED = get_topic(Pet.Barked)


class Listener(ProcessApplication):
    """Remembers the class names of the events its policy is given."""

    topics = [BARKED]

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self.seen: list[str] = []

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        self.seen.append(type(domain_event).__name__)


class AllListener(Listener):
    topics = ()


def test_a_follower_with_topics_is_given_only_events_of_those_topics(persistence_env) -> None:
    system = System(pipes=[[Kennel, Listener]])
    with SingleThreadedRunner(system, env=persistence_env) as runner:
        kennel = runner.get(Kennel)
        listener = runner.get(Listener)
        kennel.register_and_bark("Fido", barks=2)
        kennel.register_and_bark("Rex")
        assert listener.seen == ["Barked", "Barked", "Barked"]
        assert listener.recorder.max_tracking_id("Kennel") == 5  # the last Barked


def test_the_topics_filter_is_part_of_the_log_query() -> None:
    kennel = Kennel()
    listener = Listener()
    queried: list[Any] = []
    select = kennel.notification_log.select

    def spying_select(*args: Any, **kwargs: Any) -> list[Notification]:
        queried.append(kwargs.get("topics"))
        return select(*args, **kwargs)

    kennel.notification_log.select = spying_select  # type: ignore[method-assign]
    listener.follow(kennel.name, kennel.notification_log)
    kennel.register_and_bark("Fido")
    listener.pull_and_process(kennel.name)
    assert listener.seen == ["Barked"]
    assert queried and all(list(topics) == [BARKED] for topics in queried)


def test_a_follower_without_topics_is_given_every_event() -> None:
    with SingleThreadedRunner(System(pipes=[[Kennel, AllListener]])) as runner:
        runner.get(Kennel).register_and_bark("Fido")
        assert runner.get(AllListener).seen == ["Registered", "Barked"]


def test_follow_topics_is_the_older_name_of_topics() -> None:
    class OldStyle(Listener):
        follow_topics = [get_topic(Pet.Registered)]

    assert OldStyle.topics == [get_topic(Pet.Registered)]
    with SingleThreadedRunner(System(pipes=[[Kennel, OldStyle]])) as runner:
        runner.get(Kennel).register_and_bark("Fido")
        assert runner.get(OldStyle).seen == ["Registered"]


def test_topics_that_are_not_topic_strings_are_refused_by_name() -> None:
    class Wrong(Listener):
        topics = [Pet.Barked]  # type: ignore[list-item]

    with pytest.raises(TypeError, match=r"Wrong\.topics must be a list of topic strings"):
        Wrong()


def test_a_threaded_system_with_topics_processes_each_event_and_waits_till_done() -> None:
    # The last events are not of the follower's topics: its position stays at the last
    # Barked, and waiting must still see that nothing is left to do.
    class Registrations(Listener):
        topics = [get_topic(Pet.Registered)]

    runner = MultiThreadedRunner(System(pipes=[[Kennel, Registrations]]))
    runner.start()
    try:
        kennel = runner.get(Kennel)
        for i in range(30):
            kennel.register_and_bark(f"pet{i}", barks=2)
        runner.wait(timeout=10)
        registrations = runner.get(Registrations)
        assert registrations.seen == ["Registered"] * 30
        assert registrations.recorder.max_tracking_id("Kennel") == 88  # the last Registered
    finally:
        runner.stop()


def test_pull_notifications_yields_batches_of_the_pull_section_size() -> None:
    class SmallBatches(AllListener):
        pull_section_size = 4

    kennel = Kennel()
    follower = SmallBatches()
    follower.follow(kennel.name, kennel.notification_log)
    for i in range(5):
        kennel.register_and_bark(f"pet{i}")  # ids 1-10
    sizes = [len(batch) for batch in follower.pull_notifications(kennel.name, 1)]
    assert sizes == [4, 4, 2]
    after_2 = follower.pull_notifications(kennel.name, 2, stop=7, inclusive_of_start=False)
    assert [n.id for batch in after_2 for n in batch] == [3, 4, 5, 6, 7]

    barks = Listener()
    barks.follow(kennel.name, kennel.notification_log)
    pulled = [n.id for batch in barks.pull_notifications(kennel.name, None) for n in batch]
    assert pulled == [2, 4, 6, 8, 10]


def test_filter_received_notifications_keeps_those_of_the_topics() -> None:
    kennel = Kennel()
    kennel.register_and_bark("Fido", barks=2)
    notifications = kennel.notification_log.select(1, 10)
    assert [n.id for n in Listener().filter_received_notifications(notifications)] == [2, 3]
    assert AllListener().filter_received_notifications(notifications) == notifications


def test_convert_notifications_gives_domain_events_with_their_tracking() -> None:
    kennel = Kennel()
    kennel.register_and_bark("Fido")
    listener = Listener()
    jobs = listener.convert_notifications(kennel.name, kennel.notification_log.select(1, 10))
    assert [type(domain_event).__name__ for domain_event, _ in jobs] == ["Registered", "Barked"]
    assert [tracking for _, tracking in jobs] == [Tracking("Kennel", 1), Tracking("Kennel", 2)]
    assert jobs[0][0].name == "Fido"

    bad = Notification(id=3, originator_id=jobs[0][0].originator_id, originator_version=3,
                       topic="no.such.module:Nothing", state=b"{}")  # fmt: skip
    with pytest.raises(NotificationConvertingError, match="notification 3 of Kennel"):
        listener.convert_notifications(kennel.name, [bad])


def test_overridden_pulling_steps_are_used_by_pull_and_process() -> None:
    class Particular(AllListener):
        def filter_received_notifications(self, notifications):
            return [n for n in notifications if n.originator_version == 1]

        def convert_notifications(self, leader_name, notifications):
            jobs = super().convert_notifications(leader_name, notifications)
            self.seen.append(f"converted {len(jobs)}")
            return jobs

    kennel = Kennel()
    follower = Particular()
    follower.follow(kennel.name, kennel.notification_log)
    kennel.register_and_bark("Fido", barks=2)
    kennel.register_and_bark("Rex")
    follower.pull_and_process(kennel.name)
    assert follower.seen == ["converted 2", "Registered", "Registered"]
    assert follower.recorder.max_tracking_id("Kennel") == 4


class Registrations(Listener):
    topics = [get_topic(Pet.Registered)]


def test_runners_of_other_processes_see_a_topic_follower_is_done(tmp_path) -> None:
    # Its position stays at the last Registered: the Barked after it are not lag.
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "db")}
    system = System(pipes=[[Kennel, Registrations]])
    kennel = Kennel(env=env)
    for i in range(3):
        kennel.register_and_bark(f"pet{i}", barks=2)

    worker = WorkerRunner(system, apps=["Registrations"], env=env, poll_interval=0.05)
    with worker:
        worker.wait(timeout=10)
        assert worker.get(Registrations).seen == ["Registered"] * 3
        assert worker.lag() == {("Registrations", "Kennel"): 0}

    processes = MultiProcessRunner(system, env=env)  # its apps only, no worker started
    processes._construct_apps()
    try:
        assert processes._all_caught_up()
        kennel.register_and_bark("late", barks=0)
        assert not processes._all_caught_up()
    finally:
        processes._close_apps()


@pytest.mark.parametrize("size", [0, -1, 2.5, "10"])
def test_a_reader_refuses_a_section_size_that_is_not_a_positive_integer(size: Any) -> None:
    with pytest.raises(ValueError, match=f"section_size must be a positive integer, not {size!r}"):
        NotificationLogReader(Kennel().notification_log, section_size=size)

    class Misconfigured(Listener):
        pull_section_size = size

    kennel = Kennel()
    with pytest.raises(ValueError, match="section_size must be a positive integer"):
        Misconfigured().follow(kennel.name, kennel.notification_log)


def test_a_leaders_events_are_decoded_with_the_settings_for_that_application() -> None:
    # Only the kennel's events are encrypted (KENNEL_CIPHER_KEY): the listener's own
    # are not, and it reads the kennel's with the kennel's key.
    env = {"KENNEL_CIPHER_KEY": AESCipher.create_key(16), "COMPRESSOR_TOPIC": "zlib"}
    kennel = Kennel(env=env)
    kennel.register_and_bark("Fido")
    listener = AllListener(env=env)
    assert listener.mapper.cipher is None
    listener.follow(kennel.name, kennel.notification_log)
    assert listener.mappers["Kennel"].cipher is not None
    listener.pull_and_process(kennel.name)
    assert listener.seen == ["Registered", "Barked"]
    jobs = listener.convert_notifications(kennel.name, kennel.notification_log.select(1, 10))
    assert [type(domain_event).__name__ for domain_event, _ in jobs] == ["Registered", "Barked"]

    plain = Kennel()  # the same settings for both: the follower's own mapper serves
    follower = AllListener()
    follower.follow(plain.name, plain.notification_log)
    assert follower.mappers["Kennel"] is follower.mapper
