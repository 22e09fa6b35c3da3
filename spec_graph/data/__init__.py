"""Packaged evaluation sets (JSON Lines with ``id``, ``problem``, ``answer``); see ``SOURCES.md``."""
