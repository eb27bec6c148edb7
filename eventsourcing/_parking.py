"""A follower's poison events: retried, then parked as dead letters, so it can go on.

When the policy raises for an upstream event (an error that is not an outage),
the event is processed again ``FOLLOWER_RETRIES`` times (3), waiting a little
longer each time (from ``FOLLOWER_RETRY_DELAY``, 0.1 s). If it still fails, it is
parked in the follower's dead-letter table and the tracking position moves past
it, in one transaction. Later events of the same aggregate are parked behind
it (never processed out of order); other aggregates' events go on.
``FOLLOWER_ON_ERROR=stop`` stops the follower at the event instead, as before.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from eventsourcing._deadletters import PARKED, RETRIED, SKIPPED, DeadLetter, DeadLetterRecorder
from eventsourcing._resilience import Backoff, is_transient
from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Notification, new_tracking
from eventsourcing.utils import EventSourcingError

if TYPE_CHECKING:
    from eventsourcing._follower import Follower

logger = logging.getLogger("eventsourcing.follower")

FOLLOWER_RETRIES = "FOLLOWER_RETRIES"
FOLLOWER_RETRY_DELAY = "FOLLOWER_RETRY_DELAY"
FOLLOWER_ON_ERROR = "FOLLOWER_ON_ERROR"
ON_ERROR_CHOICES = ("park", "stop")


class ParkedBehind(EventSourcingError):
    """An event not processed because an earlier event of its aggregate is parked."""


class DeadLetterError(EventSourcingError):
    """A dead letter cannot be retried or skipped as asked."""


class ParkingSettings:
    """``FOLLOWER_RETRIES``, ``FOLLOWER_RETRY_DELAY`` and ``FOLLOWER_ON_ERROR``, checked."""

    def __init__(self, name: str, env: Mapping[str, str]):
        self.retries = _setting(name, env, FOLLOWER_RETRIES, "3", int, "a whole number, 0 or more")
        self.retry_delay = _setting(
            name, env, FOLLOWER_RETRY_DELAY, "0.1", float, "a number of seconds, 0 or more"
        )
        on_error = (env.get(FOLLOWER_ON_ERROR) or "park").strip().lower()
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(
                f"{name}: {FOLLOWER_ON_ERROR} must be one of {', '.join(ON_ERROR_CHOICES)}, "
                f"not {env.get(FOLLOWER_ON_ERROR)!r}"
            )
        self.parks = on_error == "park"


def _setting(
    name: str, env: Mapping[str, str], key: str, default: str, kind: type, what: str
) -> Any:
    text = env.get(key) or default
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: {key} must be {what}, not {text!r}")
    return value


def error_fields(error: BaseException) -> tuple[str, str, str]:
    """The type, message and traceback of what the policy raised (the cause of the
    follower's ``EventProcessingError``, if it is one)."""
    cause = error.__cause__ if error.__cause__ is not None else error
    text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    return type(cause).__name__, str(cause), text


class Parking:
    """The dead-letter part of a ``Follower``."""

    def __init__(self, follower: Follower):
        self.follower = follower
        self.settings = ParkingSettings(follower.name, follower.env)
        # Per leader: originator id -> notification id of its first parked event.
        self.parked: dict[str, dict[str, int]] = {}
        # Told of each event parked (the single-threaded runner raises it once).
        self.listener: Callable[[EventSourcingError], None] | None = None

    def dead_letters(self) -> DeadLetterRecorder | None:
        recorder = self.follower.recorder
        return recorder if isinstance(recorder, DeadLetterRecorder) else None

    def parks(self, error: BaseException) -> bool:
        """Whether a failure is to be retried and parked (else it stops the follower)."""
        return self.settings.parks and not is_transient(error) and self.dead_letters() is not None

    def parked_originators(self, leader_name: str) -> dict[str, int]:
        parked = self.parked.get(leader_name)
        if parked is None:
            parked = self.load_parked(leader_name)
        return parked

    def load_parked(self, leader_name: str) -> dict[str, int]:
        recorder = self.dead_letters()
        parked: dict[str, int] = {}
        if recorder is not None:
            for letter in recorder.select_dead_letters(leader_name):
                if letter.status == PARKED:
                    parked.setdefault(letter.originator_id, letter.notification_id)
        self.parked[leader_name] = parked
        return parked

    def is_parked_behind(self, leader_name: str, notification: Notification) -> bool:
        """Whether an earlier event of this notification's aggregate is parked (read
        again from the store before saying so: an operator may have retried it)."""
        parked = self.parked.get(leader_name)
        if not parked:
            return False
        originator_id = str(notification.originator_id)
        if originator_id not in parked:
            return False
        return originator_id in self.load_parked(leader_name)

    def retry_or_park(self, leader_name: str, notification: Notification, error: Exception) -> None:
        """Process ``notification`` alone again, up to FOLLOWER_RETRIES times, with
        backoff; park it if it still fails. Raises the error if the follower closes."""
        first_failed = time.time()
        attempts = 1
        if isinstance(error, ParkedBehind):
            attempts = 0  # not tried: its aggregate's earlier event is parked
        else:
            backoff = Backoff(self.settings.retry_delay, cap=max(self.settings.retry_delay, 5.0))
            while attempts <= self.settings.retries:
                logger.warning(
                    "%s: retrying (attempt %d of %d) after: %s",
                    self.follower.name,
                    attempts + 1,
                    self.settings.retries + 1,
                    error,
                )
                if self.follower.closing.wait(backoff.next_delay()):
                    raise error  # nothing recorded: processed again after a restart
                failure = self._process_alone(leader_name, notification)
                if failure is None:
                    return
                attempts += 1
                error = failure
                if not self.parks(error):
                    raise error
        self._park(leader_name, notification, error, attempts, first_failed)

    def _process_alone(self, leader_name: str, notification: Notification) -> Exception | None:
        """Process one notification as a batch of its own; the error, if it failed."""
        from eventsourcing._follower import _BatchItemError

        try:
            self.follower._process_and_record(
                leader_name, [notification], None, self.follower.position(leader_name)
            )
        except _BatchItemError as failure:
            return failure.error
        return None

    def _park(
        self,
        leader_name: str,
        notification: Notification,
        error: Exception,
        attempts: int,
        first_failed: float,
    ) -> None:
        recorder = self.dead_letters()
        assert recorder is not None
        error_type, message, trace = error_fields(error)
        letter = DeadLetter(
            upstream=leader_name,
            notification_id=notification.id,
            originator_id=str(notification.originator_id),
            topic=notification.topic,
            error_type=error_type,
            error_message=message,
            traceback=trace,
            attempts=attempts,
            first_failed=first_failed,
            last_failed=time.time(),
        )
        position = self.follower.position(leader_name)
        tracking = new_tracking(self.follower.tracking_name(leader_name), notification.id, position)
        recorder.park_events([letter], tracking)
        self.follower._positions[leader_name] = notification.id
        self.parked_originators(leader_name).setdefault(letter.originator_id, notification.id)
        from eventsourcing._follower import EventProcessingError

        parked = EventProcessingError(
            f"{self.follower.name} parked notification {notification.id} of {leader_name} "
            f"(originator {letter.originator_id}, topic {letter.topic}) after "
            f"{attempts} attempt(s): {error_type}: {message}"
        )
        parked.__cause__ = error
        if isinstance(error, ParkedBehind):
            logger.warning("%s", parked)  # (its cause was raised and logged once)
            return
        logger.error("%s\n%s", parked, trace.rstrip())
        if self.listener is not None:
            self.listener(parked)

    # -- for operators ------------------------------------------------------------

    def retry_dead_letters(
        self, leader_name: str, letter_id: int | None = None
    ) -> tuple[list[DeadLetter], list[DeadLetter]]:
        """Process this follower's parked events of ``leader_name`` again, in order,
        each exactly once; return those processed and those that failed again (a
        failure leaves the later events of its aggregate parked)."""
        recorder = self.dead_letters()
        if recorder is None:
            raise DeadLetterError(f"{self.follower.name}'s recorder keeps no dead letters")
        parked = [
            letter
            for letter in recorder.select_dead_letters(leader_name)
            if letter.status == PARKED
        ]
        if letter_id is not None:
            parked = _up_to(parked, letter_id)
        done: list[DeadLetter] = []
        failed: list[DeadLetter] = []
        blocked: set[str] = set()
        for letter in parked:
            if letter.originator_id in blocked:
                continue
            outcome = self._retry_letter(recorder, letter)
            (done if outcome.status == RETRIED else failed).append(outcome)
            if outcome.status != RETRIED:
                blocked.add(letter.originator_id)
        self.parked.pop(leader_name, None)
        return done, failed

    def _retry_letter(self, recorder: DeadLetterRecorder, letter: DeadLetter) -> DeadLetter:
        # Its own tracking record makes the retry exactly-once (a crash between the
        # write and the status update finds it already processed).
        tracking_name = f"{letter.upstream}#dead-letter-{letter.id}"
        retried = _replace(letter, status=RETRIED)
        if self.follower.process_recorder.has_tracking_id(tracking_name, letter.notification_id):
            recorder.update_dead_letter(retried, PARKED)
            return retried
        notifications = self.follower._reader(letter.upstream).notification_log.select(
            letter.notification_id, 1
        )
        if not notifications or notifications[0].id != letter.notification_id:
            raise DeadLetterError(
                f"notification {letter.notification_id} of {letter.upstream} is not in its log"
            )
        mapper = self.follower.mappers.get(letter.upstream, self.follower.mapper)
        tracking = new_tracking(tracking_name, letter.notification_id, None)
        processing_event: ProcessingEvent[Any] = ProcessingEvent(tracking)
        try:
            domain_event = mapper.to_domain_event(notifications[0])
            self.follower._policy(domain_event, processing_event)
        except Exception as error:
            error_type, message, trace = error_fields(error)
            again = _replace(
                letter,
                attempts=letter.attempts + 1,
                error_type=error_type,
                error_message=message,
                traceback=trace,
                last_failed=time.time(),
            )
            recorder.update_dead_letter(again, PARKED)
            return again
        recordings = self.follower._record(
            processing_event, make_recordings=self.follower._is_followed()
        )
        recorder.update_dead_letter(retried, PARKED)
        self.follower._take_snapshots(processing_event)
        self.follower._notify(recordings)
        self.follower.notify(processing_event.events)
        return retried

    def skip_dead_letter(self, letter_id: int) -> DeadLetter:
        """Drop a parked event on purpose (recorded as skipped)."""
        recorder = self.dead_letters()
        if recorder is None:
            raise DeadLetterError(f"{self.follower.name}'s recorder keeps no dead letters")
        for letter in recorder.select_dead_letters():
            if letter.id == letter_id:
                if letter.status != PARKED:
                    raise DeadLetterError(f"dead letter {letter_id} is {letter.status}, not parked")
                skipped = _replace(letter, status=SKIPPED, last_failed=time.time())
                if not recorder.update_dead_letter(skipped, PARKED):
                    raise DeadLetterError(f"dead letter {letter_id} changed meanwhile")
                self.parked.pop(letter.upstream, None)
                return skipped
        raise DeadLetterError(f"{self.follower.name} has no dead letter {letter_id}")


def _up_to(parked: list[DeadLetter], letter_id: int) -> list[DeadLetter]:
    """The letter ``letter_id`` alone, refusing if an earlier one of its aggregate is
    still parked (the aggregate's events are processed in order)."""
    for letter in parked:
        if letter.id == letter_id:
            earlier = [
                other.id
                for other in parked
                if other.originator_id == letter.originator_id
                and other.notification_id < letter.notification_id
            ]
            if earlier:
                raise DeadLetterError(
                    f"dead letter {letter_id} is parked behind {earlier[0]} of the same "
                    f"aggregate: retry that one first (or all, without --id)"
                )
            return [letter]
    raise DeadLetterError(f"no parked dead letter {letter_id}")


def _replace(letter: DeadLetter, **changes: Any) -> DeadLetter:
    return replace(letter, **changes)
