"""Progress signals for runners' ``wait()``: every waiter is woken at each step, and
checks without holding a lock (a check may query the database)."""

from __future__ import annotations

import asyncio
import contextlib

from eventsourcing.asyncio._timeouts import wait_for


class Progress:
    """Each ``moved()`` wakes every waiter of the step it took ``step()`` in.

    A waiter takes the step before it checks, then waits on it: a move made while
    it checked is not missed.
    """

    def __init__(self) -> None:
        self._step = asyncio.Event()

    def step(self) -> asyncio.Event:
        return self._step

    def moved(self) -> None:
        step, self._step = self._step, asyncio.Event()
        step.set()

    @staticmethod
    async def wait(step: asyncio.Event, timeout: float) -> bool:
        """Whether ``step`` was moved past within ``timeout`` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await wait_for(step.wait(), timeout)
        return step.is_set()
