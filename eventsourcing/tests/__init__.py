"""Test cases shipped for the authors of extensions (custom recorders, persistence
modules): subclass those of ``eventsourcing.tests.persistence`` to check a store
against the recorder protocol. This project's own tests are in the top-level
``tests`` directory."""
