"""Stored data that cannot be read back gives an error naming the event; nothing changes."""

from __future__ import annotations

import pytest

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import DataError, StoredEvent
from eventsourcing.utils import TopicError


class Parcel(Aggregate):
    @event("Sent")
    def __init__(self, to):
        self.to = to

    @event("Redirected")
    def redirect(self, to):
        self.to = to


class Post(Application):
    pass


def store_with_a_bad_event(env: dict[str, str], topic: str, state: bytes):
    post = Post(env=env)
    parcel = Parcel("Ann")
    post.save(parcel)
    post.recorder.insert_events([StoredEvent(parcel.id, 2, topic, state)])
    return post, parcel


def test_undecodable_state_names_originator_version_and_topic(persistence_env) -> None:
    topic = Parcel.Redirected.__module__ + ":Parcel.Redirected"
    post, parcel = store_with_a_bad_event(persistence_env, topic, b"{not json")
    before = post.notification_log.select(1, 10)
    with pytest.raises(DataError) as info:
        post.repository.get(parcel.id)
    message = str(info.value)
    assert str(parcel.id) in message and "version 2" in message and topic in message
    assert post.notification_log.select(1, 10) == before
    assert post.repository.get(parcel.id, version=1).to == "Ann"


def test_unknown_topic_names_the_topic(persistence_env) -> None:
    topic = "somewhere.moved:Parcel.Redirected"
    post, parcel = store_with_a_bad_event(persistence_env, topic, b'{"to":"Bob"}')
    with pytest.raises(TopicError) as info:
        post.repository.get(parcel.id)
    assert topic in str(info.value) and "register_topic" in str(info.value)
    assert len(post.notification_log.select(1, 10)) == 2
