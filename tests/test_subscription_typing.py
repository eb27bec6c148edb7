"""Subscriptions are generic in the recorder they read, as in 9.x: a user's code that
writes ``Subscription[ApplicationRecorder]`` type-checks, and ``recorder`` has the
subscription's recorder type."""

from __future__ import annotations

from pathlib import Path

import pytest

import eventsourcing
from eventsourcing.persistence import ApplicationRecorder, ListenNotifySubscription, Subscription
from eventsourcing.popo import POPOApplicationRecorder

USER_CODE = """
from eventsourcing.persistence import ApplicationRecorder, Subscription
from eventsourcing.popo import POPOApplicationRecorder


def first(subscription: Subscription[ApplicationRecorder]) -> int:
    with subscription:
        return next(subscription).id


recorder = POPOApplicationRecorder()
subscription: Subscription[POPOApplicationRecorder] = recorder.subscribe(gt=None)
held: POPOApplicationRecorder = subscription.recorder
first(subscription)
"""


def test_subscriptions_take_their_recorder_type_at_runtime() -> None:
    assert Subscription[ApplicationRecorder] is not None
    assert ListenNotifySubscription[POPOApplicationRecorder] is not None


def test_user_code_with_subscription_types_type_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = pytest.importorskip("mypy.api")
    user_code = tmp_path / "user_code.py"
    user_code.write_text(USER_CODE)
    monkeypatch.setenv("MYPYPATH", str(Path(eventsourcing.__file__).parent.parent))
    monkeypatch.chdir(tmp_path)
    out, err, status = api.run(
        ["--no-incremental", "--follow-imports=silent", "--ignore-missing-imports", str(user_code)]
    )
    assert status == 0, out + err
