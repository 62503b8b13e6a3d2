"""The tool part of ``bridge demo``: a local tool server, scripted tool calls, a timeline.

The demo call is the barge-in demo's two utterances (:func:`bridge.sim.script.script_from_name`
``"demo"``, unchanged) followed by a tool round trip and a goodbye:

1. the AI greets; the caller asks about opening hours; the AI answers;
2. the caller cuts in ("can you check my order 4217?"): the AI stops at once, and the reply to
   the new words is a ``lookup_order`` call to the demo tool server, which takes 3 s: after
   1 s of silence the model says it is checking (the filler), then the answer follows;
3. the caller says goodbye; the AI says goodbye and calls ``end_call``: once the caller has
   heard the goodbye the bridge hangs up through (a fake) Twilio REST and closes the stream.

Everything runs on 127.0.0.1: the bridge, the simulated upstream, the simulated caller, the
:class:`~bridge.sim.tool_app.SimApplication` (tool server, call events) and the fake Twilio
REST API (:class:`~bridge.sim.rest.SimTwilioRest`).
"""

from __future__ import annotations

import json
from typing import Final
from urllib.parse import urlencode

from bridge.core.toolspec import ToolCatalog, parse_tools_document
from bridge.sim.caller import SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.rest import SimTwilioRest
from bridge.sim.script import AfterAiEnds, At, CallerScript, Utterance, script_from_name
from bridge.sim.tool_app import SimApplication
from bridge.sim.upstream import SimSession
from bridge.sim.upstream_tools import SimToolCall

TOOL_DELAY_S: Final = 3.0
CALLER_SAYS: Final = (
    "What are your opening hours?",
    "Sorry, actually: can you check my order 4217?",
    "That's all, thank you. Goodbye.",
)
TOOL_CALLS: Final = (
    SimToolCall(turn=2, name="lookup_order", arguments='{"order_id": "4217"}'),
    SimToolCall(
        turn=3, name="end_call", arguments='{"reason": "the caller is done"}', say_first_ms=1800
    ),
)
ACCOUNT_SID: Final = "AC" + "0" * 32


def demo_catalog(app_url: str) -> ToolCatalog:
    return parse_tools_document(
        json.dumps(
            {
                "tools": [
                    {
                        "name": "lookup_order",
                        "description": "Look up an order by its number.",
                        "url": f"{app_url}/tools/lookup_order",
                        "parameters": {
                            "type": "object",
                            "required": ["order_id"],
                            "properties": {"order_id": {"type": "string"}},
                        },
                    },
                    {"name": "end_call", "builtin": "end_call"},
                ]
            }
        ),
        "json",
    )


def demo_script() -> CallerScript:
    """The barge-in demo's utterances, then "goodbye" after the tool answer (AI turn 4)."""
    barge_in = script_from_name("demo")
    goodbye = Utterance(duration_ms=1300, seed=3, trigger=AfterAiEnds(turn=4, delay_ms=600))
    # The bridge ends the call (end_call); the caller would only hang up after a minute.
    return CallerScript(utterances=(*barge_in.utterances, goodbye), hangup=At(ms=60_000))


def tool_timeline(
    caller: SimCaller,
    report: CallerReport,
    session: SimSession,
    app: SimApplication,
    rest: SimTwilioRest,
) -> list[tuple[float, str]]:
    """(ms since the caller's time zero, line) of what happened on the application side."""

    def ms(t: float) -> float:
        return (t - caller.origin) * 1000.0

    lines: list[tuple[float, str]] = []
    for exchange in app.tool_calls():
        body = exchange.json()
        args = json.dumps(body["arguments"])
        lines.append((ms(exchange.received_at), f"APP    tool call {body['tool']} {args}"))
        lines.append((ms(exchange.replied_at), f"APP    tool result {exchange.reply.decode()}"))
    for request in rest.hangups_for(report.call_sid):
        form = urlencode(request.form, doseq=True)
        lines.append((ms(request.received_at), f"TWILIO REST call update ({form}): hang-up"))
    starts: dict[str, float] = {}
    for segment in caller.playback.segments():
        if segment.item_id is not None:
            starts.setdefault(segment.item_id, segment.start)
    ending = {
        e["response_id"]
        for _, e in session.sent
        if e["type"] == "response.output_item.done" and e["item"].get("name") == "end_call"
    }
    for response in session.responses.values():
        purpose = (response.metadata or {}).get("bridge_purpose")
        if response.id in ending or purpose == "goodbye":
            purpose = "goodbye"
        labels = {"filler": "filler", "tools": "answer", "goodbye": "goodbye"}
        for item in response.items:
            if purpose in labels and item in starts:
                said = response.transcripts.get(item, "")
                heard = report.heard_ms_by_item.get(item, 0.0)
                of = f"{heard / 1000:.2f} of {response.audio_ms[item] / 1000:.2f} s heard"
                lines.append((ms(starts[item]), f"AI     {labels[purpose]} ({of}): {said[:60]!r}"))
    return lines
