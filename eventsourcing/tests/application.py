"""Application test cases that extension projects subclass with their persistence
module set in ``os.environ`` (``PERSISTENCE_MODULE`` and its settings, in ``setUp``),
and the example application they run (the 9.x ``eventsourcing.tests.application`` API)."""

from __future__ import annotations

import threading
import warnings
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar
from unittest import TestCase
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    InfrastructureFactory,
    InfrastructureFactoryError,
    IntegrityError,
    Transcoder,
    Transcoding,
)
from eventsourcing.tests.domain import BankAccount, EmailAddress
from eventsourcing.utils import get_topic

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "TIMEIT_FACTOR",
    "ApplicationTestCase",
    "BankAccounts",
    "EmailAddressAsStr",
    "ExampleApplicationTestCase",
]

# Older extension test cases scale their timing loops by this (none run here).
TIMEIT_FACTOR = 1


class EmailAddressAsStr(Transcoding):
    """Stores an ``EmailAddress`` as its address string."""

    type = EmailAddress
    name = "email_address_as_str"

    def encode(self, obj: EmailAddress) -> str:
        return obj.address

    def decode(self, data: str) -> EmailAddress:
        return EmailAddress(data)


class BankAccounts(Application[UUID]):
    """An example application: opens bank accounts and credits them."""

    is_snapshotting_enabled = True

    class AccountNotFoundError(Exception):
        """No account has this id."""

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(EmailAddressAsStr())

    def open_account(self, full_name: str, email_address: str) -> UUID:
        account = BankAccount.open(full_name=full_name, email_address=email_address)
        self.save(account)
        return account.id

    def credit_account(self, account_id: UUID, amount: Decimal) -> None:
        account = self.get_account(account_id)
        account.append_transaction(amount)
        self.save(account)

    def get_balance(self, account_id: UUID) -> Decimal:
        return self.get_account(account_id).balance

    def get_account(self, account_id: UUID) -> BankAccount:
        try:
            account = self.repository.get(account_id)
        except AggregateNotFoundError:
            raise self.AccountNotFoundError(account_id) from None
        assert isinstance(account, BankAccount), account
        return account


class ExampleApplicationTestCase(TestCase):
    """Runs ``BankAccounts`` on the persistence module in ``os.environ``: set
    ``expected_factory_topic`` to the topic of that module's factory class."""

    expected_factory_topic: str
    # (Kept for subclasses of older versions that timed their runs.)
    started_ats: ClassVar[dict[type[TestCase], datetime]] = {}
    counts: ClassVar[dict[type[TestCase], int]] = {}

    def test_example_application(self) -> None:
        app = BankAccounts(env={"IS_SNAPSHOTTING_ENABLED": "y"})
        try:
            self._check_example_application(app)
        finally:
            app.close()

    def _check_example_application(self, app: BankAccounts) -> None:
        self.assertEqual(self.expected_factory_topic, get_topic(type(app.factory)))

        with self.assertRaises(BankAccounts.AccountNotFoundError):
            app.get_account(uuid4())

        account_id = app.open_account(full_name="Alice", email_address="alice@example.com")
        self.assertEqual(Decimal("0.00"), app.get_balance(account_id))
        account = app.get_account(account_id)
        self.assertEqual("Alice", account.full_name)
        self.assertEqual(EmailAddress("alice@example.com"), account.email_address)

        for amount, balance in (("10.00", "10.00"), ("25.00", "35.00"), ("30.00", "65.00")):
            app.credit_account(account_id, Decimal(amount))
            self.assertEqual(Decimal(balance), app.get_balance(account_id))

        # One notification per event, in order.
        section = app.notification_log["1,10"]
        self.assertEqual(4, len(section.items))
        self.assertEqual([1, 2, 3, 4], [item.id for item in section.items])

        # A snapshot at a given version; reading at a later version starts from it.
        first = Aggregate.INITIAL_VERSION
        app.take_snapshot(account_id, version=first + 1)
        self.assertEqual([first + 1], self._snapshot_versions(app, account_id))
        account = app.repository.get(account_id, version=first + 2)
        self.assertIsInstance(account, BankAccount)
        self.assertEqual(first + 2, account.version)
        self.assertEqual(Decimal("35.00"), account.balance)

        # A snapshot at the current version.
        app.take_snapshot(account_id)
        self.assertEqual([first + 1, first + 3], self._snapshot_versions(app, account_id))
        account = app.repository.get(account_id)
        self.assertIsInstance(account, BankAccount)
        self.assertEqual(first + 3, account.version)
        self.assertEqual(Decimal("65.00"), account.balance)

    @staticmethod
    def _snapshot_versions(app: Application[Any], aggregate_id: UUID) -> list[int]:
        assert app.snapshots is not None
        return [snapshot.originator_version for snapshot in app.snapshots.get(aggregate_id)]


class ApplicationTestCase(TestCase):
    """The application's behaviour on the persistence module in ``os.environ``."""

    def test_name(self) -> None:
        self.assertEqual("Application", Application.name)

        class MyApplication1(Application[UUID]):
            pass

        class MyApplication2(Application[UUID]):
            name = "MyBoundedContext"

        self.assertEqual("MyApplication1", MyApplication1.name)
        self.assertEqual("MyBoundedContext", MyApplication2.name)

    def test_as_context_manager(self) -> None:
        with Application[UUID]() as app:
            self.assertEqual([], app.save())

    def test_resolve_persistence_topics(self) -> None:
        self.assertIsInstance(Application[UUID]().factory, InfrastructureFactory)
        for setting, topic in (
            ("INFRASTRUCTURE_FACTORY", "eventsourcing.popo:Factory"),  # older names
            ("FACTORY_TOPIC", "eventsourcing.popo:Factory"),
            ("PERSISTENCE_MODULE", "eventsourcing.popo"),
        ):
            app = Application[UUID](env={setting: topic})
            self.assertIsInstance(app.factory, InfrastructureFactory, setting)

        # A module without a factory class, and a class that is not one.
        for topic in ("eventsourcing.application", "eventsourcing.application:Application"):
            with self.assertRaises(InfrastructureFactoryError) as raised:
                Application[UUID](env={"PERSISTENCE_MODULE": topic})
            self.assertIn(topic, str(raised.exception))

    def test_save_returns_recording_event(self) -> None:
        app = Application[UUID]()
        self.assertEqual([], app.save())
        self.assertEqual([], app.save(None))

        recordings = app.save(Aggregate())
        self.assertEqual([1], [r.notification.id for r in recordings])
        recordings = app.save(Aggregate())
        self.assertEqual([2], [r.notification.id for r in recordings])
        recordings = app.save(Aggregate(), Aggregate())
        self.assertEqual([3, 4], [r.notification.id for r in recordings])
        self.assertEqual(
            [r.domain_event.originator_id for r in recordings],
            [r.notification.originator_id for r in recordings],
        )

    def test_take_snapshot_raises_assertion_error_if_snapshotting_not_enabled(self) -> None:
        app = Application[UUID]()
        with self.assertRaises(AssertionError) as raised:
            app.take_snapshot(uuid4())
        self.assertIn("IS_SNAPSHOTTING_ENABLED", str(raised.exception))

    def test_application_with_cached_aggregates_and_fastforward(self) -> None:
        app = Application[UUID](env={"AGGREGATE_CACHE_MAXSIZE": "10"})
        aggregate = Aggregate()
        app.save(aggregate)
        self.assertEqual(aggregate.version, app.repository.get(aggregate.id).version)

        # Events recorded past the repository: a cached copy is brought up to date.
        aggregate.trigger_event(Aggregate.Event)
        aggregate.trigger_event(Aggregate.Event)
        app.events.put(aggregate.collect_events())
        self.assertEqual(aggregate.version, app.repository.get(aggregate.id).version)

        # Saved through the application, too.
        aggregate.trigger_event(Aggregate.Event)
        app.save(aggregate)
        self.assertEqual(aggregate.version, app.repository.get(aggregate.id).version)

    def test_check_aggregate_fastforwarding_nonblocking(self) -> None:
        self._check_aggregate_fastforwarding_during_contention(
            {"AGGREGATE_CACHE_MAXSIZE": "10", "AGGREGATE_CACHE_FASTFORWARD_SKIPPING": "y"}
        )

    def test_check_aggregate_fastforwarding_blocking(self) -> None:
        self._check_aggregate_fastforwarding_during_contention({"AGGREGATE_CACHE_MAXSIZE": "10"})

    def _check_aggregate_fastforwarding_during_contention(self, env: dict[str, str]) -> None:
        """Threads get, change and save one cached aggregate: each gets a version at
        least as new as the last one it saved (or lost a race with), and no event is lost."""
        app = Application[UUID](env=env)
        try:
            aggregate = Aggregate()
            app.save(aggregate)
            app.repository.get(aggregate.id)  # (cached)
            saved_by_thread = self._contend(app, aggregate.id, threads=8, saves_each=5)
            final = app.repository.get(aggregate.id)
            self.assertEqual(Aggregate.INITIAL_VERSION + sum(saved_by_thread), final.version)
            self.assertGreaterEqual(len([n for n in saved_by_thread if n]), 2)
        finally:
            app.close()

    def _contend(
        self, app: Application[UUID], aggregate_id: UUID, threads: int, saves_each: int
    ) -> list[int]:
        errors: list[BaseException] = []
        saved = [0] * threads
        start = threading.Barrier(threads)

        def work(index: int) -> None:
            try:
                start.wait()
                newest_seen = 0
                while saved[index] < saves_each:
                    current: Aggregate = app.repository.get(aggregate_id)
                    if current.version < newest_seen:
                        raise AssertionError(
                            f"Got version {current.version} after seeing {newest_seen}"
                        )
                    newest_seen = current.version
                    current.trigger_event(Aggregate.Event)
                    try:
                        app.save(current)
                    except IntegrityError:
                        continue  # another thread saved first: get it again
                    saved[index] += 1
                    newest_seen = current.version
            except BaseException as error:
                errors.append(error)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        if errors:
            raise errors[0]
        return saved

    def test_application_with_cached_aggregates_not_fastforward(self) -> None:
        app = Application[UUID](
            env={"AGGREGATE_CACHE_MAXSIZE": "10", "AGGREGATE_CACHE_FASTFORWARD": "f"}
        )
        aggregate = Aggregate()
        app.save(aggregate)
        self.assertEqual(aggregate.version, app.repository.get(aggregate.id).version)

        # An event recorded past the repository leaves the cached copy stale...
        aggregate.trigger_event(Aggregate.Event)
        app.events.put(aggregate.collect_events())
        stale: Aggregate = app.repository.get(aggregate.id)
        self.assertEqual(aggregate.version - 1, stale.version)

        # ...and saving an event made from it conflicts.
        stale.trigger_event(Aggregate.Event)
        with self.assertRaises(IntegrityError):
            app.save(stale)

    def test_application_with_deepcopy_from_cache_arg(self) -> None:
        app = Application[UUID](env={"AGGREGATE_CACHE_MAXSIZE": "10"})
        aggregate = Aggregate()
        app.save(aggregate)
        assert app.repository.cache is not None

        # Changing an aggregate got from the cache does not change the cache.
        got: Aggregate = app.repository.get(aggregate.id)
        got.version = 101
        self.assertEqual(1, app.repository.cache.get(aggregate.id).version)
        self.assertEqual(1, app.repository.get(aggregate.id).version)

        # Without copying, the caller gets the cached aggregate itself.
        got = app.repository.get(aggregate.id, deepcopy_from_cache=False)
        self.assertIs(app.repository.cache.get(aggregate.id), got)
        got.version = 101
        self.assertEqual(101, app.repository.cache.get(aggregate.id).version)

    def test_application_with_deepcopy_from_cache_attribute(self) -> None:
        app = Application[UUID](env={"AGGREGATE_CACHE_MAXSIZE": "10"})
        aggregate = Aggregate()
        app.save(aggregate)
        assert app.repository.cache is not None
        got: Aggregate = app.repository.get(aggregate.id)
        got.version = 101
        self.assertEqual(1, app.repository.get(aggregate.id).version)

        app.repository.deepcopy_from_cache = False
        got = app.repository.get(aggregate.id)
        self.assertIs(app.repository.cache.get(aggregate.id), got)
        self.assertIs(app.repository.get(aggregate.id), got)
        got.version = 101
        self.assertEqual(101, app.repository.cache.get(aggregate.id).version)

    def test_application_log(self) -> None:
        app = Application[UUID]()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.assertIs(app.notification_log, app.log)
        self.assertEqual([DeprecationWarning], [w.category for w in caught])
        self.assertIn("notification_log", str(caught[0].message))
