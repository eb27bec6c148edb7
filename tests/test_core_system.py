"""Systems: the graph, followers, exactly-once processing and the runners."""

import threading
import time

import pytest

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import RecordConflictError, Tracking, TrackingConflictError
from eventsourcing.system import (
    EventProcessingError,
    Follower,
    Leader,
    MultiThreadedRunner,
    ProcessApplication,
    ProcessingEvent,
    RunnerAlreadyStartedError,
    SingleThreadedRunner,
    System,
)
from examples import dogschool
from examples.dogschool import Counter, Dog, DogSchool


class Counters(dogschool.Counters):
    def policy(self, domain_event, processing_event):
        if isinstance(domain_event, Dog.TrickAdded) and domain_event.trick == "explode":
            raise ValueError("cannot count explosions")
        super().policy(domain_event, processing_event)


class Audit(ProcessApplication):
    """Follows Counters: one event per Incremented."""

    @singledispatchmethod
    def policy(self, domain_event, processing_event):
        pass

    @policy.register(Counter.Incremented)
    def _(self, domain_event, processing_event):
        processing_event.collect_events(Dog(f"audit-{domain_event.originator_version}"))


STOP_ON_ERROR = {"FOLLOWER_ON_ERROR": "stop"}


def dog_system() -> System:
    return System(pipes=[[DogSchool, Counters]])


# -- the graph ---------------------------------------------------------------


class Ping(ProcessApplication):
    pass


class Pong(ProcessApplication):
    pass


def test_system_graph_queries() -> None:
    system = System(pipes=[[DogSchool, Counters, Audit], [DogSchool, Ping]])
    assert list(system.nodes) == ["DogSchool", "Counters", "Audit", "Ping"]
    assert system.nodes["Counters"].endswith(":Counters")
    assert system.edges == [("DogSchool", "Counters"), ("Counters", "Audit"), ("DogSchool", "Ping")]
    assert system.leads["DogSchool"] == ["Counters", "Ping"]
    assert system.follows["Audit"] == ["Counters"]
    assert system.leaders == ["DogSchool", "Counters"]
    assert system.leaders_only == ["DogSchool"]
    assert system.followers == ["Counters", "Audit", "Ping"]
    assert system.processors == ["Counters"]
    assert system.get_app_cls("Counters") is Counters
    assert issubclass(system.get_app_cls("DogSchool"), Leader)
    assert issubclass(system.get_app_cls("DogSchool"), DogSchool)
    assert System(pipes=[[DogSchool], [Counters]]).singles == ["DogSchool", "Counters"]


def test_cycles_are_allowed() -> None:
    system = System(pipes=[[Ping, Pong, Ping]])
    assert system.edges == [("Ping", "Pong"), ("Pong", "Ping")]
    assert system.processors == ["Ping", "Pong"]


def test_a_plain_application_cannot_follow() -> None:
    with pytest.raises(TypeError, match="DogSchool.*must be a Follower"):
        System(pipes=[[Counters, DogSchool]])


# -- the single-threaded runner ----------------------------------------------


def test_single_threaded_runner_processes_before_the_command_returns() -> None:
    with SingleThreadedRunner(dog_system()) as runner:
        school = runner.get(DogSchool)
        counters = runner.get(Counters)
        dog_id = school.register_dog("Fido")
        school.add_trick(dog_id, "sit")
        assert counters.get_count("sit") == 1
        school.add_trick(dog_id, "sit")
        school.add_trick(dog_id, "beg")
        assert counters.get_count("sit") == 2
        assert counters.get_count("beg") == 1
        assert counters.recorder.max_tracking_id("DogSchool") == 4


def test_a_chain_of_process_applications() -> None:
    with SingleThreadedRunner(System(pipes=[[DogSchool, Counters, Audit]])) as runner:
        school = runner.get(DogSchool)
        dog_id = school.register_dog("Fido")
        school.add_trick(dog_id, "sit")
        school.add_trick(dog_id, "beg")
        audit = runner.get(Audit)
        assert audit.recorder.max_notification_id() == 2


def test_runner_cannot_start_twice() -> None:
    runner = SingleThreadedRunner(dog_system())
    runner.start()
    with pytest.raises(RunnerAlreadyStartedError):
        runner.start()
    runner.stop()


def test_policy_error_surfaces_and_records_nothing_of_that_event() -> None:
    # (FOLLOWER_ON_ERROR=stop: the follower stops at the event, as it did before parking.)
    with SingleThreadedRunner(dog_system(), env=STOP_ON_ERROR) as runner:
        school = runner.get(DogSchool)
        counters = runner.get(Counters)
        dog_id = school.register_dog("Fido")
        school.add_trick(dog_id, "sit")
        assert counters.recorder.max_tracking_id("DogSchool") == 2
        with pytest.raises(EventProcessingError) as info:
            school.add_trick(dog_id, "explode")
        assert isinstance(info.value.__cause__, ValueError)
        assert "Counters" in str(info.value) and "TrickAdded" in str(info.value)
        assert "notification 3" in str(info.value)
        # The leader's event is recorded; the follower recorded nothing of it.
        assert school.recorder.max_notification_id() == 3
        assert counters.recorder.max_tracking_id("DogSchool") == 2
        assert counters.recorder.max_notification_id() == 2


def test_events_before_a_failing_one_in_a_batch_are_recorded() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    school.add_trick(dog_id, "sit")
    school.add_trick(dog_id, "beg")
    school.add_trick(dog_id, "explode")
    school.add_trick(dog_id, "roll")
    counters = Counters(env=STOP_ON_ERROR)
    counters.follow("DogSchool", school.notification_log)
    with pytest.raises(EventProcessingError):
        counters.pull_and_process("DogSchool")
    assert counters.recorder.max_tracking_id("DogSchool") == 3
    assert counters.get_count("sit") == 1 and counters.get_count("beg") == 1
    assert counters.get_count("roll") == 0
    # It stays stuck on the failing event: the position never passes it.
    with pytest.raises(EventProcessingError):
        counters.pull_and_process("DogSchool")
    assert counters.recorder.max_tracking_id("DogSchool") == 3


def test_a_conflict_recording_the_events_before_a_failing_one_is_retried() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    for trick in ("sit", "beg", "explode", "roll"):
        school.add_trick(dog_id, trick)
    counters = Counters(env=STOP_ON_ERROR)
    counters.follow("DogSchool", school.notification_log)
    insert_events = counters.recorder.insert_events
    conflicts = []

    def conflicting_once(stored_events, **kwargs):  # type: ignore[no-untyped-def]
        if not conflicts:  # (the first write: the events before "explode")
            conflicts.append(kwargs["tracking"].notification_id)
            raise RecordConflictError("another process recorded first")
        return insert_events(stored_events, **kwargs)

    counters.recorder.insert_events = conflicting_once  # type: ignore[method-assign]
    with pytest.raises(EventProcessingError, match="cannot count explosions"):
        counters.pull_and_process("DogSchool")
    assert conflicts == [3]  # the batch was read and processed again, then recorded
    assert counters.recorder.max_tracking_id("DogSchool") == 3
    assert counters.get_count("sit") == 1 and counters.get_count("roll") == 0


def test_a_batch_sees_what_earlier_events_in_it_changed() -> None:
    school = DogSchool()
    dog_ids = [school.register_dog(f"dog{i}") for i in range(10)]
    for i in range(500):
        school.add_trick(dog_ids[i % 10], f"trick{i % 7}")
    counters = Counters()
    counters.follow("DogSchool", school.notification_log)
    counters.pull_and_process("DogSchool")
    counts = [counters.get_count(f"trick{k}") for k in range(7)]
    assert counts == [len(range(k, 500, 7)) for k in range(7)]
    assert counters.recorder.max_tracking_id("DogSchool") == 510
    assert counters.recorder.max_notification_id() == 7 + 500


def test_processing_again_does_nothing_twice() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    school.add_trick(dog_id, "sit")
    counters = Counters()
    counters.follow("DogSchool", school.notification_log)
    counters.pull_and_process("DogSchool")
    counters.pull_and_process("DogSchool")
    counters.pull_and_process("DogSchool", start=2)  # (at the position: continues after it)
    assert counters.get_count("sit") == 1
    # The recorder refuses a position that is not ahead of the recorded one.
    with pytest.raises(TrackingConflictError):
        counters.recorder.insert_events([], tracking=Tracking("DogSchool", 2))


def test_process_event_records_effects_with_tracking() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    school.add_trick(dog_id, "sit")
    counters = Counters()
    notification = school.notification_log.select(2, 1)[0]
    domain_event = school.mapper.to_domain_event(notification)
    counters.process_event(domain_event, Tracking("DogSchool", notification.id))
    assert counters.get_count("sit") == 1
    assert counters.recorder.has_tracking_id("DogSchool", 2)
    assert not counters.recorder.has_tracking_id("DogSchool", 3)
    assert isinstance(ProcessingEvent(), ProcessingEvent)


# -- the multi-threaded runner -----------------------------------------------


def test_multi_threaded_runner_processes_everything() -> None:
    runner = MultiThreadedRunner(System(pipes=[[DogSchool, Counters, Audit]]))
    runner.start()
    try:
        school = runner.get(DogSchool)
        dog_ids = [school.register_dog(f"dog{i}") for i in range(5)]
        for i in range(100):
            school.add_trick(dog_ids[i % 5], f"trick{i % 3}")
        runner.wait(timeout=10)
        counters = runner.get(Counters)
        assert [counters.get_count(f"trick{k}") for k in range(3)] == [34, 33, 33]
        assert runner.get(Audit).recorder.max_notification_id() == 100
    finally:
        runner.stop()


def test_multi_threaded_runner_wakes_the_follower_at_once() -> None:
    processed = threading.Event()

    class Signalling(Counters):
        name = "Counters"

        def notify(self, new_events):
            if new_events:
                processed.set()

    runner = MultiThreadedRunner(System(pipes=[[DogSchool, Signalling]]))
    with runner:
        school = runner.get(DogSchool)
        dog_id = school.register_dog("Fido")
        school.add_trick(dog_id, "sit")
        # No polling interval to wait for: the follower thread is signalled.
        assert processed.wait(timeout=5)


def test_multi_threaded_runner_reports_a_policy_error_on_the_callers_side() -> None:
    runner = MultiThreadedRunner(dog_system(), env=STOP_ON_ERROR)
    runner.start()
    school = runner.get(DogSchool)
    dog_id = school.register_dog("Fido")
    school.add_trick(dog_id, "sit")
    school.add_trick(dog_id, "explode")
    with pytest.raises(EventProcessingError) as info:
        runner.watch_for_errors(timeout=5)
    assert isinstance(info.value.__cause__, ValueError)
    counters = runner.get(Counters)
    assert counters.get_count("sit") == 1
    assert counters.recorder.max_tracking_id("DogSchool") == 2
    with pytest.raises(EventProcessingError):
        runner.stop()
    assert not runner.is_started


def test_wait_raises_a_follower_error() -> None:
    runner = MultiThreadedRunner(dog_system(), env=STOP_ON_ERROR)
    runner.start()
    school = runner.get(DogSchool)
    school.add_trick(school.register_dog("Fido"), "explode")
    with pytest.raises(EventProcessingError):
        runner.wait(timeout=5)
    with pytest.raises(EventProcessingError):
        runner.stop()


def test_follower_of_unknown_leader() -> None:
    counters = Counters()
    from eventsourcing.system import NotificationPullingError

    with pytest.raises(NotificationPullingError, match="does not follow 'Nobody'"):
        counters.pull_and_process("Nobody")


def test_follower_subclass_is_a_follower() -> None:
    assert issubclass(Counters, Follower) and issubclass(Counters, Leader)


# -- a follower keeps what it wrote in memory ---------------------------------


def test_follower_does_not_read_back_the_aggregates_it_wrote() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    counters = Counters()
    counters.follow("DogSchool", school.notification_log)
    reads = []
    select_events = counters.recorder.select_events
    counters.recorder.select_events = lambda *a, **k: reads.append(a) or select_events(*a, **k)
    for _ in range(50):
        school.add_trick(dog_id, "sit")
        counters.pull_and_process("DogSchool")  # one batch per event
    assert counters.get_count("sit") == 50
    assert len(reads) == 1 + 1  # the first (not found) and the query just above


def test_follower_memory_that_another_writer_made_stale_is_reloaded(tmp_path) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "school.db"),
        "COUNTERS_SQLITE_DBNAME": str(tmp_path / "counters.db"),
    }
    school = DogSchool(env=env)
    dog_id = school.register_dog("Fido")
    counters = Counters(env=env)
    counters.follow("DogSchool", school.notification_log)
    school.add_trick(dog_id, "sit")
    counters.pull_and_process("DogSchool")
    # Another process (say, another partition) writes the same counter.
    other = Counters(env=env)
    counter = other.repository.get(Counter.create_id("sit"))
    counter.increment()
    other.save(counter)
    school.add_trick(dog_id, "sit")
    counters.pull_and_process("DogSchool")  # conflicts once, reloads, processes again
    assert counters.get_count("sit") == 3
    assert counters.recorder.max_tracking_id("DogSchool") == 3


def test_a_failed_batch_leaves_nothing_changed_in_memory() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    counters = Counters()
    counters.follow("DogSchool", school.notification_log)
    school.add_trick(dog_id, "sit")
    counters.pull_and_process("DogSchool")

    class Boom(Exception):
        pass

    original_record = counters._record

    def failing_record(processing_event, **kwargs):
        raise Boom()

    counters._record = failing_record
    school.add_trick(dog_id, "sit")
    with pytest.raises(Boom):
        counters.pull_and_process("DogSchool")
    counters._record = original_record
    counters.pull_and_process("DogSchool")
    assert counters.get_count("sit") == 2  # not 3: the failed attempt left no trace


class Enrolments(ProcessApplication):
    """Creates a new aggregate (random id) per dog registered: a duplicate would show."""

    batch_size = 3

    @singledispatchmethod
    def policy(self, domain_event, processing_event):
        pass

    @policy.register(Dog.Registered)
    def _(self, domain_event, processing_event):
        time.sleep(0.0002)  # let the other process's thread run: batches interleave
        processing_event.collect_events(Dog(f"enrolment of {domain_event.name}"))


def test_two_processes_running_one_follower_do_nothing_twice(tmp_path) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "school.db"),
        "ENROLMENTS_SQLITE_DBNAME": str(tmp_path / "enrolments.db"),
    }
    school = DogSchool(env=env)
    for i in range(200):
        school.register_dog(f"dog{i}")
    twins = [Enrolments(env=env), Enrolments(env=env)]
    for twin, batch_size in zip(twins, [3, 5]):  # overlapping batches with different ends
        twin.batch_size = batch_size
        twin.follow("DogSchool", school.notification_log)
    errors = []

    def process(twin):
        try:
            twin.pull_and_process("DogSchool")
        except Exception as error:  # pragma: no cover (reported below)
            errors.append(error)

    threads = [threading.Thread(target=process, args=(twin,)) for twin in twins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert twins[0].recorder.max_notification_id() == 200  # one enrolment per dog, no more
    assert twins[0].recorder.max_tracking_id("DogSchool") == 200


@pytest.mark.parametrize("runner_cls", [SingleThreadedRunner, MultiThreadedRunner])
def test_runners_catch_up_on_start_without_waiting_for_news(runner_cls, tmp_path) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "school.db"),
        "COUNTERS_SQLITE_DBNAME": str(tmp_path / "counters.db"),
    }
    school = DogSchool(env=env)  # recorded while no runner ran
    dog_id = school.register_dog("Fido")
    for trick in ["sit", "sit", "beg"]:
        school.add_trick(dog_id, trick)
    runner = runner_cls(dog_system(), env=env)
    runner.start()
    try:
        if isinstance(runner, MultiThreadedRunner):
            runner.wait(timeout=10)  # no new event is recorded: start() alone catches up
        counters = runner.get(Counters)
        assert (counters.get_count("sit"), counters.get_count("beg")) == (2, 1)
    finally:
        runner.stop()


def test_partitions_parse_and_route_by_originator_id() -> None:
    from uuid import UUID

    from eventsourcing.system import Partition

    assert Partition.parse("1/4") == Partition(1, 4)
    for bad, reason in [
        ("2", "K/N"),
        ("a/2", "K/N"),
        ("2/2", "from 0 to 1"),
        ("0/0", "at least 1"),
    ]:
        with pytest.raises(ValueError, match=reason):
            Partition.parse(bad)
    ids = [UUID(int=n) for n in range(12)]
    shares = [[i for i in ids if Partition(k, 3).owns(i)] for k in range(3)]
    assert sorted(sum(shares, [])) == ids and all(len(share) == 4 for share in shares)
    assert Partition(1, 3).tracking_name("DogSchool") == "DogSchool[1/3]"


def test_a_policy_registered_later_is_dispatched_to() -> None:
    class Late(ProcessApplication):
        @singledispatchmethod
        def policy(self, domain_event, processing_event):
            processing_event.collect_events(Dog(f"default-{domain_event.originator_version}"))

    late = Late()
    dog = Dog("Fido")
    late.policy(dog.collect_events()[0], ProcessingEvent())  # dispatched once: remembered

    @Late.policy.register(Dog.Registered)
    def _(self, domain_event, processing_event):
        raise LookupError("the later registration")

    with pytest.raises(LookupError, match="the later registration"):
        late.policy(Dog("Rex").collect_events()[0], ProcessingEvent())
