"""An example aggregate, a bank account, used by the application test cases (and by
extension projects' tests, under the names the 9.x ``eventsourcing.tests.domain`` has)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import uuid4

from eventsourcing.domain import Aggregate, AggregateCreated, AggregateEvent

__all__ = ["AccountClosedError", "BankAccount", "EmailAddress", "InsufficientFundsError"]

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class EmailAddress:
    """A value object (stored with the ``EmailAddressAsStr`` transcoding)."""

    address: str


class AccountClosedError(Exception):
    """The account is closed: it takes no more transactions."""


class InsufficientFundsError(Exception):
    """The transaction would take the balance below the overdraft limit."""


class BankAccount(Aggregate):
    """A bank account: a balance changed by transactions, within an overdraft limit."""

    def __init__(self, full_name: str, email_address: EmailAddress) -> None:
        self.full_name = full_name
        self.email_address = email_address
        self.balance = ZERO
        self.overdraft_limit = ZERO
        self.is_closed = False

    class Opened(AggregateCreated):
        full_name: str
        email_address: EmailAddress

    class TransactionAppended(AggregateEvent):
        amount: Decimal

        def apply(self, aggregate: Any) -> None:
            aggregate.balance += self.amount

    class OverdraftLimitSet(AggregateEvent):
        overdraft_limit: Decimal

        def apply(self, aggregate: Any) -> None:
            aggregate.overdraft_limit = self.overdraft_limit

    class Closed(AggregateEvent):
        def apply(self, aggregate: Any) -> None:
            aggregate.is_closed = True

    @classmethod
    def open(cls, full_name: str, email_address: str) -> BankAccount:
        account: BankAccount = cls._create(
            cls.Opened,
            id=uuid4(),
            full_name=full_name,
            email_address=EmailAddress(email_address),
        )
        return account

    def append_transaction(self, amount: Decimal) -> None:
        """Credit (a positive amount) or debit (a negative one) the account."""
        self.check_account_is_not_closed()
        self.check_has_sufficient_funds(amount)
        self.trigger_event(self.TransactionAppended, amount=amount)

    def set_overdraft_limit(self, overdraft_limit: Decimal) -> None:
        assert overdraft_limit >= ZERO, "An overdraft limit is not negative"
        self.check_account_is_not_closed()
        self.trigger_event(self.OverdraftLimitSet, overdraft_limit=overdraft_limit)

    def close(self) -> None:
        self.trigger_event(self.Closed)

    def check_account_is_not_closed(self) -> None:
        if self.is_closed:
            raise AccountClosedError({"account_id": self.id})

    def check_has_sufficient_funds(self, amount: Decimal) -> None:
        if self.balance + amount < -self.overdraft_limit:
            raise InsufficientFundsError({"account_id": self.id})
