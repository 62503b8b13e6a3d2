"""Personal data off INFO by default; outside text in log lines bounded; floods throttled."""

from __future__ import annotations

import json

import trio
from trio.testing import MockClock

from bridge.core.logsafe import HIDDEN, MAX_LOGGED_PARAMETERS, start_parameters
from bridge.core.ratelimit import LOG_BURST, LOG_INTERVAL_S
from tests.conftest import LogCapture
from tests.harness import start_rig

CALLER = "+15550001111"
CALLED = "+15550002222"
PARAMS = {"From": CALLER, "To": CALLED, "CallSid": "CA1", "tenant": "acme"}


def _everything_logged(logs: LogCapture) -> str:
    return "\n".join(message + json.dumps(extra, default=str) for message, extra in logs.records)


def test_phone_numbers_are_hidden_unless_asked_for() -> None:
    hidden = start_parameters(PARAMS, show_phone_numbers=False)
    assert hidden == f"{{'From': {HIDDEN}, 'To': {HIDDEN}, 'CallSid': 'CA1', 'tenant': 'acme'}}"
    shown = start_parameters(PARAMS, show_phone_numbers=True)
    assert CALLER in shown
    assert CALLED in shown


def test_custom_parameters_are_bounded_in_count_and_length() -> None:
    many = {f"name{i}" + "n" * 100: "v" * 10_000 + "\nFAKE_LOG_LINE" for i in range(50)}
    text = start_parameters(many, show_phone_numbers=False)
    assert len(text) < 2000
    assert text.endswith(f"… {50 - MAX_LOGGED_PARAMETERS} more}}")
    assert "\n" not in text  # quoted: a newline cannot forge a line


async def test_call_start_hides_the_numbers_by_default(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        await rig.caller("listen:2", custom_parameters=PARAMS).run()
        [line] = await logs.wait_for("CALL_START")
    assert f"'From': {HIDDEN}" in line
    assert "'tenant': 'acme'" in line
    everything = _everything_logged(logs)
    assert CALLER not in everything
    assert CALLED not in everything


async def test_with_log_pii_on_call_start_shows_the_numbers(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(30):
        rig = await start_rig(nursery, log_pii=True)
        await rig.caller("listen:2", custom_parameters=PARAMS).run()
        [line] = await logs.wait_for("CALL_START")
    assert f"'From': '{CALLER}'" in line
    assert f"'To': '{CALLED}'" in line


async def test_a_flood_of_malformed_frames_is_a_few_warnings_that_count_the_rest(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        caller = rig.caller("listen:30")
        async with trio.open_nursery() as calls:
            calls.start_soon(caller.run)
            await caller.wait_ai_turn_started(1)
            for _ in range(100):
                await caller.send_raw("{not json")
            await trio.sleep(LOG_INTERVAL_S + 1)  # the throttle's interval, on the call's clock
            await caller.send_raw("{not json")
            caller.hangup()
        handle = await rig.server.registry.wait_for_call(caller.options.call_sid)
        await handle.ended.wait()
    warnings = logs.tagged("TWILIO_MALFORMED")
    assert len(warnings) == LOG_BURST + 1
    assert warnings[-1].endswith(f"; {101 - LOG_BURST - 1} more suppressed")
    assert handle.statistics().twilio_malformed == 101  # every one counted
