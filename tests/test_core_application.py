"""Applications: saving, getting, the notification log, the environment."""

from uuid import uuid4

import pytest

from eventsourcing.application import AggregateNotFound, AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, RecordConflictError
from eventsourcing.utils import Environment
from examples.dogschool import Dog, DogSchool


def test_save_and_get() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    school.add_trick(dog_id, "sit")
    school.add_trick(dog_id, "beg")
    dog = school.repository.get(dog_id)
    assert dog.name == "Fido" and dog.tricks == ["sit", "beg"] and dog.version == 3
    assert dog_id in school.repository
    assert uuid4() not in school.repository


def test_get_at_a_version() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    school.add_trick(dog_id, "sit")
    school.add_trick(dog_id, "beg")
    assert school.repository.get(dog_id, version=1).tricks == []
    assert school.repository.get(dog_id, version=2).tricks == ["sit"]


def test_unknown_id_raises_aggregate_not_found() -> None:
    school = DogSchool()
    missing = uuid4()
    with pytest.raises(AggregateNotFound) as info:
        school.repository.get(missing)
    assert str(missing) in str(info.value)
    assert AggregateNotFound is AggregateNotFoundError


def test_save_records_all_aggregates_atomically() -> None:
    school = DogSchool()
    first, second = Dog("A"), Dog("B")
    second.add_trick("sit")
    recordings = school.save(first, second)
    assert [r.notification.id for r in recordings] == [1, 2, 3]
    assert school.repository.get(second.id).tricks == ["sit"]


def test_saving_a_stale_copy_conflicts_and_records_nothing() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    copy1 = school.repository.get(dog_id)
    copy2 = school.repository.get(dog_id)
    copy1.add_trick("sit")
    school.save(copy1)
    copy2.add_trick("beg")
    fresh = Dog("New")  # saved alongside the stale copy: must not be recorded either
    before = school.notification_log.select(1, 100)
    with pytest.raises(RecordConflictError) as info:
        school.save(fresh, copy2)
    assert isinstance(info.value, IntegrityError)
    assert school.notification_log.select(1, 100) == before
    assert fresh.id not in school.repository
    assert school.repository.get(dog_id).tricks == ["sit"]


def test_notification_log_select() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    for trick in ["a", "b", "c", "d"]:
        school.add_trick(dog_id, trick)
    notifications = school.notification_log.select(start=2, limit=2)
    assert [n.id for n in notifications] == [2, 3]
    assert all(n.originator_id == dog_id for n in notifications)
    assert [n.originator_version for n in notifications] == [2, 3]
    topics = [n.topic for n in school.notification_log.select(1, 10)]
    assert topics[0].endswith("Dog.Registered") and topics[1].endswith("Dog.TrickAdded")
    trick_topic = topics[1]
    filtered = school.notification_log.select(1, 10, topics=[trick_topic])
    assert [n.id for n in filtered] == [2, 3, 4, 5]
    assert [n.id for n in school.notification_log.select(1, 10, stop=3)] == [1, 2, 3]
    with pytest.warns(DeprecationWarning, match="notification_log"):
        assert school.log is school.notification_log  # (the 9.x name, deprecated there)


def test_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    class Configured(Application):
        env = {"A": "class", "B": "class", "C": "class"}

    monkeypatch.setenv("B", "os")
    monkeypatch.setenv("C", "os")
    app = Configured(env={"C": "given"})
    assert app.env.get("A") == "class"
    assert app.env.get("B") == "os"
    assert app.env.get("C") == "given"


def test_environment_keys_prefixed_with_the_application_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOGSCHOOL_SETTING", "mine")
    monkeypatch.setenv("SETTING", "everyone's")
    assert DogSchool().env.get("SETTING") == "mine"
    assert Application().env.get("SETTING") == "everyone's"
    assert Environment("x", {"X_K": "1", "K": "2"}).get("K") == "1"


def test_application_name_defaults_to_class_name() -> None:
    assert DogSchool.name == "DogSchool"

    class Named(Application):
        name = "Other"

    assert Named().name == "Other"


def test_unknown_persistence_module_names_the_value() -> None:
    with pytest.raises(ImportError, match="no_such_store"):
        Application(env={"PERSISTENCE_MODULE": "no_such_store"})


def test_the_default_cache_sees_what_other_processes_wrote(tmp_path) -> None:
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "d.db")}
    here, elsewhere = DogSchool(env=env), DogSchool(env=env)
    assert here.repository.cache is not None  # on by default
    dog_id = here.register_dog("Fido")
    assert here.repository.get(dog_id).tricks == []  # now cached here
    elsewhere.add_trick(dog_id, "sit")
    assert here.repository.get(dog_id).tricks == ["sit"]  # fast-forwarded


def test_a_failed_save_leaves_the_cache_as_recorded() -> None:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    first, second = school.repository.get(dog_id), school.repository.get(dog_id)
    first.add_trick("sit")
    school.save(first)
    second.add_trick("beg")
    with pytest.raises(RecordConflictError):
        school.save(second)
    first.add_trick("roll")  # changed, never saved
    assert school.repository.get(dog_id).tricks == ["sit"]
    got = school.repository.get(dog_id)
    got.tricks.append("not an event")  # a caller's copy is its own
    assert school.repository.get(dog_id).tricks == ["sit"]


def test_cache_settings() -> None:
    assert DogSchool(env={"AGGREGATE_CACHE_MAXSIZE": "off"}).repository.cache is None
    assert DogSchool(env={"AGGREGATE_CACHE_FASTFORWARD": "n"}).repository.cache is None
    with pytest.raises(ValueError, match="AGGREGATE_CACHE_MAXSIZE.*'lots'"):
        DogSchool(env={"AGGREGATE_CACHE_MAXSIZE": "lots"})


def test_copies_of_aggregates_share_nothing_that_can_change() -> None:
    from eventsourcing.application import copy_aggregate

    class Box:
        pass

    dog = Dog("Fido")
    dog.add_trick("sit")
    dog.notes = {"vet": ["monday"], "age": 3}
    dog.alias = dog.tricks  # two names for one list
    assert copy_aggregate(dog) == dog
    dog.box = Box()
    copy = copy_aggregate(dog)
    assert copy is not dog
    copy.tricks.append("beg")
    copy.notes["vet"].append("friday")
    assert dog.tricks == ["sit"] and dog.notes["vet"] == ["monday"]
    assert copy.alias is copy.tricks  # still one list in the copy
    assert copy.box is not dog.box


def test_cached_copies_are_planned_once_and_still_share_nothing_that_can_change() -> None:
    from eventsourcing.application import copy_planned, plan_copying
    from eventsourcing.domain import Aggregate, event

    class Shelf(Aggregate):
        def __init__(self) -> None:
            self.labels: list[str] = []
            self.boxes: list[dict[str, list[str]]] = []
            self.same_labels = self.labels  # two names for one list

        @event("Labelled")
        def label(self, text: str) -> None:
            self.labels.append(text)

        @event("Boxed")
        def box(self, name: str) -> None:
            self.boxes.append({name: []})

    shelf = Shelf()
    shelf.label("a")
    shelf.box("x")
    plan = plan_copying(shelf)
    assert set(plan.shallow) == {"labels", "same_labels"}
    assert "boxes" in plan.deep  # (and the pending events, not immutable values)
    assert not plan.separate  # (a list under two names, and deep copies: a memo is needed)
    copy = copy_planned(shelf, plan)
    assert copy == shelf and copy.same_labels is copy.labels
    copy.boxes[0]["x"].append("pen")
    copy.labels.append("b")
    assert shelf.boxes == [{"x": []}] and shelf.labels == ["a"]

    class Tray(Aggregate):
        def __init__(self) -> None:
            self.labels = ["a"]
            self.sizes = {"a": 1}

    tray = Tray()
    tray.collect_events()  # (as saved: pending events are deep copies)
    tray_plan = plan_copying(tray)
    assert tray_plan.separate and set(tray_plan.shallow) >= {"labels", "sizes"}
    tray_copy = copy_planned(tray, tray_plan)
    assert tray_copy == tray and tray_copy.labels is not tray.labels
    assert tray_copy.sizes is not tray.sizes and tray_copy.id == tray.id
    tray.same = tray.labels  # one list under two names, nothing deep
    shared_plan = plan_copying(tray)
    assert not shared_plan.separate and not shared_plan.deep
    shared_copy = copy_planned(tray, shared_plan)
    assert shared_copy.same is shared_copy.labels and shared_copy.labels is not tray.labels

    app = Application()
    app.save(shelf)
    first = app.repository.get(shelf.id)
    second = app.repository.get(shelf.id)
    first.label("c")
    first.boxes[0]["x"].append("cup")
    assert second.labels == ["a"] and second.boxes == [{"x": []}]
    assert second.same_labels is second.labels
    app.save(first)
    third = app.repository.get(shelf.id)
    assert third.labels == ["a", "c"] and third.version == first.version
    app.close()


def test_copies_pass_by_an_aggregate_classes_own_setattr() -> None:
    from eventsourcing.application import copy_aggregate
    from eventsourcing.domain import Aggregate, event

    class Guarded(Aggregate):
        def __init__(self) -> None:
            self.items: list[str] = []

        @event("Added")
        def add(self, item: str) -> None:
            self.items.append(item)

        def __setattr__(self, name: str, value: object) -> None:
            if name == "__dict__":
                raise AttributeError("no replacing the state wholesale")
            super().__setattr__(name, value)

    guarded = Guarded()
    guarded.add("a")
    copy = copy_aggregate(guarded)
    assert copy == guarded and copy.items is not guarded.items


def test_the_aggregate_cache_finds_ids_by_value_and_forgets_the_least_recent() -> None:
    from uuid import UUID, uuid4

    from eventsourcing.application import LRUCache

    cache = LRUCache(maxsize=2)
    a, b, c = uuid4(), uuid4(), uuid4()
    cache.put(a, "A")
    cache.put(b, "B")
    assert cache.get(UUID(a.hex)) == "A"  # an equal id, another object; a is now the latest
    cache.put(c, "C")  # b is forgotten, the least recently used
    assert (cache.get(a), cache.get(b), cache.get(c)) == ("A", None, "C")
    cache.discard(UUID(str(c)))
    assert cache.get(c) is None
    cache.put("not a UUID", "D")  # held as it is
    assert cache.get("not a UUID") == "D"
    cache.clear()
    assert cache.get(a) is None
