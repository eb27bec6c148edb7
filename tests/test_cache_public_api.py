"""``repository.cache`` speaks as the 9.x library's cache does: ``get`` gives the
cached aggregate (raising ``KeyError`` for an id not held, and forgetting it with
``evict=True``) and ``put`` takes an aggregate, which the next ``repository.get``
starts from. (User code and the 9.x library's own application test cases look in it.)
"""

from __future__ import annotations

from copy import deepcopy
from uuid import uuid4

import pytest
from note_model import Note

from eventsourcing.application import Application


@pytest.mark.parametrize("fastforward", ["y", "n"])
def test_the_repository_cache_gives_and_takes_aggregates(fastforward: str) -> None:
    app = Application(
        env={"AGGREGATE_CACHE_MAXSIZE": "10", "AGGREGATE_CACHE_FASTFORWARD": fastforward}
    )
    cache = app.repository.cache
    assert cache is not None
    note = Note("draft")
    app.save(note)
    app.repository.get(note.id)  # (held now, whatever the save did)
    held = cache.get(note.id)
    assert isinstance(held, Note) and (held.version, held.text) == (1, "draft")

    note.edit("final")
    app.save(note)
    assert app.repository.get(note.id).text == "final"
    assert cache.get(note.id).version == 2

    with pytest.raises(KeyError):
        cache.get(uuid4())

    assert cache.get(note.id, evict=True).version == 2
    with pytest.raises(KeyError):
        cache.get(note.id)
    assert app.repository.get(note.id).text == "final"  # (read again, and held again)
    assert cache.get(note.id).text == "final"

    # What is put is what the next get starts from (a copy of it).
    put = deepcopy(app.repository.get(note.id))
    put.text = "put by hand"
    cache.put(note.id, put)
    got = app.repository.get(note.id)
    assert got.text == "put by hand" and got is not put
