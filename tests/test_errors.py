"""Every error the library raises on purpose has one base class, EventSourcingError."""

from __future__ import annotations

import pytest

from eventsourcing import application, domain, persistence, system, utils


@pytest.mark.parametrize(
    "error_class",
    [
        domain.ProgrammingError,
        domain.OriginatorIDError,
        domain.OriginatorVersionError,
        persistence.PersistenceError,
        persistence.RecordConflictError,
        persistence.IntegrityError,
        application.AggregateNotFoundError,
        system.EventProcessingError,
        system.NotificationPullingError,
        system.NotificationConvertingError,
        system.RunnerAlreadyStartedError,
        utils.TopicError,
    ],
)
def test_library_errors_derive_from_event_sourcing_error(error_class: type) -> None:
    assert issubclass(error_class, domain.EventSourcingError)
    assert domain.EventSourcingError is utils.EventSourcingError


def test_not_found_is_still_a_key_error() -> None:
    # Code written before the common base caught KeyError.
    assert issubclass(application.AggregateNotFoundError, KeyError)
