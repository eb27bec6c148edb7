"""SQL for DCB queries over two tables, shared by the SQLite and PostgreSQL stores.

Events are rows (position, type, data, tags) of the events table; each distinct
tag of an event is also a row (tag, position, type) of the tags table, whose key
is (tag, position). A query item with tags is answered from the tags table: the
positions under its first tag, after a position, each checked for the other tags
(and the item's types) by a look-up of the key; an item with only types, from
an index on (type, position). So checking an append condition costs a few
indexed look-ups per query item, whatever the number of events stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.dcb._common import match_all
from eventsourcing.dcb.api import DCBQueryItem


@dataclass(frozen=True)
class Statement:
    sql: str
    params: list[Any]


class DCBSQL:
    """Builds statements for the tables ``events`` and ``tags`` (quoted names),
    with ``mark`` as the placeholder of a parameter (``?`` or ``%s``)."""

    def __init__(self, events: str, tags: str, mark: str) -> None:
        self.events = events
        self.tags = tags
        self.mark = mark
        self.columns = "position, type, data, tags"

    def read(
        self,
        items: Sequence[DCBQueryItem],
        after: int,
        head: int | None,
        limit: Any,
        *,
        bound: str | None = None,
    ) -> Statement:
        """The events matching ``items`` after ``after`` (and up to ``head``, if
        given, or up to the value of the SQL expression ``bound``), at most ``limit``
        of them, in order."""
        m = self.mark
        if match_all(items):
            sql = f"SELECT {self.columns} FROM {self.events} WHERE position > {m}"
            params: list[Any] = [after]
            if head is not None:
                sql += f" AND position <= {m}"
                params.append(head)
            if bound is not None:
                sql += f" AND position <= {bound}"
            return Statement(sql + f" ORDER BY position LIMIT {m}", [*params, limit])
        union = self.positions(items, after, head, distinct=True, bound=bound)
        return Statement(
            f"SELECT {self.columns} FROM {self.events} "
            f"WHERE position IN ({union.sql}) ORDER BY position LIMIT {m}",
            [*union.params, limit],
        )

    def any_match(self, items: Sequence[DCBQueryItem], after: int) -> Statement:
        """One row, true if an event after ``after`` matches ``items``."""
        matches = self.matches(items, after)
        return Statement(f"SELECT EXISTS ({matches.sql})", matches.params)

    def matches(self, items: Sequence[DCBQueryItem], after: int) -> Statement:
        """Rows (at least one) if an event after ``after`` matches ``items``."""
        if match_all(items):
            return Statement(f"SELECT 1 FROM {self.events} WHERE position > {self.mark}", [after])
        return self.positions(items, after, None, distinct=False)

    def positions(
        self,
        items: Sequence[DCBQueryItem],
        after: int,
        head: int | None,
        *,
        distinct: bool,
        bound: str | None = None,
    ) -> Statement:
        selects = [self._item_positions(item, after, head, bound) for item in items]
        joiner = " UNION " if distinct else " UNION ALL "
        return Statement(
            joiner.join(s.sql for s in selects), [p for s in selects for p in s.params]
        )

    def _item_positions(
        self, item: DCBQueryItem, after: int, head: int | None, bound: str | None
    ) -> Statement:
        m = self.mark
        tags = sorted(set(item.tags))
        types = sorted(set(item.types))
        if not tags:
            sql = f"SELECT position FROM {self.events} WHERE type IN ({self._marks(types)})"
            params: list[Any] = [*types]
            column = "position"
        else:
            sql = f"SELECT a.position FROM {self.tags} a WHERE a.tag = {m}"
            params = [tags[0]]
            column = "a.position"
            if types:
                sql += f" AND a.type IN ({self._marks(types)})"
                params += types
            for tag in tags[1:]:
                sql += (
                    f" AND EXISTS (SELECT 1 FROM {self.tags} b"
                    f" WHERE b.tag = {m} AND b.position = a.position)"
                )
                params.append(tag)
        sql += f" AND {column} > {m}"
        params.append(after)
        if head is not None:
            sql += f" AND {column} <= {m}"
            params.append(head)
        if bound is not None:
            sql += f" AND {column} <= {bound}"
        return Statement(sql, params)

    def _marks(self, values: Sequence[Any]) -> str:
        return ", ".join([self.mark] * len(values))
