"""Shared pieces of the tool tests: a catalog, function-call events, and a driver view."""

from __future__ import annotations

import json
from typing import Any

from bridge.core.actions import Action, SendUpstream, ToApp
from bridge.core.app_work import AppWork, EmitEvent
from bridge.core.call_events import CallEvent
from bridge.core.realtime_client import FunctionCallOutput, ResponseCreate
from bridge.core.toolspec import ToolCatalog, parse_tools_document
from tests.core_driver import Driver

CATALOG: ToolCatalog = parse_tools_document(
    json.dumps(
        {
            "tools": [
                {
                    "name": "lookup_order",
                    "description": "Look up an order.",
                    "url": "http://127.0.0.1:9/tools/lookup_order",
                    "parameters": {
                        "type": "object",
                        "properties": {"order_id": {"type": "string"}},
                    },
                },
                {
                    "name": "book_table",
                    "description": "Book a table (must not be left half-done).",
                    "url": "http://127.0.0.1:9/tools/book_table",
                    "on_barge_in": "finish",
                },
                {"name": "end_call", "builtin": "end_call"},
                {
                    "name": "transfer_call",
                    "builtin": "transfer_call",
                    "targets": {"sales": "+15551230000", "support": "sip:support@pbx.example.com"},
                },
            ]
        }
    ),
    "json",
)


def tool_driver(**changes: Any) -> Driver:
    base: dict[str, Any] = {"tools": CATALOG, "tool_filler_ms": 1000, "call_events": True}
    return Driver.ready(**(base | changes))


def function_call(
    driver: Driver,
    response_id: str,
    call_id: str,
    name: str,
    arguments: str = "{}",
    status: str = "completed",
) -> list[Action]:
    return driver.event(
        {
            "type": "response.output_item.done",
            "response_id": response_id,
            "output_index": 1,
            "item": {
                "id": f"item_{call_id}",
                "type": "function_call",
                "object": "realtime.item",
                "status": status,
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
            },
        }
    )


def outputs(actions: list[Action]) -> list[FunctionCallOutput]:
    return [
        a.event
        for a in actions
        if isinstance(a, SendUpstream) and isinstance(a.event, FunctionCallOutput)
    ]


def creates(actions: list[Action]) -> list[ResponseCreate]:
    return [
        a.event
        for a in actions
        if isinstance(a, SendUpstream) and isinstance(a.event, ResponseCreate)
    ]


def work(actions: list[Action]) -> list[AppWork]:
    return [a.work for a in actions if isinstance(a, ToApp) and not isinstance(a.work, EmitEvent)]


def events(actions: list[Action]) -> list[CallEvent]:
    return [a.work.event for a in actions if isinstance(a, ToApp) and isinstance(a.work, EmitEvent)]
