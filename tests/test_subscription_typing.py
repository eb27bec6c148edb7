"""Subscriptions as 9.x users know them: generic in the recorder they read (a user's
code that writes ``Subscription[ApplicationRecorder]`` type-checks, and ``recorder``
has the subscription's recorder type), and a context manager that refuses to be left
without having been entered."""

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


def test_leaving_a_context_never_entered_is_refused() -> None:
    from eventsourcing.persistence import ProgrammingError

    recorder = POPOApplicationRecorder()
    subscription = recorder.subscribe(gt=None)
    with pytest.raises(ProgrammingError, match="never entered"):
        subscription.__exit__(None, None, None)
    with subscription:
        pass
    assert subscription.is_stopped
