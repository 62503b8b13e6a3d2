"""Typed log records survive the JSON log: what the bridge logs is what a reader gets back."""

from __future__ import annotations

import io
import json

import pytest

from bridge.core.actions import Truncation
from bridge.core.records import (
    BargeInReport,
    BridgeReady,
    CallExitReport,
    CallFinished,
    LogRecord,
    ResponseFinished,
    ToolCallReport,
    ToolCancelledReport,
    ToolDeliveredReport,
    ToolFillerReport,
    ToolResponseReport,
    ToolResultReport,
    read_record,
    report,
)
from bridge.core.stats import CallCounters
from bridge.logs import configure_logging, log_action

RECORDS: list[LogRecord] = [
    BridgeReady("127.0.0.1", 43210),
    BargeInReport(
        trigger="server",
        clear_ms=0.41,
        flushed_frames=12,
        flushed_ms=480,
        unplayed_at_twilio_ms=96,
        cancelled=("resp_1",),
        truncations=(Truncation("item_1", 1225, 3000),),
        deleted=("item_2",),
        upstream_ms=0.6,
        held=False,
        caller_speech_ms=6610.0,
    ),
    ResponseFinished("resp_1", "cancelled", "turn_detected", 3000, 251.0),
    CallFinished(
        reason="openai_closed",
        detail="code=1011 boom",
        duration_s=12.5,
        rest_hangup="hung up (HTTP 200)",
        noise_floor_dbfs=None,
        statistics=CallCounters(barge_ins=2).snapshot().as_dict(),
    ),
    ToolCallReport("lookup_order", "call_1", "url", "resp_1", 2),
    ToolResultReport("lookup_order", "call_1", "timeout", 8000.0, "no answer within 8 s"),
    ToolDeliveredReport("lookup_order", "call_1", 0.42),
    ToolCancelledReport("lookup_order", "call_1", "barge_in", late_result=True),
    ToolResponseReport("resp_1", ("call_1", "call_2"), "respond", 2),
    ToolFillerReport("resp_1", 750.0, 250.0),
    CallExitReport("end_call", "call_3", "heard", ""),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.TAG)
def test_a_record_read_back_from_the_json_log_equals_what_was_logged(record: LogRecord) -> None:
    sink = io.StringIO()
    configure_logging(fmt="json", level="INFO", sink=sink)
    try:
        log_action(report("INFO", record))
    finally:
        configure_logging()
    [line] = sink.getvalue().splitlines()
    logged = json.loads(line)["record"]
    assert logged["message"] == f"{record.TAG} {record.text()}"
    assert read_record(type(record), logged["extra"]) == record
    other = BridgeReady if not isinstance(record, BridgeReady) else ResponseFinished
    assert read_record(other, logged["extra"]) is None
