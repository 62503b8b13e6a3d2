"""The bridge's JSON log (``--log-format json``) read back as typed records.

Each line is loguru's ``serialize=True`` object; what a bench needs is under
``record.extra``: the call's ids and, for the records of :mod:`bridge.core.records`, the tag
and the fields, which :func:`bridge.core.records.read_record` rebuilds. Nothing here looks at
a message's wording.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bridge.core.records import LogRecord, read_record

R = TypeVar("R", bound=LogRecord)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One JSON log line."""

    wall_s: float
    """When the bridge logged it: Unix time (s), the bridge's wall clock."""
    extra: Mapping[str, Any]
    """Loguru's ``record.extra``: bound ids, ``tag`` and typed ``record`` fields."""

    @property
    def call_sid(self) -> str | None:
        sid = self.extra.get("call_sid")
        return sid if isinstance(sid, str) else None

    def read(self, cls: type[R]) -> R | None:
        """The line as a record of type ``cls``, or ``None`` if it is another kind."""
        return read_record(cls, self.extra)


def parse_log(text: str) -> list[LogLine]:
    """Every JSON line of ``text`` in order; lines that are not loguru JSON are skipped."""
    lines: list[LogLine] = []
    for raw in text.splitlines():
        if not raw.startswith("{"):
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        record = obj.get("record") if isinstance(obj, dict) else None
        if not isinstance(record, dict):
            continue
        extra = record.get("extra")
        stamp = (record.get("time") or {}).get("timestamp")
        if isinstance(extra, dict) and isinstance(stamp, int | float):
            lines.append(LogLine(float(stamp), extra))
    return lines


def read_log(path: Path) -> list[LogLine]:
    return parse_log(path.read_text(errors="replace"))


def records(lines: Iterable[LogLine], cls: type[R]) -> list[tuple[LogLine, R]]:
    """The lines that are records of type ``cls``, each with its record, in log order."""
    return [(line, record) for line in lines if (record := line.read(cls)) is not None]


def lines_by_call(lines: Iterable[LogLine]) -> dict[str, list[LogLine]]:
    """The lines bound to a call, by ``call_sid``, in log order."""
    by_call: dict[str, list[LogLine]] = {}
    for line in lines:
        if (sid := line.call_sid) is not None:
            by_call.setdefault(sid, []).append(line)
    return by_call
