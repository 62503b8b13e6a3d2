"""Exceptions that cross task boundaries inside a call."""

from __future__ import annotations


class CallEnded(Exception):
    """A task found a known reason to end the call (not a bug); ``reason`` goes to CALL_END."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
