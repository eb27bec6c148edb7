"""The DCB recorder contract, on every store (eventsourcing.dcb.tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventsourcing.dcb._common import DCBInfrastructureFactory
from eventsourcing.dcb.api import DCBEvent, DCBRecorder, DCBSequencedEvent
from eventsourcing.dcb.popo import SimpleDCBReadResponse
from eventsourcing.dcb.tests import DCBRecorderTestCase
from eventsourcing.utils import Environment


@pytest.fixture
def recorder(persistence_env: dict[str, str]) -> Iterator[DCBRecorder]:
    factory = DCBInfrastructureFactory.construct(Environment("", persistence_env))
    try:
        yield factory.dcb_recorder()
    finally:
        factory.close()


@pytest.fixture
def contract() -> DCBRecorderTestCase:
    return DCBRecorderTestCase()


def test_append_and_read(recorder: DCBRecorder, contract: DCBRecorderTestCase) -> None:
    contract._test_append_read(recorder)


def test_append_conditions(recorder: DCBRecorder, contract: DCBRecorderTestCase) -> None:
    contract._test_append_conditions(recorder)


def test_bad_input_is_refused_and_records_nothing(
    recorder: DCBRecorder, contract: DCBRecorderTestCase
) -> None:
    contract._test_bad_input(recorder)


def test_text_data_is_recorded_as_its_utf8_bytes(recorder: DCBRecorder) -> None:
    # A mapper may give the JSON text itself as the data (json.dumps returns str).
    given = DCBEvent(type="Noted", data='{"note": "caf\u00e9"}', tags=["n:1"])  # type: ignore[arg-type]
    position = recorder.append([given])
    (recorded,) = list(recorder.read())
    assert recorded.position == position
    assert recorded.event.data == '{"note": "caf\u00e9"}'.encode()
    assert (recorded.event.type, recorded.event.tags) == ("Noted", ["n:1"])
    assert given.data == '{"note": "caf\u00e9"}'


def test_subscribe(recorder: DCBRecorder, contract: DCBRecorderTestCase) -> None:
    contract._test_append_subscribe(recorder)


def test_a_simple_read_response_without_head_follows_the_events_returned() -> None:
    events = [DCBSequencedEvent(DCBEvent("T", b"", []), position) for position in (3, 7)]
    response = SimpleDCBReadResponse(events)
    assert response.head is None
    assert next(response).position == 3
    assert response.head == 3
    assert next(response).position == 7
    assert response.head == 7
    assert SimpleDCBReadResponse(events, head=9).head == 9
