"""The DCB recorder contract, on every store (eventsourcing.dcb.tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventsourcing.dcb._common import DCBInfrastructureFactory
from eventsourcing.dcb.api import DCBRecorder
from eventsourcing.dcb.tests import DCBRecorderTestCase
from eventsourcing.utils import Environment

DCB_STORES = ["popo"]


@pytest.fixture(params=DCB_STORES)
def recorder(request: pytest.FixtureRequest) -> Iterator[DCBRecorder]:
    env = Environment("", {"PERSISTENCE_MODULE": "eventsourcing.dcb." + request.param})
    factory = DCBInfrastructureFactory.construct(env)
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


def test_subscribe(recorder: DCBRecorder, contract: DCBRecorderTestCase) -> None:
    contract._test_append_subscribe(recorder)
