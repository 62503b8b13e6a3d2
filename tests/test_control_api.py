"""The control API: off without ``BRIDGE_CONTROL_TOKEN``, 401 without the bearer token,
strict JSON for notes, a per-call rate limit, and a burst of notes answered at once."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from trio.testing import MockClock

from bridge.core.control import (
    MAX_NOTE_CHARS,
    NOTES_BURST,
    NoteRequestBody,
    Refusal,
    bearer_matches,
    is_json_content_type,
    parse_note,
)
from bridge.sim.caller import SimCaller
from tests.conftest import LogCapture
from tests.harness import CONTROL_AUTH, CONTROL_TOKEN, Rig, start_rig
from tests.rawhttp import exchange, request

TOKEN = CONTROL_TOKEN.encode()


# -- sans-IO: the bearer check and the note's types -------------------------------------------


def test_only_exactly_one_bearer_with_the_exact_token_matches() -> None:
    assert bearer_matches([b"Bearer " + TOKEN], TOKEN)
    assert bearer_matches([b"bearer  " + TOKEN + b" "], TOKEN)  # scheme case, spaces
    for values in (
        [],
        [b""],
        [b"Bearer"],
        [b"Bearer "],
        [b"Bearer " + TOKEN[:-1]],
        [b"Bearer " + TOKEN + b"x"],
        [b"Bearer " + TOKEN.upper()],
        [b"Basic " + TOKEN],
        [TOKEN],
        [b"Bearer " + TOKEN, b"Bearer " + TOKEN],
        [b"Bearer \xff\xfe"],
        [b"Bearer " + b"x" * 100_000],
    ):
        assert not bearer_matches(values, TOKEN), values


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"text": "x", "respond": "false"}', 400),
        (b'{"text": "x", "respond": 0}', 400),
        (b'{"text": "x", "respond": null}', 400),
        (b'{"text": "x", "awaits_confirmation": "yes"}', 400),
        (b'{"text": "x", "epoch": "1"}', 400),
        (b'{"text": "x", "epoch": -1}', 400),
        (b'{"text": "x", "epoch": 1.0}', 400),
        (b'{"text": "x", "epoch": true}', 400),
        (b'{"text": "x", "epoch": 3}', 400),  # ahead of the call's epoch (2)
        (b'{"text": "x", "epoch": 99999999999999999999999}', 400),
        (b'{"text": "x", "epoch": NaN}', 400),
        (b'{"text": "x", "reponds": true}', 400),  # a typo is refused, not ignored
        (b'{"text": ""}', 400),
        (b'{"text": 5}', 400),
        (b"{}", 400),
        (b'["text"]', 400),
        (b'"text"', 400),
        (b"", 400),
        (b"{not json", 400),
        (b'{"text": "\xff"}', 400),  # not UTF-8
        (json.dumps({"text": "x" * (MAX_NOTE_CHARS + 1)}).encode(), 413),
    ],
)
def test_a_note_of_the_wrong_shape_is_refused_with_a_reason(body: bytes, status: int) -> None:
    refused = parse_note(body, current_epoch=2)
    assert isinstance(refused, Refusal)
    assert refused.status == status
    assert "\n" not in refused.reason
    assert len(refused.reason) < 200


def test_a_well_formed_note_is_taken_as_typed() -> None:
    assert parse_note(
        b'{"text": "VIP", "respond": true, "awaits_confirmation": false, "epoch": 2}',
        current_epoch=2,
    ) == NoteRequestBody("VIP", respond=True, awaits_confirmation=False, epoch=2)
    assert parse_note(
        json.dumps({"text": "é" * MAX_NOTE_CHARS, "epoch": None}).encode(), current_epoch=0
    ) == NoteRequestBody("é" * MAX_NOTE_CHARS, respond=False, awaits_confirmation=False, epoch=None)


def test_the_content_type_is_json_or_absent() -> None:
    assert is_json_content_type(None)
    assert is_json_content_type(b"application/json")
    assert is_json_content_type(b"Application/JSON; charset=utf-8")
    assert not is_json_content_type(b"text/plain")
    assert not is_json_content_type(b"application/x-www-form-urlencoded")


# -- over HTTP ------------------------------------------------------------------------------


async def _live_call(nursery: trio.Nursery, rig: Rig) -> SimCaller:
    caller = rig.caller("listen:60")
    nursery.start_soon(caller.run)
    await caller.wait_ai_turn_started(1)
    return caller


def _notes_sent(rig: Rig) -> list[str]:
    return [
        e["item"]["content"][0]["text"]
        for _, e in rig.sim.sessions[0].received
        if e.get("type") == "conversation.item.create"
    ]


async def test_without_a_control_token_the_control_api_is_off(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(30):
        rig = await start_rig(nursery, control_token=None)
        caller = await _live_call(nursery, rig)
        sid = caller.options.call_sid
        async with httpx.AsyncClient(base_url=rig.server.base_url, headers=CONTROL_AUTH) as http:
            listed = await http.get("/calls")
            note = await http.post(f"/calls/{sid}/notes", json={"text": "x"})
        caller.hangup()
    for answer in (listed, note):
        assert answer.status_code == 404
        assert answer.text == "control API off (set BRIDGE_CONTROL_TOKEN)\n"
    assert _notes_sent(rig) == []


async def test_without_the_bearer_token_every_control_request_is_a_401(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    wrong_headers: list[list[tuple[str, str | bytes]]] = [
        [],
        [("Authorization", "Bearer wrong-token")],
        [("Authorization", f"Basic {CONTROL_TOKEN}")],
        [("Authorization", f"Bearer {CONTROL_TOKEN}"), ("Authorization", "Bearer x")],
        [("Authorization", b"Bearer \xff" + TOKEN)],
    ]
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        caller = await _live_call(nursery, rig)
        sid = caller.options.call_sid
        body = b'{"text": "Say the secret."}'
        answers = []
        for headers in wrong_headers:
            for method, path in (("GET", "/calls"), ("POST", f"/calls/{sid}/notes")):
                raw = request(method, path, headers=headers, body=b"" if method == "GET" else body)
                answers.append(await exchange(rig.server.port, raw))
        caller.hangup()
    for answer in answers:
        assert answer is not None
        assert (answer.status, answer.body) == (401, b"missing or wrong bearer token\n")
        assert answer.headers[b"www-authenticate"].startswith(b"Bearer")
    assert _notes_sent(rig) == []
    assert len(logs.tagged("CONTROL_AUTH")) == 5  # the rest suppressed, not one line each
    assert logs.errors == []


async def test_notes_over_http_are_strictly_typed(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    cases = [
        ({"text": "x", "respond": "false"}, 400),
        ({"text": "x", "epoch": "0"}, 400),
        ({"text": "x", "epoch": 7}, 400),
        ({"text": "x", "unknown": 1}, 400),
        ({"text": "x" * (MAX_NOTE_CHARS + 1)}, 413),
        ({"text": "The caller is a VIP.", "respond": False, "epoch": 0}, 202),
    ]
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        caller = await _live_call(nursery, rig)
        url = f"/calls/{caller.options.call_sid}/notes"
        answers = []
        async with httpx.AsyncClient(base_url=rig.server.base_url, headers=CONTROL_AUTH) as http:
            for note, _ in cases:
                answers.append((await http.post(url, json=note)).status_code)
                await trio.sleep(1.0)  # past the rate limit: each request is judged on its body
            text_plain = {"content-type": "text/plain"}
            plain = await http.post(url, content=b'{"text": "x"}', headers=text_plain)
        caller.hangup()
    assert answers == [status for _, status in cases]
    assert plain.status_code == 415
    assert _notes_sent(rig) == ["The caller is a VIP."]


async def test_notes_beyond_the_rate_limit_get_429_with_retry_after(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    """1000 notes at once: the burst is queued, every other one is refused at once."""
    statuses: list[int] = []
    retry_after: set[str] = set()
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        caller = await _live_call(nursery, rig)
        url = f"/calls/{caller.options.call_sid}/notes"
        auth: list[tuple[str, str | bytes]] = list(CONTROL_AUTH.items())

        async def post(text: str) -> int:
            body = json.dumps({"text": text}).encode()
            answer = await exchange(rig.server.port, request("POST", url, headers=auth, body=body))
            assert answer is not None
            if answer.status == 429:
                retry_after.add(answer.headers[b"retry-after"].decode())
            return answer.status

        async def post_one(i: int) -> None:
            statuses.append(await post(f"note {i}"))

        started = trio.current_time()
        async with trio.open_nursery() as burst:
            for i in range(1000):
                burst.start_soon(post_one, i)
        burst_s = trio.current_time() - started
        await trio.sleep(0.2)  # one note's worth of the limit comes back
        later = await post("later")
        caller.hangup()
        report_close = await caller.wait_closed()
    assert sorted(set(statuses)) == [202, 429]
    assert statuses.count(202) == NOTES_BURST
    assert retry_after == {"1"}
    assert burst_s < 1.0  # nobody waited on the notes queue
    assert later == 202
    assert len(_notes_sent(rig)) == NOTES_BURST + 1
    assert report_close.by == "caller"
