"""The documented 9.x surface of persistence, topics and dispatch that code written
against it relies on: forward references in policies, renamed packages, bare
transcoders and their errors, factory discovery, names and generics."""

from __future__ import annotations

import pytest

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event

# -- dispatch: forward references -----------------------------------------------------


class Kennel:
    """A policy whose registrations name an aggregate defined below it."""

    @singledispatchmethod
    def policy(self, domain_event: object) -> str:
        return "ignored"

    @policy.register
    def _(self, domain_event: Puppy.Registered) -> str:
        return f"registered {domain_event.name}"

    @policy.register
    def _(self, domain_event: "Puppy.Renamed") -> str:  # noqa: UP037 (quoted on purpose)
        return f"renamed {domain_event.name}"


class Puppy(Aggregate):
    @event("Registered")
    def __init__(self, name: str):
        self.name = name

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name


def test_a_policy_registered_by_forward_reference_dispatches_on_first_use() -> None:
    puppy = Puppy("Rex")
    puppy.rename("Max")
    registered, renamed = puppy.collect_events()
    kennel = Kennel()
    assert kennel.policy(registered) == "registered Rex"
    assert kennel.policy(renamed) == "renamed Max"
    assert kennel.policy(object()) == "ignored"
    assert set(Kennel.policy.handled_types()) == {Puppy.Registered, Puppy.Renamed}


class Unresolvable:
    @singledispatchmethod
    def policy(self, domain_event: object) -> str:
        return "ignored"

    @policy.register
    def _(self, domain_event: NeverDefined.Event) -> str:  # type: ignore[name-defined]  # noqa: F821
        return "never"


def test_a_forward_reference_that_never_resolves_is_named_on_first_use() -> None:
    with pytest.raises(NameError, match="NeverDefined"):
        Unresolvable().policy(object())


# -- topics: a renamed package ---------------------------------------------------------


def test_a_renamed_package_resolves_the_topics_of_its_modules() -> None:
    import eventsourcing
    import eventsourcing.domain
    from eventsourcing.utils import register_topic, resolve_topic

    register_topic("renamedpackage_for_test", eventsourcing)
    assert resolve_topic("renamedpackage_for_test.domain:Aggregate") is Aggregate
    assert resolve_topic("renamedpackage_for_test.domain:Aggregate.Created") is Aggregate.Created
    assert resolve_topic("renamedpackage_for_test.domain") is eventsourcing.domain
    assert resolve_topic("renamedpackage_for_test") is eventsourcing
