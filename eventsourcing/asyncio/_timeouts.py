"""Waiting with a timeout, without ever losing a cancellation of the waiting task.

``asyncio.wait_for`` of Python 3.10 and 3.11 returns the awaited result when its
caller is cancelled in the same step of the loop that the awaited task finishes
in (CPython issue gh-86296; rewritten in 3.12): the caller's cancellation is
lost, and a task that loops until it is cancelled (a runner's follower, woken by
an event just as the runner stops it) loops on for ever. ``wait_for`` here
behaves as 3.12's does on every version: the caller's cancellation is always
raised (the awaited task is then cancelled, and has ended when it is raised).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """The result of ``awaitable``; ``asyncio.TimeoutError`` if it has not finished
    within ``timeout`` seconds (it is cancelled then). If the caller is cancelled
    meanwhile, ``awaitable`` is cancelled, and the caller's ``CancelledError`` is
    raised once it has ended, even if it had just finished."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        await _cancel_and_wait(task)
        raise
    if not done:
        await _cancel_and_wait(task)
        if task.cancelled():
            raise asyncio.TimeoutError
    return task.result()


async def _cancel_and_wait(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # (retrieved: its error is not logged as never retrieved)
