"""A reusable test case for DCB recorders: subclass ``DCBRecorderTestCase`` and call
its ``_test_*`` methods with a recorder of your store (a new, empty one, or one
whose last position is ``initial_position``)."""

from __future__ import annotations

import threading
from unittest import TestCase

from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBRecorder,
    DCBSequencedEvent,
    DCBSubscription,
)
from eventsourcing.persistence import IntegrityError, ProgrammingError

__all__ = ["DCBRecorderTestCase", "EnsureSubscriptionBlockAndReceive"]


def _query(*items: tuple[list[str], list[str]]) -> DCBQuery:
    """A query of (types, tags) items."""
    return DCBQuery(items=[DCBQueryItem(types=types, tags=tags) for types, tags in items])


class DCBRecorderTestCase(TestCase):
    def _test_append_read(self, recorder: DCBRecorder, initial_position: int = 0) -> None:
        start = initial_position
        response = recorder.read(after=start)
        self.assertEqual([], list(response))
        self.assertEqual(start or None, response.head)

        opened = DCBEvent(type="Opened", data=b"opened", tags=["account-1"])
        self.assertEqual(start + 1, recorder.append([opened]))
        paid_in = DCBEvent(type="PaidIn", data=b"paid in", tags=["account-1", "teller-7"])
        moved = DCBEvent(type="Moved", data=b"moved", tags=["account-2", "teller-7"])
        self.assertEqual(start + 3, recorder.append([paid_in, moved]))

        def datas(query: DCBQuery | None = None, after: int = start) -> list[bytes]:
            return [e.event.data for e in recorder.read(query, after=after)]

        # All, in order, with positions, types and tags (in their order) as appended.
        found = list(recorder.read(after=start))
        self.assertEqual([start + 1, start + 2, start + 3], [e.position for e in found])
        self.assertEqual([opened, paid_in, moved], [e.event for e in found])

        # after and limit; the head.
        response = recorder.read(after=start + 1)
        self.assertEqual([b"paid in", b"moved"], [e.event.data for e in response])
        self.assertEqual(start + 3, response.head)
        response = recorder.read(after=start + 3)
        self.assertEqual([], list(response))
        self.assertEqual(start + 3, response.head)  # the store's last position
        response = recorder.read(after=start, limit=2)
        self.assertEqual([start + 1, start + 2], [e.position for e in response])
        self.assertEqual(start + 2, response.head)  # the last position read
        response = recorder.read(limit=0)
        self.assertEqual([], list(response))
        self.assertIsNone(response.head)

        # By type, by tag, by tags (all of them), by types and tags, by items (any).
        self.assertEqual([b"paid in"], datas(_query((["PaidIn"], []))))
        self.assertEqual([b"opened", b"moved"], datas(_query((["Opened", "Moved"], []))))
        self.assertEqual([], datas(_query((["Closed"], []))))
        self.assertEqual([b"opened", b"paid in"], datas(_query(([], ["account-1"]))))
        self.assertEqual([b"paid in"], datas(_query(([], ["account-1", "teller-7"]))))
        self.assertEqual([], datas(_query(([], ["account-2", "account-1"]))))
        self.assertEqual([b"paid in"], datas(_query((["PaidIn"], ["teller-7"]))))
        self.assertEqual([], datas(_query((["Opened"], ["teller-7"]))))
        self.assertEqual(
            [b"opened", b"moved"],
            datas(_query((["Moved"], ["teller-7"]), (["Opened"], ["account-1"]))),
        )
        self.assertEqual(
            [b"opened", b"paid in", b"moved"],
            datas(_query(([], ["account-1"]), ([], ["teller-7"]))),
        )
        self.assertEqual([b"moved"], datas(_query(([], ["account-2"])), after=start + 1))
        self.assertEqual(
            [b"paid in", b"moved"], datas(_query(([], ["teller-7"]), ([], ["nobody"])))
        )
        # An item with neither types nor tags matches every event; so does no item.
        self.assertEqual(3, len(datas(_query(([], []), (["Closed"], [])))))
        self.assertEqual(3, len(datas(DCBQuery())))
        response = recorder.read(_query(([], ["account-1"])), after=start, limit=1)
        self.assertEqual([b"opened"], [e.event.data for e in response])
        self.assertEqual(start + 1, response.head)
        response = recorder.read(_query(([], ["nobody"])), after=start)
        self.assertEqual([], list(response))
        self.assertEqual(start + 3, response.head)

        # What a read returns is a copy.
        first = next(recorder.read(after=start))
        first.event.tags.append("changed")
        self.assertEqual(["account-1"], next(recorder.read(after=start)).event.tags)

    def _test_append_conditions(self, recorder: DCBRecorder, initial_position: int = 0) -> None:
        start = initial_position
        joined = DCBEvent(type="Joined", data=b"1", tags=["course-1", "student-1"])
        recorder.append([joined])
        recorder.append([DCBEvent(type="Joined", data=b"2", tags=["course-1", "student-2"])])
        recorder.append([DCBEvent(type="Opened", data=b"3", tags=["course-2"])])
        new = [DCBEvent(type="Joined", data=b"new", tags=["course-2", "student-1"])]

        failing = [
            DCBAppendCondition(),  # any event at all
            DCBAppendCondition(after=start + 2),
            DCBAppendCondition(_query((["Joined"], []))),
            DCBAppendCondition(_query(([], ["course-1"])), after=start + 1),
            DCBAppendCondition(_query(([], ["course-1", "student-2"]))),
            DCBAppendCondition(_query((["Opened"], ["course-2"]))),
            DCBAppendCondition(_query(([], ["nobody"]), ([], ["student-1"]))),
            DCBAppendCondition(_query(([], []))),
        ]
        for condition in failing:
            with self.assertRaises(IntegrityError, msg=str(condition)):
                recorder.append(new, condition)
        self.assertEqual(start + 3, recorder.read().head, "a failed append recorded something")

        passing = [  # (each appends an event that none of them matches)
            DCBAppendCondition(after=start + 3),
            DCBAppendCondition(_query((["Left"], []))),
            DCBAppendCondition(_query(([], ["student-3"]))),
            DCBAppendCondition(_query(([], ["course-1", "student-1"])), after=start + 1),
            DCBAppendCondition(_query(([], ["course-2", "student-1"]))),
            DCBAppendCondition(_query((["Joined"], ["course-2"]), (["Opened"], ["course-1"]))),
        ]
        for condition in passing:
            head = recorder.read().head
            assert head is not None
            position = recorder.append([DCBEvent(type="Noted", data=b"", tags=["note"])], condition)
            self.assertEqual(head + 1, position, str(condition))

        # Several events: all recorded, or (the condition failing) none.
        head = recorder.read().head
        assert head is not None
        two = [DCBEvent("A", b"a", ["x"]), DCBEvent("B", b"b", ["x", "y"])]
        self.assertEqual(head + 2, recorder.append(two, DCBAppendCondition(_query(([], ["x"])))))
        with self.assertRaises(IntegrityError):
            recorder.append(two, DCBAppendCondition(_query(([], ["y"])), after=head))
        self.assertEqual(head + 2, recorder.read().head)

    def _test_bad_input(self, recorder: DCBRecorder) -> None:
        good = DCBEvent(type="T", data=b"d", tags=["t"])
        with self.assertRaises(ProgrammingError):
            recorder.append([])
        bad_events = [
            DCBEvent(type="T", data=123, tags=[]),  # type: ignore[arg-type]
            DCBEvent(type="T", data="text", tags="tag"),  # type: ignore[arg-type]
            DCBEvent(type="", data=b"", tags=[]),
            DCBEvent(type="T", data=b"", tags="tag"),  # type: ignore[arg-type]
            DCBEvent(type="T", data=b"", tags=[1]),  # type: ignore[list-item]
        ]
        for bad in bad_events:
            with self.assertRaises(TypeError, msg=str(bad)):
                recorder.append([good, bad])
        with self.assertRaises(TypeError):
            recorder.append([good], DCBAppendCondition(DCBQuery([DCBQueryItem(tags="t")])))  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            recorder.read(DCBQuery([DCBQueryItem(types="T")]))  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            recorder.read(limit=-1)
        self.assertEqual([], list(recorder.read()), "bad input recorded something")

    def _test_append_subscribe(self, recorder: DCBRecorder, initial_position: int = 0) -> None:
        start = initial_position
        first = recorder.append([DCBEvent(type="Seen", data=b"1", tags=["a"])])
        with recorder.subscribe(after=start) as subscription:
            self.assertEqual(first, next(subscription).position)
            # Caught up: blocks until an event is recorded.
            thread = EnsureSubscriptionBlockAndReceive(subscription)
            thread.has_blocked.wait()
            self.assertFalse(thread.has_received.wait(timeout=0.3))
            second = recorder.append([DCBEvent(type="Seen", data=b"2", tags=["b"])])
            self.assertTrue(thread.has_received.wait(timeout=10))
            assert thread.received_event is not None
            self.assertEqual(second, thread.received_event.position)
            self.assertEqual(b"2", thread.received_event.event.data)

        # With a query: only the events that match it.
        only_b = _query(([], ["b"]))
        with recorder.subscribe(only_b, after=start) as subscription:
            self.assertEqual(second, next(subscription).position)
            recorder.append([DCBEvent(type="Seen", data=b"3", tags=["a"])])
            fourth = recorder.append([DCBEvent(type="Seen", data=b"4", tags=["b"])])
            self.assertEqual(fourth, next(subscription).position)

        # Stopped from another thread: a waiting next() ends the iteration.
        subscription = recorder.subscribe(after=fourth)
        with subscription:
            thread = EnsureSubscriptionBlockAndReceive(subscription)
            thread.has_blocked.wait()
            subscription.stop()
            thread.join(timeout=10)
            self.assertFalse(thread.is_alive())
            self.assertTrue(thread.stopped)
            with self.assertRaises(StopIteration):
                next(subscription)
            with self.assertRaises(ProgrammingError):
                subscription.__enter__()


class EnsureSubscriptionBlockAndReceive(threading.Thread):
    """Takes the next event of a subscription in a thread of its own."""

    def __init__(self, subscription: DCBSubscription[DCBRecorder]) -> None:
        super().__init__(daemon=True)
        self.subscription = subscription
        self.has_blocked = threading.Event()
        self.has_received = threading.Event()
        self.received_event: DCBSequencedEvent | None = None
        self.stopped = False
        self.start()

    def run(self) -> None:
        self.has_blocked.set()
        try:
            self.received_event = next(self.subscription)
        except StopIteration:
            self.stopped = True
        else:
            self.has_received.set()
