"""Event sourcing in Python: aggregates, applications, durable stores, event-driven systems."""

__version__ = "0.1.0"
