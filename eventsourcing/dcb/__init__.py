"""Dynamic consistency boundaries: tagged events appended on a query condition.

A decision is checked against a query over tagged events and recorded only if
no event matching that query has been recorded since it was read. The
interface is in ``eventsourcing.dcb.api``; the stores are
``eventsourcing.dcb.popo`` (in memory), ``eventsourcing.dcb.sqlite`` and
``eventsourcing.dcb.postgres_tt``.
"""
