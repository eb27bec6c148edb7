"""Applications of dynamic consistency boundaries (compatible with the
``eventsourcing.dcb.application`` API of eventsourcing 9.5).

A :class:`DCBApplication` builds its DCB recorder from its environment, as an
``Application`` builds its recorder (``PERSISTENCE_MODULE`` and the store's settings,
each of which may be prefixed by the application's name). With ``MAPPER_TOPIC`` (the
topic of a :class:`~eventsourcing.dcb.persistence.DCBMapper` class, for example
``eventsourcing.dcb.msgpack:MessagePackMapper``) it also has an event store and a
:class:`DCBRepository` of perspectives.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Generic, cast

from eventsourcing.dcb.api import DCBRecorder
from eventsourcing.dcb.domain import (
    InitialDecision,
    Perspective,
    Selector,
    Tagged,
    TDecision,
    TGroup,
    TPerspective,
    TSlice,
)
from eventsourcing.dcb.persistence import (
    DCBEventStore,
    DCBInfrastructureFactory,
    DCBMapper,
    NotFoundError,
)
from eventsourcing.domain import ProgrammingError
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment, NamedAfterClass, resolve_topic

__all__ = ["DCBApplication", "DCBRepository"]

EnvType = Mapping[str, str]

MAPPER_TOPIC = "MAPPER_TOPIC"

# The attributes that only an application with a mapper has.
_MAPPER_ATTRIBUTES = frozenset(["mapper", "events", "repository"])


class DCBRepository(Generic[TDecision]):
    """Reconstructs perspectives from their decisions and saves their new ones with
    their consistency boundary as the append condition."""

    def __init__(self, eventstore: DCBEventStore[TDecision]) -> None:
        self.eventstore = eventstore

    def save(self, p: Perspective[TDecision]) -> int:
        """Append the perspective's new decisions unless a decision its boundary
        selects was recorded after its last known position (an IntegrityError: then
        nothing is recorded, and the new decisions are given back to the perspective).
        Returns the position of the last decision recorded, which becomes the
        perspective's last known position: it can make and save more decisions."""
        new_decisions = p.collect_events()
        try:
            position = self.eventstore.append(
                events=new_decisions,
                cb=p.consistency_boundary(),
                after=p.last_known_position,
            )
        except BaseException:
            p.new_decisions[:0] = new_decisions
            raise
        if new_decisions:
            # No decision in its boundary was recorded between its last known position
            # and its own: the perspective is as up to date as this position.
            p.last_known_position = position
        return position

    def get(self, enduring_object_id: str) -> Any:
        """The enduring object with this ID, from its recorded decisions; NotFoundError
        if none is recorded."""
        events = self.eventstore.read([Selector(tags=[enduring_object_id])])
        obj: Any = None
        for tagged in events:
            obj = tagged.decision.mutate(obj)
        if obj is None:
            raise NotFoundError(f"enduring object {enduring_object_id!r} not found")
        obj.last_known_position = events.head
        return obj

    def get_many(self, *enduring_object_ids: str) -> list[Any]:
        """The enduring objects with these IDs, read together, in the order given
        (None for each one not found)."""
        events = self.eventstore.read([Selector(tags=[i]) for i in enduring_object_ids])
        objs: dict[str, Any] = dict.fromkeys(enduring_object_ids)
        for tagged in events:
            _apply_to_each_tagged(tagged, objs)
        head = events.head
        for obj in objs.values():
            if obj is not None:
                obj.last_known_position = head
        return [objs[i] for i in enduring_object_ids]

    def get_group(self, cls: type[TGroup], *enduring_object_ids: str) -> TGroup:
        """A group of class ``cls`` made with the enduring objects with these IDs
        (None for each not found), as of one read."""
        enduring_objects = self.get_many(*enduring_object_ids)
        group = cls(*enduring_objects)
        positions = [o.last_known_position for o in enduring_objects if o is not None]
        known = [p for p in positions if p is not None]
        group.last_known_position = max(known) if known else None
        return group

    def advance(self, p: TPerspective) -> TPerspective:
        """Apply to ``p`` the decisions its boundary selects recorded after its last
        known position, which becomes the head of the store."""
        events = self.eventstore.read(cb=p.consistency_boundary(), after=p.last_known_position)
        for tagged in events:
            tagged.decision.mutate(p)
        head = events.head
        if head is not None:
            p.last_known_position = head
        return p


def _apply_to_each_tagged(tagged: Tagged[Any], objs: dict[str, Any]) -> None:
    """Apply a decision to each enduring object (of those asked for) that it is tagged
    with; an initial decision makes the object."""
    decision = tagged.decision
    is_initial = isinstance(decision, InitialDecision)
    for tag in tagged.tags:
        if tag not in objs:
            continue
        obj = objs[tag]
        if obj is None:
            if not is_initial or not _makes_object_with_id(decision, tag):
                continue
        objs[tag] = decision.mutate(obj)


def _makes_object_with_id(decision: InitialDecision, tag: str) -> bool:
    # An initial decision tagged with several IDs makes only the object it names.
    fields = decision.as_dict()
    try:
        cls = resolve_topic(fields["originator_topic"])
    except KeyError:
        return True
    return bool(fields.get(decision.id_attr_name(cls), tag) == tag)


class DCBApplication(NamedAfterClass):
    """An application of DCB: a recorder built from the environment, and with
    ``MAPPER_TOPIC`` an event store and a repository of perspectives."""

    name = "DCBApplication"
    env: EnvType = {"PERSISTENCE_MODULE": "eventsourcing.dcb.popo"}

    factory: InfrastructureFactory
    recorder: DCBRecorder
    mapper: DCBMapper[Any]
    events: DCBEventStore[Any]
    repository: DCBRepository[Any]

    def __init__(self, env: EnvType | None = None) -> None:
        self.env = self.construct_env(self.name, env)
        self.factory = self.construct_factory()
        self.recorder = self.construct_recorder()
        mapper_topic = self.env.get(MAPPER_TOPIC)
        if mapper_topic:
            self.mapper = self.construct_mapper(mapper_topic)
            self.events = DCBEventStore(self.mapper, self.recorder)
            self.repository = DCBRepository(self.events)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set: say why these are missing.
        if name in _MAPPER_ATTRIBUTES:
            raise AttributeError(
                f"{type(self).__name__} has no {name}: set MAPPER_TOPIC to the topic of a "
                "DCBMapper class (e.g. 'eventsourcing.dcb.msgpack:MessagePackMapper')"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The settings: the given ``env`` over ``os.environ`` over the class's ``env``."""
        return Environment.for_application(name, type(self).env, env)

    def construct_factory(self) -> InfrastructureFactory:
        env = cast(Environment, self.env)
        return DCBInfrastructureFactory.construct(env, application_name=self.name)

    def construct_recorder(self) -> DCBRecorder:
        return self.factory.dcb_recorder()

    def construct_mapper(self, topic: str) -> DCBMapper[Any]:
        mapper_class = resolve_topic(topic)
        if not (isinstance(mapper_class, type) and issubclass(mapper_class, DCBMapper)):
            raise ProgrammingError(
                f"MAPPER_TOPIC {topic!r} does not name a DCBMapper class: {mapper_class!r}"
            )
        return mapper_class()

    def do(self, s: TSlice) -> TSlice:
        """Bring the slice up to date (if it projects decisions), execute it, and save
        the decisions it made."""
        if type(s).do_projection:
            s = self.repository.advance(s)
        s.execute()
        if s.new_decisions:
            self.repository.save(s)
        return s

    def close(self) -> None:
        self.factory.close()

    def __enter__(self) -> DCBApplication:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()
