"""Helpers for tests of the asyncio API: a loop in a thread, and sync faces of
async recorders (so the recorder contract suite runs against them unchanged)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running in a thread of its own; ``run`` waits for a coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class SyncFace:
    """The sync recorder interface of an async recorder: each call is a coroutine
    run on the loop thread (calls from many threads run concurrently there)."""

    def __init__(self, recorder: Any, loop: LoopThread) -> None:
        self.recorder = recorder
        self.loop = loop

    def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
        return self.loop.run(self.recorder.insert_events(stored_events, **kwargs))

    def select_events(self, originator_id: Any, **kwargs: Any) -> Any:
        return self.loop.run(self.recorder.select_events(originator_id, **kwargs))

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        return self.loop.run(self.recorder.select_notifications(*args, **kwargs))

    def max_notification_id(self) -> Any:
        return self.loop.run(self.recorder.max_notification_id())

    def max_tracking_id(self, application_name: str) -> Any:
        return self.loop.run(self.recorder.max_tracking_id(application_name))

    def has_tracking_id(self, application_name: str, notification_id: Any) -> Any:
        return self.loop.run(self.recorder.has_tracking_id(application_name, notification_id))

    def tracking_positions(self) -> Any:
        return self.loop.run(self.recorder.tracking_positions())
