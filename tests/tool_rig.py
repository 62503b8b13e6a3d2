"""Integration rig for tools: :func:`tests.harness.start_rig` and a local application.

Everything on 127.0.0.1 over real sockets. The application (:class:`SimApplication`) serves
the tool endpoints and the call-events receiver; REST exits (hang-up, ``<Dial>``) go to the
rig's fake Twilio REST API (``rig.rest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from bridge.config import Secret
from bridge.core.toolspec import ToolCatalog, parse_tools_document
from bridge.sim.tool_app import SimApplication, ToolBehaviour
from bridge.sim.upstream import SimUpstreamOptions
from tests.harness import Rig, start_rig

SECRET = "whsec_test_secret"

TOOLS_TOML = """
[[tools]]
name = "lookup_order"
description = "Look up an order by its number."
url = "{app}/tools/lookup_order"
timeout_s = {timeout_s}
[tools.parameters]
type = "object"
properties = {{ order_id = {{ type = "string" }} }}

[[tools]]
name = "book_table"
description = "Book a table; never left half-done."
url = "{app}/tools/book_table"
on_barge_in = "finish"
timeout_s = {timeout_s}

[[tools]]
name = "broken"
description = "A tool whose behaviour each test sets."
url = "{app}/tools/broken"
timeout_s = {timeout_s}

[[tools]]
name = "unreachable"
description = "Nobody listens there."
url = "http://127.0.0.1:{dead_port}/tools/unreachable"

[[tools]]
name = "end_call"
builtin = "end_call"

[[tools]]
name = "transfer_call"
builtin = "transfer_call"
targets = {{ sales = "+15551230000", support = "sip:support@pbx.example.com" }}
"""


def catalog(app_url: str, *, timeout_s: float = 8, dead_port: int = 9) -> ToolCatalog:
    text = TOOLS_TOML.format(app=app_url, timeout_s=timeout_s, dead_port=dead_port)
    return parse_tools_document(text, "toml")


@dataclass
class ToolRig(Rig):
    """:class:`tests.harness.Rig` (bridge, simulated upstream, fake Twilio REST) and the
    application."""

    app: SimApplication
    app_url: str


async def start_tool_rig(
    nursery: trio.Nursery,
    *,
    sim_options: SimUpstreamOptions | None = None,
    tools: dict[str, ToolBehaviour] | None = None,
    timeout_s: float = 8,
    events: bool = True,
    **config_changes: Any,
) -> ToolRig:
    app = SimApplication(SECRET, tools=dict(tools or {}))
    app_url = await nursery.start(app.serve)
    rig = await start_rig(
        nursery,
        sim_options=sim_options,
        tools=catalog(app_url, timeout_s=timeout_s),
        app_secret=Secret(SECRET),
        events_url=f"{app_url}/events" if events else None,
        **config_changes,
    )
    return ToolRig(rig.server, rig.sim, rig.rest, app, app_url)
