"""Example systems (importable, so that workers can name them: examples.dogschool:system)."""
