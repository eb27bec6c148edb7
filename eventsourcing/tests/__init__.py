"""Test cases and example models that extension projects subclass (9.x API)."""
