"""A notification log served as JSON text, and read back from it.

``NotificationLogJSONService(app)`` answers with the JSON text of a section of an
application's notification log, or of a selection of it; a transport (HTTP, a
queue...) carries the text; ``NotificationLogJSONClient(interface)`` is a
``NotificationLog`` again, which a ``NotificationLogReader`` or a ``Follower`` can read
as if the application were local. The client is given any object with the
service's two methods (``NotificationLogInterface``), for example one that makes
HTTP requests.

The text of a notification: ``{"id", "originator_id", "originator_version",
"topic", "state"}``, with a UUID originator id as its 32 hex digits (other ids as
they are) and the state in base64. A section: ``{"id", "next_id", "items"}``.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from base64 import b64decode, b64encode
from collections.abc import Sequence
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import Application, NotificationLog, Section
from eventsourcing.persistence import Notification

__all__ = [
    "NotificationLogInterface",
    "NotificationLogJSONClient",
    "NotificationLogJSONService",
]

TApplication = TypeVar("TApplication", bound=Application)

# How a UUID originator id is written: its hex digits, which is read back as a UUID.
_UUID_HEX = re.compile(r"[0-9a-f]{32}")


class NotificationLogInterface(ABC):
    """What a notification log client needs from a service: text, section by section
    or by selection."""

    @abstractmethod
    def get_log_section(self, section_id: str) -> str:
        """The text of the section ``section_id`` (``"first,last"``) of the log."""

    @abstractmethod
    def get_notifications(
        self,
        start: int | None,
        limit: int,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> str:
        """The text of up to ``limit`` notifications from ``start`` (after it, unless
        ``inclusive_of_start``), of ``topics`` only if given."""


class NotificationLogJSONService(NotificationLogInterface, Generic[TApplication]):
    """Serves the notification log of ``app`` as JSON text."""

    def __init__(self, app: TApplication):
        self.app = app

    def get_log_section(self, section_id: str) -> str:
        section = self.app.notification_log[section_id]
        return json.dumps(
            {
                "id": section.id,
                "next_id": section.next_id,
                "items": [_notification_as_dict(item) for item in section.items],
            }
        )

    def get_notifications(
        self,
        start: int | None,
        limit: int,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> str:
        notifications = self.app.notification_log.select(
            start, limit, topics=topics, inclusive_of_start=inclusive_of_start
        )
        return json.dumps([_notification_as_dict(item) for item in notifications])


class NotificationLogJSONClient(NotificationLog):
    """A notification log read from the JSON text of ``interface`` (a service, or an
    object that asks one)."""

    def __init__(self, interface: NotificationLogInterface):
        self.interface = interface

    def __getitem__(self, section_id: str) -> Section:
        text = self.interface.get_log_section(section_id)
        section = _loaded(text, f"section {section_id!r}")
        try:
            return Section(
                id=section["id"],
                next_id=section["next_id"],
                items=[_notification_from_dict(item) for item in section["items"]],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Bad notification log section {section_id!r}: {error!r}") from None

    def select(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        # (``stop`` is applied here: the interface has no such argument.)
        text = self.interface.get_notifications(
            start, limit, topics, inclusive_of_start=inclusive_of_start
        )
        items = _loaded(text, "notifications")
        try:
            notifications = [_notification_from_dict(item) for item in items]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Bad notifications from the notification log: {error!r}") from None
        if stop is not None:
            notifications = [n for n in notifications if n.id <= stop]
        return notifications


def _notification_as_dict(notification: Notification) -> dict[str, Any]:
    originator_id = notification.originator_id
    return {
        "id": notification.id,
        "originator_id": originator_id.hex if isinstance(originator_id, UUID) else originator_id,
        "originator_version": notification.originator_version,
        "topic": notification.topic,
        "state": b64encode(notification.state).decode("ascii"),
    }


def _notification_from_dict(item: dict[str, Any]) -> Notification:
    originator_id = item["originator_id"]
    if isinstance(originator_id, str) and _UUID_HEX.fullmatch(originator_id):
        originator_id = UUID(originator_id)
    return Notification(
        id=item["id"],
        originator_id=originator_id,
        originator_version=item["originator_version"],
        topic=item["topic"],
        state=b64decode(item["state"].encode("ascii"), validate=True),
    )


def _loaded(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as error:
        raise ValueError(f"The notification log's {what} is not JSON text: {error}") from None
