"""Followers take the events a leader in the same process just recorded from the
leader's hands (no read, no decoding), and fall back to the log for anything else."""

import threading

import pytest

from eventsourcing.system import MultiThreadedRunner, SingleThreadedRunner, System
from examples.dogschool import Counter, DogSchool
from tests.test_core_system import Counters


def sqlite_env(tmp_path):
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "school.db"),
        "COUNTERS_SQLITE_DBNAME": str(tmp_path / "counters.db"),
    }


def counted(counters, tricks=("sit", "beg", "roll")):
    return {trick: counters.get_count(trick) for trick in tricks}


def test_handed_over_events_are_neither_read_nor_decoded() -> None:
    runner = SingleThreadedRunner(System(pipes=[[DogSchool, Counters]]))
    runner.start()
    try:
        school, counters = runner.get(DogSchool), runner.get(Counters)
        dog_id = school.register_dog("Fido")
        decoded, read = [], []
        decode = counters.mapper.to_domain_event
        counters.mapper.to_domain_event = lambda n: decoded.append(n.topic) or decode(n)
        select = school.notification_log.select
        school.notification_log.select = lambda *a, **k: read.append(a) or select(*a, **k)
        for _ in range(20):
            school.add_trick(dog_id, "sit")
        assert counters.get_count("sit") == 20
        assert read == []
        assert [topic for topic in decoded if "Dog" in topic] == []  # only its own counters
        assert counters.recorder.max_tracking_id("DogSchool") == 21
    finally:
        runner.stop()


def test_events_another_writer_recorded_are_read_from_the_log(tmp_path) -> None:
    env = sqlite_env(tmp_path)
    runner = SingleThreadedRunner(System(pipes=[[DogSchool, Counters]]), env=env)
    runner.start()
    try:
        school, counters = runner.get(DogSchool), runner.get(Counters)
        elsewhere = DogSchool(env=env)  # another process writing the same log: no handover
        dog_id = school.register_dog("Fido")
        elsewhere.add_trick(dog_id, "beg")  # id 2, not handed over
        elsewhere.add_trick(dog_id, "roll")  # id 3
        school.add_trick(dog_id, "sit")  # id 4 handed over: a gap, so the log is read
        assert counted(counters) == {"sit": 1, "beg": 1, "roll": 1}
        school.add_trick(dog_id, "sit")  # id 5 continues the position: handed over
        assert counted(counters) == {"sit": 2, "beg": 1, "roll": 1}
        assert counters.recorder.max_tracking_id("DogSchool") == 5
        counter = counters.repository.get(Counter.create_id("sit"))
        assert counter.version == 3  # created, then incremented twice: nothing done twice
    finally:
        runner.stop()


@pytest.mark.parametrize("maxsize", [1, 3, 10_000])
def test_a_follower_far_behind_drops_the_oldest_and_reads_them(tmp_path, maxsize) -> None:
    env = sqlite_env(tmp_path)
    runner = MultiThreadedRunner(System(pipes=[[DogSchool, Counters]]), env=env)
    runner.start()
    try:
        school, counters = runner.get(DogSchool), runner.get(Counters)
        counters._handover.maxsize = maxsize
        counters.batch_size = 7  # several batches, some from the log, some handed over
        dog_id = school.register_dog("Fido")
        runner.wait(timeout=10)
        with counters._processing_lock:  # hold the follower back while commands pile up
            for i in range(60):
                school.add_trick(dog_id, ["sit", "beg", "roll"][i % 3])
        runner.wait(timeout=20)
        assert counted(counters) == {"sit": 20, "beg": 20, "roll": 20}
        assert counters.recorder.max_tracking_id("DogSchool") == 61
        versions = [counters.repository.get(Counter.create_id(t)).version for t in ("sit",)]
        assert versions == [21]
    finally:
        runner.stop()


def test_writers_in_many_threads_hand_over_out_of_order(tmp_path) -> None:
    env = sqlite_env(tmp_path)
    runner = MultiThreadedRunner(System(pipes=[[DogSchool, Counters]]), env=env)
    runner.start()
    try:
        school, counters = runner.get(DogSchool), runner.get(Counters)
        dogs = [school.register_dog(f"dog {i}") for i in range(4)]

        def write(dog_id):
            for _ in range(50):
                school.add_trick(dog_id, "sit")

        threads = [threading.Thread(target=write, args=(d,)) for d in dogs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        runner.wait(timeout=20)
        assert counters.get_count("sit") == 200
        assert counters.recorder.max_tracking_id("DogSchool") == 204
    finally:
        runner.stop()


def test_a_process_application_that_is_followed_hands_over_what_it_records() -> None:
    # (A follower nobody follows makes no recordings; one that leads must still make them.)
    from eventsourcing.system import ProcessApplication

    class Tally(ProcessApplication):
        seen: list[str]

        def policy(self, domain_event, processing_event):
            self.seen.append(type(domain_event).__name__)

    runner = SingleThreadedRunner(System(pipes=[[DogSchool, Counters, Tally]]))
    runner.start()
    try:
        school, counters, tally = runner.get(DogSchool), runner.get(Counters), runner.get(Tally)
        tally.seen = []
        read = []
        select = counters.notification_log.select
        counters.notification_log.select = lambda *a, **k: read.append(a) or select(*a, **k)
        dog_id = school.register_dog("Fido")
        for trick in ("sit", "sit", "beg"):
            school.add_trick(dog_id, trick)
        assert counted(counters) == {"sit": 2, "beg": 1, "roll": 0}
        created_then_incremented = ["Created", "Incremented"]
        assert tally.seen == [*created_then_incremented, "Incremented", *created_then_incremented]
        assert read == []  # Counters' events were handed over, not read from its log
        assert tally.recorder.max_tracking_id("Counters") == 5
    finally:
        runner.stop()
