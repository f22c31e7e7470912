"""The one error the Docker plugin raises."""

from __future__ import annotations


class PluginError(Exception):
    """A call refused, with the reason Docker shows the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
