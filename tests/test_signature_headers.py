"""``X-Twilio-Signature`` of any content: a clear 403 (or 431), never a traceback.

The header is compared as bytes, in constant time; exactly one must be present and valid,
on the webhook and on the media stream upgrade.
"""

from __future__ import annotations

import base64
import os
from urllib.parse import urlencode

import pytest
import trio
from trio.testing import MockClock

from bridge.core.signature import compute_signature, is_valid_signature
from tests.conftest import LogCapture
from tests.harness import AUTH_TOKEN, Rig, start_rig
from tests.rawhttp import exchange, request

PUBLIC = "https://bridge.example.com"
FORM = {"CallSid": "CA123", "From": "+15550001111", "To": "+15550002222"}
GOOD_WEBHOOK = compute_signature(AUTH_TOKEN, f"{PUBLIC}/twilio/voice", FORM).encode()
GOOD_UPGRADE = compute_signature(AUTH_TOKEN, "wss://bridge.example.com/twilio/media").encode()

# Each case: the X-Twilio-Signature header values sent (none, one or several).
BAD_SIGNATURES: dict[str, list[bytes]] = {
    "missing": [],
    "empty": [b""],
    "non-ASCII UTF-8": ["sïgnätürë✓".encode()],
    "non-UTF-8 bytes": [b"\xff\xfe\x80"],
    "huge (15 KiB)": [b"A" * 15 * 1024],
    "forged": [b"AAAAAAAAAAAAAAAAAAAAAAAAAAA="],
    "duplicated, both valid": [GOOD_WEBHOOK, GOOD_WEBHOOK],
    "duplicated, one valid": [GOOD_WEBHOOK, b"AAAA"],
}


def test_the_comparison_takes_bytes_and_text_of_any_content() -> None:
    url = f"{PUBLIC}/twilio/voice"
    assert is_valid_signature(AUTH_TOKEN, url, GOOD_WEBHOOK, FORM)
    assert is_valid_signature(AUTH_TOKEN, url, GOOD_WEBHOOK.decode(), FORM)
    for value in ([b""], [b"\xff\xfe"], ["sïgnätürë✓"], ["\udcff"], [b"A" * 100_000]):
        assert not is_valid_signature(AUTH_TOKEN, url, value[0], FORM)


def test_a_url_with_an_unparseable_host_is_checked_as_it_is() -> None:
    for url in ("wss://[/twilio/media", "wss://host:99999/twilio/media", "wss://h:x/y"):
        assert is_valid_signature(AUTH_TOKEN, url, compute_signature(AUTH_TOKEN, url))
        assert not is_valid_signature(AUTH_TOKEN, url, b"AAAA")


def _webhook(signatures: list[bytes]) -> bytes:
    headers: list[tuple[str, str | bytes]] = [("Content-Type", "application/x-www-form-urlencoded")]
    headers += [("X-Twilio-Signature", value) for value in signatures]
    return request("POST", "/twilio/voice", headers=headers, body=urlencode(FORM).encode())


def _upgrade(signatures: list[bytes]) -> bytes:
    headers: list[tuple[str, str | bytes]] = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
        ("Sec-WebSocket-Version", "13"),
    ]
    headers += [("X-Twilio-Signature", value) for value in signatures]
    return request("GET", "/twilio/media", headers=headers).replace(b"Connection: close\r\n", b"")


async def _rig(nursery: trio.Nursery) -> Rig:
    return await start_rig(nursery, public_url=PUBLIC)


@pytest.mark.parametrize("case", list(BAD_SIGNATURES))
async def test_a_bad_signature_on_the_webhook_is_a_403(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture, case: str
) -> None:
    with trio.fail_after(20):
        rig = await _rig(nursery)
        port = rig.server.port
        good = await exchange(port, _webhook([GOOD_WEBHOOK]))
        bad = await exchange(port, _webhook(BAD_SIGNATURES[case]))
    assert good is not None
    assert good.status == 200
    assert bad is not None
    assert (bad.status, bad.body) == (403, b"invalid signature\n")
    assert logs.errors == []


@pytest.mark.parametrize("case", list(BAD_SIGNATURES))
async def test_a_bad_signature_on_the_upgrade_is_a_403_and_opens_no_session(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture, case: str
) -> None:
    signatures = [GOOD_UPGRADE if v == GOOD_WEBHOOK else v for v in BAD_SIGNATURES[case]]
    with trio.fail_after(20):
        rig = await _rig(nursery)
        bad = await exchange(rig.server.port, _upgrade(signatures))
    assert bad is not None
    assert (bad.status, bad.body) == (403, b"invalid signature\n")
    assert rig.sim.sessions == []
    assert logs.errors == []


async def test_a_signature_over_the_head_limit_is_a_431_on_both(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    huge = [b"A" * 20 * 1024]
    with trio.fail_after(20):
        rig = await _rig(nursery)
        webhook = await exchange(rig.server.port, _webhook(huge))
        upgrade = await exchange(rig.server.port, _upgrade(huge))
    assert webhook is not None
    assert upgrade is not None
    assert (webhook.status, upgrade.status) == (431, 431)
    assert logs.errors == []


async def test_refused_signatures_are_logged_but_not_one_line_each(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(20):
        rig = await _rig(nursery)
        for _ in range(20):
            refused = await exchange(rig.server.port, _webhook([b"AAAA"]))
            assert refused is not None
            assert refused.status == 403
    assert len(logs.tagged("TWILIO_SIGNATURE")) == 5
