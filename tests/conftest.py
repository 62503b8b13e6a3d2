from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
from loguru import logger


class LogCapture:
    """Every loguru record of the test, as (message, extra) pairs; awaitable by tag."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        """Messages of the records at ERROR and above (a bug, with its traceback)."""
        self._changed = trio.Event()

    def sink(self, message: Any) -> None:
        record = message.record
        self.records.append((record["message"], dict(record["extra"])))
        if record["level"].no >= 40:
            self.errors.append(record["message"])
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, tag: str, count: int = 1, call_sid: str | None = None) -> list[str]:
        """The first ``count`` records tagged ``tag``, once they exist."""
        while len(found := self.tagged(tag, call_sid)) < count:
            await self._changed.wait()
        return found

    def tagged(self, tag: str, call_sid: str | None = None) -> list[str]:
        return [
            message
            for message, extra in self.records
            if message.startswith(tag + " ")
            and (call_sid is None or extra.get("call_sid") == call_sid)
        ]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    sink_id = logger.add(capture.sink, level="DEBUG")
    yield capture
    logger.remove(sink_id)
