"""Logging: loguru, one sink, text or JSON, with the call's ids bound to every record.

Per-call records carry ``call_sid`` and ``stream_sid`` through ``logger.contextualize``
(a ContextVar copied into each task the call starts). Records have a readable tag as the
first word (``BARGE_IN``, ``TX_FLUSH``, ``CALL_END reason=...``) and, in JSON, the tag and
structured fields under ``record.extra``. Nothing is logged per audio frame at INFO.

Standard-library logs (trio-websocket, in the simulators) are routed into loguru at WARNING and
above: trio-websocket's per-frame DEBUG records cost a third of its throughput.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from loguru import logger

from bridge.core.actions import Log

if TYPE_CHECKING:
    from loguru import Record

_TEXT_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[call_label]}</cyan>{message}"
)


def _add_call_label(record: Record) -> None:
    call_sid = record["extra"].get("call_sid")
    record["extra"]["call_label"] = f"[{call_sid}] " if call_sid else ""


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level: str | int
        try:
            level = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def configure_logging(
    *,
    fmt: str = "text",
    level: str = "INFO",
    sink: TextIO | None = None,
    colorize: bool | None = None,
) -> None:
    """Install the single sink (stderr by default). Safe to call more than once."""
    logger.remove()
    target = sink if sink is not None else sys.stderr
    if fmt == "json":
        logger.add(target, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(
            target,
            level=level,
            format=_TEXT_FORMAT,
            colorize=colorize,
            backtrace=False,
            diagnose=False,
        )
    logger.configure(patcher=_add_call_label)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
    logging.getLogger("trio-websocket").setLevel(logging.WARNING)


def log_tagged(
    level: str, tag: str, message: str, fields: Mapping[str, object] | None = None
) -> None:
    """``TAG message`` with ``tag`` and ``fields`` bound for JSON consumers."""
    logger.bind(tag=tag, **(fields or {})).opt(depth=1).log(level, "{} {}", tag, message)


def log_action(log: Log) -> None:
    """Log a core :class:`~bridge.core.actions.Log` action (typed records included)."""
    logger.bind(tag=log.tag, **log.fields).opt(depth=1).log(
        log.level, "{} {}", log.tag, log.message
    )
