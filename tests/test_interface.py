"""eventsourcing.interface: a notification log served as JSON text and read back."""

from __future__ import annotations

import json
from base64 import b64decode
from collections.abc import Sequence
from typing import Any

import pytest

from eventsourcing.application import NotificationLog
from eventsourcing.interface import (
    NotificationLogInterface,
    NotificationLogJSONClient,
    NotificationLogJSONService,
)
from eventsourcing.system import NotificationLogReader
from eventsourcing.utils import get_topic
from examples.dogschool import Counters, Dog, DogSchool


def school_with_tricks(tricks: int) -> tuple[DogSchool, Any]:
    school = DogSchool()
    dog_id = school.register_dog("Fido")
    for i in range(tricks):
        school.add_trick(dog_id, f"trick{i}")
    return school, dog_id


def test_the_service_serves_a_section_as_json_text() -> None:
    school, dog_id = school_with_tricks(2)
    service = NotificationLogJSONService(school)
    section = json.loads(service.get_log_section("1,2"))
    assert section["id"] == "1,2" and section["next_id"] == "3,4"
    first = section["items"][0]
    assert first["id"] == 1 and first["originator_id"] == dog_id.hex
    assert first["originator_version"] == 1 and first["topic"] == get_topic(Dog.Registered)
    assert b64decode(first["state"]) == school.notification_log["1,1"].items[0].state


def test_the_client_reads_sections_and_selections_as_the_local_log_does() -> None:
    school, _ = school_with_tricks(3)
    client = NotificationLogJSONClient(NotificationLogJSONService(school))
    assert isinstance(client, NotificationLog)
    local = school.notification_log
    assert client["1,2"] == local["1,2"]
    assert client["3,10"] == local["3,10"]
    assert client["5,6"].items == [] and client["5,6"].next_id is None
    assert client.select(1, 10) == local.select(1, 10)
    added = [get_topic(Dog.TrickAdded)]
    assert [n.id for n in client.select(1, 10, topics=added)] == [2, 3, 4]
    assert [n.id for n in client.select(2, 10, inclusive_of_start=False)] == [3, 4]
    assert [n.id for n in client.select(1, 10, stop=2)] == [1, 2]


def test_a_reader_and_a_follower_read_a_log_through_the_json_client() -> None:
    school, _ = school_with_tricks(3)
    client = NotificationLogJSONClient(NotificationLogJSONService(school))
    reader = NotificationLogReader(client, section_size=2)
    assert [n.id for n in reader.read(start=1)] == [1, 2, 3, 4]
    assert [[n.id for n in batch] for batch in reader.select(start=2)] == [[2, 3], [4]]

    counters = Counters()
    counters.follow(school.name, client)
    counters.pull_and_process(school.name)
    assert counters.get_count("trick1") == 1
    assert counters.recorder.max_tracking_id(school.name) == 4


class CannedInterface(NotificationLogInterface):
    """Answers every request for a section, and for notifications, with the same text."""

    def __init__(self, section: str, notifications: str) -> None:
        self.section = section
        self.notifications = notifications

    def get_log_section(self, section_id: str) -> str:
        return self.section

    def get_notifications(
        self,
        start: int | None,
        limit: int,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> str:
        return self.notifications


def test_text_ids_go_through_as_text() -> None:
    item = {"id": 1, "originator_id": "dog-1", "originator_version": 1,
            "topic": "t:T", "state": "e30="}  # fmt: skip
    section = json.dumps({"id": "1,1", "next_id": None, "items": [item]})
    client = NotificationLogJSONClient(CannedInterface(section, json.dumps([item])))
    assert client.select(1, 1)[0].originator_id == "dog-1"
    assert client["1,1"].items[0].state == b"{}"


def test_bad_text_from_the_interface_is_reported_by_what_was_wrong() -> None:
    client = NotificationLogJSONClient(CannedInterface("<html>", json.dumps([{"id": 1}])))
    with pytest.raises(ValueError, match="section '1,10' is not JSON text"):
        client["1,10"]
    with pytest.raises(ValueError, match="Bad notifications from the notification log"):
        client.select(1, 10)
