"""The processes of the surface fuzz suite (``tests/fuzz_surface.py``):

* ``python -m tests.bridge_process sim``: the simulated Realtime upstream alone; its URL is
  the first line on stdout.
* ``python -m tests.bridge_process bridge``: what ``bridge serve`` runs with
  ``OPENAI_REALTIME_URL`` set (configuration from the environment, ``serve_until_signal``),
  with the two waits a fuzz run has to sit through made short: the time a stream may take
  to send ``start``, and how long a started stream may go without media. The suite
  imports their values and expects the bridge's close within them.

Two processes, so that the bridge's RSS is the bridge's own: the simulator keeps a record
of every session it served.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import trio

from bridge.config import load_config
from bridge.logs import configure_logging
from bridge.runtime.server import serve_until_signal
from bridge.sim.upstream import SimUpstream, SimUpstreamOptions

START_TIMEOUT_S = 0.5
MEDIA_TIMEOUT_S = 2.0
"""Below what ``BRIDGE_MEDIA_TIMEOUT_S`` allows (3 s), to keep the fuzz run short; no less
than the 2 s after which a media stall is noticed (the timeout cannot come before it)."""
REPLY_MS = 1000
"""Shorter replies than the sim's default: the suite's normal calls finish sooner."""


async def bridge() -> None:
    config = replace(
        load_config(os.environ), start_timeout_s=START_TIMEOUT_S, media_timeout_s=MEDIA_TIMEOUT_S
    )
    configure_logging(fmt=config.log_format, level=config.log_level)
    await serve_until_signal(config)


async def sim() -> None:
    configure_logging(fmt="text", level="WARNING")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(SimUpstream(SimUpstreamOptions(reply_ms=REPLY_MS)).serve)
        print(url, flush=True)


if __name__ == "__main__":
    trio.run(bridge if sys.argv[1:] == ["bridge"] else sim)
