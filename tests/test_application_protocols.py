"""The application with aggregates and events of any class: protocols, not base classes.

Each style of aggregate here has its own event classes with their own ``mutate()``
(none of them derives from our domain classes), so these tests depend only on the
application layer: a plain class, a ``__slots__`` class, an immutable frozen dataclass,
an immutable pydantic model, and an immutable one whose events have no ``mutate()``
(reconstructed by a projector function).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID, uuid4

import pytest

from eventsourcing.application import (
    AggregateNotFound,
    Application,
    EnvType,
    EventSourcedLog,
    LogEvent,
    MutableOrImmutableAggregate,
    ProcessingEvent,
    ProgrammingError,
    ProjectorFunction,
    Repository,
    project_aggregate,
)
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoding,
    UUIDAsHex,
)
from eventsourcing.system import ProcessApplication, SingleThreadedRunner, System
from eventsourcing.utils import EnvType as UtilsEnvType
from examples.dogschool import Dog, DogSchool


def now() -> datetime:
    return datetime.now(timezone.utc)


# -- the events' fields (each style's events add their own mutate(), or none) -------------


@dataclass(frozen=True)
class Registered:
    originator_id: UUID
    originator_version: int
    timestamp: datetime
    name: str


@dataclass(frozen=True)
class TrickAdded:
    originator_id: UUID
    originator_version: int
    timestamp: datetime
    trick: str


# -- a plain mutable class, with its own events ------------------------------------------


class MutableDog:
    """The methods of the plain and the slotted dog (no ``__dict__`` of its own)."""

    __slots__ = ()
    registered: ClassVar[Any]  # the style's Registered event class

    def __init__(self, id: UUID, version: int, timestamp: datetime, name: str) -> None:
        self.id = id
        self.version = version
        self.created_on = timestamp
        self.modified_on = timestamp
        self.name = name
        self.tricks: list[str] = []
        self.pending: list[Any] = []

    @classmethod
    def register(cls, name: str) -> Any:
        event = cls.registered(uuid4(), 1, now(), name)
        dog = event.mutate(None)
        dog.pending.append(event)
        return dog

    def add_trick(self, trick: str) -> None:
        event = PlainTrickAdded(self.id, self.version + 1, now(), trick)
        event.mutate(self)
        self.pending.append(event)

    @property
    def pending_events(self) -> list[Any]:
        return list(self.pending)

    def collect_events(self) -> list[Any]:
        collected, self.pending = self.pending, []
        return collected


class PlainDog(MutableDog):
    pass


@dataclass(frozen=True)
class PlainRegistered(Registered):
    def mutate(self, _: Any) -> PlainDog:
        return PlainDog(self.originator_id, self.originator_version, self.timestamp, self.name)


@dataclass(frozen=True)
class PlainTrickAdded(TrickAdded):
    def mutate(self, dog: Any) -> Any:
        dog.tricks.append(self.trick)
        dog.version = self.originator_version
        dog.modified_on = self.timestamp
        return dog


# -- a class with __slots__ (no __dict__) -----------------------------------------------


class SlottedDog(MutableDog):
    __slots__ = ("id", "version", "created_on", "modified_on", "name", "tricks", "pending")


@dataclass(frozen=True)
class SlottedRegistered(PlainRegistered):
    def mutate(self, _: Any) -> SlottedDog:
        return SlottedDog(self.originator_id, self.originator_version, self.timestamp, self.name)


PlainDog.registered = PlainRegistered
SlottedDog.registered = SlottedRegistered


# -- an immutable frozen dataclass: events make new aggregates ---------------------------


@dataclass(frozen=True)
class FrozenDog:
    id: UUID
    version: int
    created_on: datetime
    modified_on: datetime
    name: str
    tricks: tuple[str, ...]


@dataclass(frozen=True)
class FrozenRegistered(Registered):
    def mutate(self, _: Any) -> FrozenDog:
        stamp = self.timestamp
        return FrozenDog(self.originator_id, self.originator_version, stamp, stamp, self.name, ())


@dataclass(frozen=True)
class FrozenTrickAdded(TrickAdded):
    def mutate(self, dog: FrozenDog) -> FrozenDog:
        return replace(
            dog,
            version=self.originator_version,
            modified_on=self.timestamp,
            tricks=(*dog.tricks, self.trick),
        )


# -- immutable, and events without mutate(): a projector reconstructs it ------------------


@dataclass(frozen=True)
class ProjectedDog:
    id: UUID
    version: int
    created_on: datetime
    modified_on: datetime
    name: str
    tricks: tuple[str, ...]

    @dataclass(frozen=True)
    class Snapshot:
        originator_id: UUID
        originator_version: int
        timestamp: datetime
        state: dict[str, Any]

        @classmethod
        def take(cls, dog: ProjectedDog) -> ProjectedDog.Snapshot:
            state = {"name": dog.name, "tricks": list(dog.tricks), "created_on": dog.created_on}
            state["modified_on"] = dog.modified_on
            return cls(dog.id, dog.version, now(), state)


@dataclass(frozen=True)
class ProjectedRegistered(Registered):
    pass


@dataclass(frozen=True)
class ProjectedTrickAdded(TrickAdded):
    pass


def project_dog(dog: ProjectedDog | None, events: Iterable[Any]) -> ProjectedDog | None:
    for e in events:
        if isinstance(e, ProjectedDog.Snapshot):
            s = e.state
            dog = ProjectedDog(
                e.originator_id,
                e.originator_version,
                s["created_on"],
                s["modified_on"],
                s["name"],
                tuple(s["tricks"]),
            )
        elif isinstance(e, ProjectedRegistered):
            stamp = e.timestamp
            dog = ProjectedDog(e.originator_id, e.originator_version, stamp, stamp, e.name, ())
        else:
            assert dog is not None and isinstance(e, ProjectedTrickAdded)
            dog = replace(
                dog,
                version=e.originator_version,
                modified_on=e.timestamp,
                tricks=(*dog.tricks, e.trick),
            )
    return dog


# -- the styles, driven the same way -------------------------------------------------------


class Style:
    """How an application registers a dog and teaches it a trick in one style."""

    def register(self, app: Application[UUID], name: str) -> UUID:
        raise NotImplementedError

    def add_trick(self, app: Application[UUID], dog_id: UUID, trick: str) -> None:
        raise NotImplementedError

    def get(self, app: Application[UUID], dog_id: UUID, version: int | None = None) -> Any:
        return app.repository.get(dog_id, version=version)

    def exists(self, app: Application[UUID], dog_id: UUID) -> bool:
        return dog_id in app.repository


class MutableStyle(Style):
    def __init__(self, aggregate_class: Any) -> None:
        self.aggregate_class = aggregate_class

    def register(self, app: Application[UUID], name: str) -> UUID:
        dog = self.aggregate_class.register(name)
        app.save(dog)
        return dog.id  # type: ignore[no-any-return]

    def add_trick(self, app: Application[UUID], dog_id: UUID, trick: str) -> None:
        dog = app.repository.get(dog_id)
        dog.add_trick(trick)
        app.save(dog)


class ImmutableStyle(Style):
    """Events made by functions; the aggregate is saved with its new events."""

    def __init__(self, registered: Any, trick_added: Any) -> None:
        self.registered = registered
        self.trick_added = trick_added

    def register(self, app: Application[UUID], name: str) -> UUID:
        event = self.registered(
            originator_id=uuid4(), originator_version=1, timestamp=now(), name=name
        )
        app.save(event.mutate(None), event)
        return event.originator_id  # type: ignore[no-any-return]

    def add_trick(self, app: Application[UUID], dog_id: UUID, trick: str) -> None:
        dog = app.repository.get(dog_id)
        event = self.trick_added(
            originator_id=dog.id, originator_version=dog.version + 1, timestamp=now(), trick=trick
        )
        app.save(event.mutate(dog), event)


class ProjectedStyle(Style):
    def register(self, app: Application[UUID], name: str) -> UUID:
        event = ProjectedRegistered(uuid4(), 1, now(), name)
        app.save(project_dog(None, [event]), event)
        return event.originator_id

    def add_trick(self, app: Application[UUID], dog_id: UUID, trick: str) -> None:
        dog = app.repository.get(dog_id, projector_func=project_dog)
        event = ProjectedTrickAdded(dog.id, dog.version + 1, now(), trick)
        app.save(project_dog(dog, [event]), event)

    def get(self, app: Application[UUID], dog_id: UUID, version: int | None = None) -> Any:
        return app.repository.get(dog_id, version=version, projector_func=project_dog)

    def exists(self, app: Application[UUID], dog_id: UUID) -> bool:
        try:
            self.get(app, dog_id)
        except AggregateNotFound:
            return False
        return True


def pydantic_style() -> Style:
    pydantic = pytest.importorskip("pydantic")

    class Immutable(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    class PydanticDog(Immutable):
        id: UUID
        version: int
        created_on: datetime
        modified_on: datetime
        name: str
        tricks: tuple[str, ...]

    class PydanticRegistered(Immutable):
        originator_id: UUID
        originator_version: int
        timestamp: datetime
        name: str

        def mutate(self, _: Any) -> PydanticDog:
            stamp = self.timestamp
            return PydanticDog(
                id=self.originator_id,
                version=self.originator_version,
                created_on=stamp,
                modified_on=stamp,
                name=self.name,
                tricks=(),
            )

    class PydanticTrickAdded(Immutable):
        originator_id: UUID
        originator_version: int
        timestamp: datetime
        trick: str

        def mutate(self, dog: PydanticDog) -> PydanticDog:
            return dog.model_copy(
                update={
                    "version": self.originator_version,
                    "modified_on": self.timestamp,
                    "tricks": (*dog.tricks, self.trick),
                }
            )

    # Topics name classes by module and qualified name: make these resolvable.
    for cls in (PydanticDog, PydanticRegistered, PydanticTrickAdded):
        cls.__qualname__ = cls.__name__
        globals()[cls.__name__] = cls
    return ImmutableStyle(PydanticRegistered, PydanticTrickAdded)


STYLES = {
    "plain": lambda: MutableStyle(PlainDog),
    "slots": lambda: MutableStyle(SlottedDog),
    "frozen": lambda: ImmutableStyle(FrozenRegistered, FrozenTrickAdded),
    "pydantic": pydantic_style,
    "projected": ProjectedStyle,
}

CACHES = {
    "no cache": {"AGGREGATE_CACHE_MAXSIZE": "off"},
    "default cache": {},
    "unlimited cache": {"AGGREGATE_CACHE_MAXSIZE": "0"},
    "cache of one": {"AGGREGATE_CACHE_MAXSIZE": "1"},
    "cache without fast-forward": {
        "AGGREGATE_CACHE_MAXSIZE": "10",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
    },
}


def observe(style: Style, env: dict[str, str]) -> list[Any]:
    """Run the same commands and queries; return what a user of the application sees."""
    app: Application[UUID] = Application(env=env)
    seen: list[Any] = []

    def look(dog_id: UUID, version: int | None = None) -> None:
        dog = style.get(app, dog_id, version)
        seen.append((type(dog).__name__, dog.id == dog_id, dog.version, dog.name, list(dog.tricks)))
        seen.append(dog.created_on <= dog.modified_on)

    fido = style.register(app, "Fido")
    rex = style.register(app, "Rex")
    for trick in ("sit", "roll"):
        style.add_trick(app, fido, trick)
        look(fido)
    style.add_trick(app, rex, "fetch")
    look(fido)
    look(rex)
    look(fido, version=2)
    seen.append(style.exists(app, fido))
    seen.append(style.exists(app, uuid4()))
    # What a caller does to its copy stays its own.
    dog = style.get(app, fido)
    if isinstance(dog.tricks, list):
        dog.tricks.append("never saved")
    look(fido)
    app.close()
    return seen


@pytest.mark.parametrize("style_name", STYLES)
def test_every_style_behaves_the_same_with_and_without_a_cache(style_name: str) -> None:
    style = STYLES[style_name]()
    without_cache = observe(style, CACHES["no cache"])
    assert without_cache[0][0].endswith("Dog") and without_cache[0][2:] == (2, "Fido", ["sit"])
    for cache_name, env in CACHES.items():
        assert observe(style, env) == without_cache, cache_name


def test_the_cache_copies_other_aggregates_as_deepcopy_does() -> None:
    app: Application[UUID] = Application(env={"AGGREGATE_CACHE_MAXSIZE": "10"})
    dog = SlottedDog.register("Fido")
    app.save(dog)
    first, second = app.repository.get(dog.id), app.repository.get(dog.id)
    assert type(first) is SlottedDog and first is not second
    assert first.tricks is not second.tricks and first.tricks == []


class CountedDog(PlainDog):
    """Says how it is copied: the cache must copy it that way."""

    copies = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> CountedDog:
        CountedDog.copies += 1
        new = CountedDog(self.id, self.version, self.created_on, self.name)
        new.tricks = list(self.tricks)
        return new


def test_the_cache_copies_aggregates_that_say_how_their_own_way() -> None:
    # (Without fast-forwarding, the cache keeps what is saved.)
    app: Application[UUID] = Application(
        env={"AGGREGATE_CACHE_MAXSIZE": "10", "AGGREGATE_CACHE_FASTFORWARD": "n"}
    )
    dog = CountedDog(uuid4(), 1, now(), "Fido")
    dog.pending.append(PlainRegistered(dog.id, 1, dog.created_on, "Fido"))
    app.save(dog)  # (its events make a PlainDog on replay; the cache keeps a CountedDog)
    copies = CountedDog.copies
    got = app.repository.get(dog.id)
    assert type(got) is CountedDog and CountedDog.copies == copies + 1


def test_get_takes_the_documented_cache_options() -> None:
    app = DogSchool()
    dog_id = app.register_dog("Fido")
    first = app.repository.get(dog_id, fastforward_skipping=True)
    first.tricks.append("never saved")  # (a copy of its own)
    assert app.repository.get(dog_id).tricks == []
    # Without copying, the cached aggregate itself (see test_cache_options).
    shared = app.repository.get(dog_id, deepcopy_from_cache=False, fastforward_skipping=True)
    assert shared is app.repository.get(dog_id, deepcopy_from_cache=False)
    repository = Repository(app.events, fastforward_skipping=True, deepcopy_from_cache=False)
    assert (repository.fastforward_skipping, repository.deepcopy_from_cache) == (True, False)
    assert repository.get(dog_id).name == "Fido"


# -- saving events and aggregates of any class ------------------------------------------


def test_save_takes_events_of_any_class_and_aggregates_without_collect_events() -> None:
    app: Application[UUID] = Application()
    event = FrozenRegistered(uuid4(), 1, now(), "Fido")
    dog = event.mutate(None)
    recordings = app.save(dog, event)
    assert [r.domain_event for r in recordings] == [event]
    [notification] = app.notification_log.select(1, 10)
    assert notification.originator_id == dog.id
    assert notification.topic.endswith(":FrozenRegistered")
    assert app.repository.get(dog.id) == dog


def test_a_processing_event_collects_events_and_aggregates_of_any_class() -> None:
    processing_event: ProcessingEvent[UUID] = ProcessingEvent()
    plain = PlainDog.register("Fido")
    registered = FrozenRegistered(uuid4(), 1, now(), "Rex")
    frozen = registered.mutate(None)
    processing_event.collect_events(plain, frozen, registered, None)
    assert [type(e) for e in processing_event.events] == [PlainRegistered, FrozenRegistered]
    assert processing_event.aggregates == {plain.id: plain, frozen.id: frozen}
    assert plain.pending_events == []


def test_save_names_what_is_neither_an_aggregate_nor_an_event() -> None:
    with pytest.raises(TypeError, match=r"Cannot save 'Fido': neither an aggregate"):
        Application().save("Fido")


# -- projectors and snapshots -------------------------------------------------------------


class ProjectedDogSchool(Application[UUID]):
    is_snapshotting_enabled = True


def test_get_with_a_projector_gives_it_none_then_the_snapshot_and_later_events() -> None:
    app = ProjectedDogSchool(env={"AGGREGATE_CACHE_MAXSIZE": "off"})
    style = ProjectedStyle()
    dog_id = style.register(app, "Fido")
    style.add_trick(app, dog_id, "sit")
    app.take_snapshot(dog_id, projector_func=project_dog)
    style.add_trick(app, dog_id, "roll")
    calls: list[tuple[Any, list[Any]]] = []

    def spy(dog: ProjectedDog | None, events: Iterable[Any]) -> ProjectedDog | None:
        events = list(events)
        calls.append((dog, events))
        return project_dog(dog, events)

    dog = app.repository.get(dog_id, projector_func=spy)
    assert (dog.version, dog.tricks) == (3, ("sit", "roll"))
    [(given, events)] = calls
    assert given is None
    assert [type(e).__name__ for e in events] == ["Snapshot", "ProjectedTrickAdded"]
    assert [e.originator_version for e in events] == [2, 3]


class IntervalDogSchool(Application[UUID]):
    snapshotting_intervals = {ProjectedDog: 1}


def test_snapshotting_an_aggregate_whose_events_cannot_mutate_needs_a_projector() -> None:
    app = IntervalDogSchool()
    with pytest.raises(ProgrammingError, match="Cannot take snapshot") as caught:
        ProjectedStyle().register(app, "Fido")
    assert "ProjectedDog" in str(caught.value)
    assert "ProjectedRegistered" in str(caught.value)
    assert "IntervalDogSchool.snapshotting_projectors" in str(caught.value)


class ProjectingDogSchool(IntervalDogSchool):
    snapshotting_projectors = {ProjectedDog: project_dog}


def test_snapshotting_projectors_reconstruct_aggregates_for_snapshots() -> None:
    app = ProjectingDogSchool()
    style = ProjectedStyle()
    dog_id = style.register(app, "Fido")
    style.add_trick(app, dog_id, "sit")
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(dog_id))
    assert [type(s) for s in snapshots] == [ProjectedDog.Snapshot] * 2
    assert [(s.originator_version, s.state["tricks"]) for s in snapshots] == [(1, []), (2, ["sit"])]
    assert style.get(app, dog_id).tricks == ("sit",)


class EveryOtherVersion(DogSchool):
    snapshotting_intervals = {Dog: 2}


class PlainEveryOtherVersion(Application[UUID]):
    snapshotting_intervals = {PlainDog: 2}
    snapshot_class = ProjectedDog.Snapshot  # (takes any aggregate with those attributes)


def test_one_save_crossing_intervals_snapshots_at_each_of_them() -> None:
    app = EveryOtherVersion()
    dog = Dog("Fido")
    for trick in ("sit", "roll", "beg", "fetch"):
        dog.add_trick(trick)  # versions 2-5, saved with the creation at once
    app.save(dog)
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(dog.id))
    assert [type(s) for s in snapshots] == [Snapshot, Snapshot]
    assert [(s.originator_version, s.state["tricks"]) for s in snapshots] == [
        (2, ["sit"]),
        (4, ["sit", "roll", "beg"]),
    ]
    assert app.repository.get(dog.id, version=4).tricks == ["sit", "roll", "beg"]


def test_interval_snapshots_of_other_aggregates_use_their_events() -> None:
    app = PlainEveryOtherVersion()
    dog = PlainDog.register("Fido")
    for trick in ("sit", "roll"):
        dog.add_trick(trick)
    app.save(dog)
    assert app.snapshots is not None
    [snapshot] = app.snapshots.get(dog.id)
    assert (snapshot.originator_version, snapshot.state["tricks"]) == (2, ["sit"])


def test_the_default_projector_is_each_events_mutate() -> None:
    app: Application[UUID] = Application()
    dog = PlainDog.register("Fido")
    dog.add_trick("sit")
    app.save(dog)
    got = app.repository.get(dog.id, projector_func=project_aggregate)
    assert (got.version, got.tricks) == (2, ["sit"])
    assert Application.project_aggregate is project_aggregate


# -- the cache setting ---------------------------------------------------------------------


def test_cache_maxsize_zero_is_a_cache_without_limit_and_off_turns_it_off() -> None:
    unlimited = DogSchool(env={"AGGREGATE_CACHE_MAXSIZE": "0"}).repository.cache
    assert unlimited is not None
    for _ in range(1_500):
        unlimited.put(uuid4(), object())
    assert len(unlimited._items) == 1_500
    assert DogSchool(env={"AGGREGATE_CACHE_MAXSIZE": "off"}).repository.cache is None
    assert DogSchool(env={"AGGREGATE_CACHE_MAXSIZE": "OFF"}).repository.cache is None
    sized = DogSchool(env={"AGGREGATE_CACHE_MAXSIZE": "5"}).repository.cache
    assert sized is not None and sized.maxsize == 5
    with pytest.raises(ValueError, match=r"AGGREGATE_CACHE_MAXSIZE .* not '-1'"):
        DogSchool(env={"AGGREGATE_CACHE_MAXSIZE": "-1"})


def test_saving_events_without_their_aggregate_does_not_leave_a_stale_cached_copy() -> None:
    env = {"AGGREGATE_CACHE_MAXSIZE": "10", "AGGREGATE_CACHE_FASTFORWARD": "n"}
    app: Application[UUID] = Application(env=env)
    registered = FrozenRegistered(uuid4(), 1, now(), "Fido")
    app.save(registered.mutate(None), registered)
    dog = app.repository.get(registered.originator_id)
    app.save(FrozenTrickAdded(dog.id, 2, now(), "sit"))  # the event alone
    assert app.repository.get(dog.id).tricks == ("sit",)


# -- a follower's repository -----------------------------------------------------------------


class Kennel(ProcessApplication):
    """Keeps a slotted dog per registered plain dog, and teaches it every trick."""

    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        if isinstance(domain_event, PlainRegistered):
            dog = SlottedDog(domain_event.originator_id, 1, now(), domain_event.name)
            dog.pending.append(SlottedRegistered(dog.id, 1, dog.created_on, dog.name))
        else:
            dog = self.repository.get(domain_event.originator_id)
            dog.add_trick(domain_event.trick)
        processing_event.collect_events(dog)


class PlainSchool(Application[UUID]):
    pass


def test_a_follower_keeps_and_reuses_aggregates_of_any_class() -> None:
    system = System(pipes=[[PlainSchool, Kennel]])
    with SingleThreadedRunner(system) as runner:
        school = runner.get(PlainSchool)
        dog = PlainDog.register("Fido")
        dog.add_trick("sit")
        school.save(dog)  # both events in one batch: the second finds the first's dog
        dog.add_trick("roll")
        school.save(dog)
        kennel = runner.get(Kennel)
        kept = kennel.repository.get(dog.id)
        assert (type(kept), kept.version, kept.tricks) == (SlottedDog, 3, ["sit", "roll"])


class ProjectingKennel(ProcessApplication):
    """Keeps an immutable, projected dog per plain dog (events without mutate())."""

    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        if isinstance(domain_event, PlainRegistered):
            event: Any = ProjectedRegistered(domain_event.originator_id, 1, now(), "kept")
            dog = project_dog(None, [event])
        else:
            dog = self.repository.get(domain_event.originator_id, projector_func=project_dog)
            event = ProjectedTrickAdded(dog.id, dog.version + 1, now(), domain_event.trick)
            dog = project_dog(dog, [event])
        processing_event.collect_events(dog, event)


def test_a_follower_gives_a_batchs_own_aggregates_to_gets_with_a_projector() -> None:
    system = System(pipes=[[PlainSchool, ProjectingKennel]])
    with SingleThreadedRunner(system) as runner:
        dog = PlainDog.register("Fido")
        dog.add_trick("sit")
        dog.add_trick("roll")
        runner.get(PlainSchool).save(dog)  # three events in one batch
        kept = runner.get(ProjectingKennel).repository.get(dog.id, projector_func=project_dog)
        assert (kept.version, kept.tricks) == (3, ("sit", "roll"))


# -- ids ----------------------------------------------------------------------------------------


def test_a_uuid_and_its_string_form_find_the_same_aggregate(persistence_env: EnvType) -> None:
    app = DogSchool(env=persistence_env)
    dog_id = app.register_dog("Fido")
    assert app.repository.get(str(dog_id)).name == "Fido"
    assert str(dog_id) in app.repository
    assert str(uuid4()) not in app.repository
    with pytest.raises(AggregateNotFound):
        app.repository.get(str(uuid4()))
    for bad in (123, None):
        with pytest.raises(TypeError, match=rf"Aggregate id {bad!r} \(.*\) is neither"):
            app.repository.get(bad)  # type: ignore[call-overload]
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        # In memory, ids of either kind are kept (string ids need no setting there).
        with pytest.raises(AggregateNotFound):
            app.repository.get("not-a-uuid")
    else:
        with pytest.raises(TypeError, match="set ORIGINATOR_ID_TYPE=text for string ids"):
            app.repository.get("not-a-uuid")


def test_text_id_stores_take_strings_and_the_string_form_of_uuids() -> None:
    repository: Repository[str] = Repository(DogSchool().events, id_type=str)
    dog_id = uuid4()
    assert repository.store_id(dog_id) == str(dog_id)
    assert repository.store_id("dog-1") == "dog-1"
    with pytest.raises(TypeError, match=r"Aggregate id 7 \(int\) is neither a str nor a UUID"):
        repository.store_id(7)


def test_the_id_type_is_the_originator_id_type_setting() -> None:
    assert DogSchool().repository.id_type is UUID
    assert DogSchool(env={"ORIGINATOR_ID_TYPE": "uuid"}).repository.id_type is UUID


# -- names, generics and the context manager ------------------------------------------------------


def test_application_is_a_context_manager_that_closes_on_exit() -> None:
    with DogSchool() as app:
        assert isinstance(app, DogSchool)
        assert not app.closing.is_set()
    assert app.closing.is_set()


def test_generic_classes_take_their_type_arguments_at_run_time() -> None:
    class School(Application[UUID]):
        pass

    assert School.name == "School"
    assert isinstance(Application[UUID](), Application)
    assert Repository[UUID] is not None and ProcessingEvent[UUID] is not None
    log: EventSourcedLog[LogEvent] = EventSourcedLog[LogEvent](School().events, uuid4(), LogEvent)
    assert log.get_last() is None
    assert ProjectorFunction[ProjectedDog, Any] is not None
    assert MutableOrImmutableAggregate[UUID] is not None
    assert EnvType is UtilsEnvType


class LoggedId(LogEvent):
    dog_id: UUID


def test_an_event_sourced_log_of_log_events() -> None:
    app = DogSchool()
    log = EventSourcedLog(app.events, uuid4(), LoggedId)
    first = log.trigger_event(dog_id=uuid4())
    app.save(first)
    second = log.trigger_event(dog_id=uuid4())
    app.save(second)
    assert second.originator_version == 2
    assert [e.dog_id for e in log.get()] == [first.dog_id, second.dog_id]


class RecordingTranscoder(JSONTranscoder):
    def __init__(self) -> None:
        self.registered: list[type] = []
        super().__init__()
        self.registered.clear()  # (what the transcoder itself knows is not the question)

    def register(self, transcoding: Transcoding) -> None:
        self.registered.append(type(transcoding))
        super().register(transcoding)


def test_register_transcodings_registers_uuid_decimal_and_datetime_harmlessly_twice() -> None:
    transcoder = RecordingTranscoder()
    app = DogSchool()
    app.register_transcodings(transcoder)
    assert transcoder.registered == [UUIDAsHex, DecimalAsStr, DatetimeAsISO]
    app.register_transcodings(transcoder)
    value = {"id": uuid4(), "amount": Decimal("1.50"), "at": now()}
    assert transcoder.decode(transcoder.encode(value)) == value


TYPED_PROGRAM = """
from uuid import UUID
from typing import Any, ClassVar, Iterable
from eventsourcing.application import (
    Application,
    EventSourcedLog,
    LogEvent,
    MutableOrImmutableAggregate,
    ProjectorFunction,
    Repository,
)

class Dog:
    id: UUID
    version: int
    name: str

def project(dog: Dog | None, events: Iterable[Any]) -> Dog | None:
    return dog

class School(Application[UUID]):
    snapshotting_intervals: ClassVar[dict[type[MutableOrImmutableAggregate[UUID]], int]] = {
        Dog: 5
    }
    snapshotting_projectors: ClassVar[
        dict[type[MutableOrImmutableAggregate[UUID]], ProjectorFunction[Any, Any]]
    ] = {Dog: project}

    def name_of(self, dog_id: UUID) -> str:
        dog = self.repository.get(dog_id, projector_func=project)
        reveal_type(dog)
        return dog.name

class Kennel(Application[UUID]):
    snapshotting_intervals = {Dog: 2}

repository: Repository[UUID] = School().repository
log: EventSourcedLog[LogEvent] = EventSourcedLog(School().events, UUID(int=1), LogEvent)
reveal_type(log.get_last())
School().repository.get(UUID(int=1), projector_func=project).nmae
"""


def test_typed_programs_check_with_mypy(tmp_path: Path) -> None:
    program = tmp_path / "typed_program.py"
    program.write_text(textwrap.dedent(TYPED_PROGRAM))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(program)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    lines = [
        line.split(": ", 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith(str(program))
    ]
    assert lines == [
        'note: Revealed type is "typed_program.Dog"',
        'note: Revealed type is "eventsourcing.domain.LogEvent | None"',
        'error: "Dog" has no attribute "nmae"  [attr-defined]',
    ], result.stdout


def test_the_documented_names_of_mutators_and_the_cache() -> None:
    from eventsourcing import application

    assert {"Cache", "MutatorFunction"} <= set(application.__all__)
    assert application.Cache is application.LRUCache
    # A generic alias: subscripted in annotations, as the documented API's users do.
    assert application.MutatorFunction[Any, Any] is not None
