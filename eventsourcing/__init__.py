"""Event sourcing in Python: aggregates, applications, durable stores, event-driven systems."""

__version__ = "0.1.0"

# Another distribution installs an import package of the same name; this tells ours
# from its files (see keel_eventsourcing_cli).
__distribution__ = "keel-eventsourcing"
