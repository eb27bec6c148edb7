"""Which factories build DCB recorders, chosen by PERSISTENCE_MODULE."""

from __future__ import annotations

import pytest

from eventsourcing.dcb._common import DCBInfrastructureFactory
from eventsourcing.dcb.api import DCBEvent
from eventsourcing.dcb.popo import InMemoryDCBFactory, InMemoryDCBRecorder
from eventsourcing.persistence import InfrastructureFactory, NotSupportedError
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import Environment, TopicError


class NoDCBFactory(POPOFactory):
    """A store's factory that has no DCB recorder."""


NoDCBFactory.dcb_recorder = InfrastructureFactory.dcb_recorder  # type: ignore[method-assign,assignment]


@pytest.mark.parametrize(
    ("module", "factory_class"),
    [
        ("eventsourcing.dcb.popo", InMemoryDCBFactory),
        ("eventsourcing.popo", POPOFactory),
        ("", POPOFactory),
    ],
)
def test_in_memory_factories_build_in_memory_dcb_recorders(
    module: str, factory_class: type[InfrastructureFactory]
) -> None:
    env = Environment("", {"PERSISTENCE_MODULE": module} if module else {})
    factory = DCBInfrastructureFactory.construct(env)
    assert type(factory) is factory_class
    recorder = factory.dcb_recorder()
    assert isinstance(recorder, InMemoryDCBRecorder)
    assert recorder.append([DCBEvent("T", b"", [])]) == 1
    assert factory.dcb_recorder().read().head is None  # a new recorder each time


def test_a_factory_without_dcb_recorder_is_refused() -> None:
    with pytest.raises(NotSupportedError, match="NoDCBFactory cannot build a DCB recorder"):
        NoDCBFactory(Environment()).dcb_recorder()
    env = Environment("", {"PERSISTENCE_MODULE": f"{__name__}:NoDCBFactory"})
    with pytest.raises(TopicError, match="NoDCBFactory .* cannot build a DCB recorder"):
        DCBInfrastructureFactory.construct(env)
