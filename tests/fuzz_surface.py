"""Fuzzing the bridge's whole outside surface, against one bridge process, over loopback.

One bridge runs in its own process for the whole module (:mod:`tests.bridge_process`, what
``bridge serve`` runs), with ``TWILIO_AUTH_TOKEN`` and ``BRIDGE_CONTROL_TOKEN`` set. While
hypothesis throws requests at it, normal simulated calls are placed on it back to back
(:class:`tests.surface.NormalCalls`). Surfaces: HTTP requests to every route, WebSocket
upgrades, Twilio frames on accepted streams, the notes API, and WebSocket frames far over
the limit. Properties:

* every HTTP request gets an answer; an error is 4xx (never 500, which would be a bug)
  with one short line of body;
* every accepted stream ends with a close code that says why: the one the bridge's own
  parser and limits predict for the frames sent (1000 after ``stop``, 1007 invalid UTF-8,
  1008 no ``start``, 1009 too big, 1011 the call failed or its media stopped), with a reason;
* at the end (the last test): the process is alive and still answers, every normal call
  completed, no record at ERROR was logged (no traceback), the RSS is within
  :data:`RSS_MARGIN_KIB` of what it was after start-up, and SIGTERM ends it with status 0.

``make test`` runs a quick size, ``make fuzz`` the full one (``BRIDGE_FUZZ=full``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from bridge.core import twilio
from bridge.core.control import MAX_NOTE_CHARS
from bridge.core.signature import compute_signature
from bridge.runtime.http import HttpLimits
from bridge.sim import wire
from tests import bridge_process
from tests.rawhttp import RawResponse
from tests.surface import (
    AUTH_TOKEN,
    CONTROL_TOKEN,
    FULL,
    BridgeProcess,
    NormalCalls,
    SyncWebSocket,
    b64,
    fuzz_settings,
    http_exchange,
)

LIMITS = HttpLimits()
pytestmark = pytest.mark.xdist_group("fuzz_surface")
"""Under pytest-xdist (``make test``) the whole module runs on one worker, in file order:
one bridge process, and the last test's checks cover every test's traffic."""


@dataclass(frozen=True)
class Fill:
    """``size`` times ``byte``: a big body that hypothesis shows in a few characters (it
    builds the repr of every example, and warns, an error here, past 30 kB)."""

    size: int
    byte: int

    def __bytes__(self) -> bytes:
        return bytes([self.byte]) * self.size


RSS_MARGIN_KIB = 40 * 1024
"""What the bridge's RSS may grow over the run: the allocator keeps some of what 20
concurrent oversized messages and a thousand connections used (the full run: +17 MB)."""
CLOSE_WAIT_S = bridge_process.MEDIA_TIMEOUT_S + 4.0
"""The longest a stream should have to wait for the bridge to close it."""
REPORT = Path(__file__).parent.parent / "out" / "fuzz-surface.json"
"""The full-size run's RSS and counts (``make fuzz`` prints it)."""


class Surface:
    """Not a dataclass: hypothesis prints it with every failing example, in one line."""

    __slots__ = ("bridge", "calls", "rss_before_kib")

    def __init__(self, bridge: BridgeProcess, calls: NormalCalls, rss_before_kib: int) -> None:
        self.bridge = bridge
        self.calls = calls
        self.rss_before_kib = rss_before_kib

    def __repr__(self) -> str:
        return f"Surface(port={self.bridge.port})"


@pytest.fixture(scope="module")
def surface(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Surface]:
    log = Path(tmp_path_factory.mktemp("fuzz")) / "bridge.log"
    bridge = BridgeProcess(log)
    try:
        warm = http_exchange(bridge.port, _request("GET", "/healthz"))
        assert warm is not None
        calls = NormalCalls(bridge)
        calls.start()
        yield Surface(bridge, calls, bridge.rss_kib())
    finally:
        if bridge.alive:
            bridge.stop()


def _request(
    method: str,
    target: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    *,
    version: bytes = b"HTTP/1.1",
    framing: str = "length",
) -> bytes:
    lines = [method.encode("latin-1") + b" " + target.encode("latin-1") + b" " + version]
    lines += [name + b": " + value for name, value in headers or [(b"host", b"127.0.0.1")]]
    if framing == "length" and body:
        lines.append(b"content-length: " + str(len(body)).encode())
    if framing == "chunked":
        lines.append(b"transfer-encoding: chunked")
        body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _assert_clear_error(response: RawResponse | None, *, head: bool = False) -> None:
    """An answer; an error one is a 4xx (a 5xx other than 501 or 503 would be a bug) with
    one short line of text (or none, for a ``HEAD`` the bridge could parse)."""
    assert response is not None, "no answer"
    assert 100 <= response.status < 600
    assert response.status < 500 or response.status in (501, 503), response
    if response.status >= 400 and not (head and response.body == b""):
        assert len(response.body) <= 200, response.body
        assert response.body.endswith(b"\n")
        assert response.body.count(b"\n") == 1
        assert b"Traceback" not in response.body


# -- HTTP requests to every route --------------------------------------------------------------

ROUTES = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/twilio/voice",
    "/twilio/media",
    "/calls",
    "/calls/CAnope/notes",
    "/calls//notes",
    "/",
    "/nope",
    "/healthz/",
    "/%ff%fe",
    "/calls/%2e%2e/notes",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT"]
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
header_value = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"{not json", b'{"text": "\xff"}', b"CallSid=CA1&From=%2B1555", b"[]"]),
    st.builds(
        Fill,
        st.sampled_from(
            [LIMITS.max_body_bytes - 1, LIMITS.max_body_bytes, LIMITS.max_body_bytes + 1, 70_000]
        ),
        st.integers(0, 255),
    ),
)
headers_strategy = st.lists(
    st.one_of(
        st.sampled_from(
            [
                (b"host", b"127.0.0.1"),
                (b"host", b"bad host"),
                (b"host", b"[::1]:99999"),
                (b"content-type", b"application/json"),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-type", b"text/plain; charset=\xff"),
                (b"authorization", b"Bearer " + CONTROL_TOKEN.encode()),
                (b"authorization", b"Bearer wrong"),
                (b"authorization", b"\xff\xfe"),
                (b"x-twilio-signature", b"\xc3\xa9\xe2\x9c\x93"),
                (b"x-twilio-signature", b""),
                (b"connection", b"keep-alive"),
                (b"expect", b"100-continue"),
                (b"upgrade", b"h2c"),
            ]
        ),
        st.tuples(st.text(TOKEN_CHARS, min_size=1, max_size=20).map(str.encode), header_value),
        st.tuples(
            st.just(b"x-padding"),
            st.sampled_from([100, 8000, LIMITS.max_head_bytes - 300, 17_000, 40_000]).map(
                lambda n: b"p" * n
            ),
        ),
    ),
    max_size=6,
)


@given(
    method=st.one_of(st.sampled_from(METHODS), st.text(TOKEN_CHARS, min_size=1, max_size=12)),
    target=st.one_of(
        st.sampled_from(ROUTES),
        st.builds(lambda r, q: f"{r}?{q}", st.sampled_from(ROUTES), st.text(TOKEN_CHARS)),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=1, max_size=40).map(
            lambda t: "/" + t
        ),
    ),
    # HTTP/1.1 twice: mostly requests that get as far as a route.
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTX/1.1"]),
    headers=headers_strategy,
    body=bodies,
    framing=st.sampled_from(["length", "length", "chunked", "none", "lie"]),
)
@fuzz_settings(quick=100, full=3000)
def test_fuzz_http_requests_get_a_clear_answer(
    surface: Surface,
    method: str,
    target: str,
    version: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | Fill,
    framing: str,
) -> None:
    data = _request(
        method,
        target,
        [(b"host", b"127.0.0.1"), *headers],
        bytes(body),
        version=version,
        framing="length" if framing == "lie" else framing,
    )
    if framing == "lie":  # a Content-Length the body never reaches
        data = data.replace(b"content-length: ", b"content-length: 1", 1)
    response = http_exchange(surface.bridge.port, data, to_head=method == "HEAD")
    _assert_clear_error(response, head=method == "HEAD")
    assert response is not None
    event(f"status {response.status}")


# -- WebSocket upgrades --------------------------------------------------------------------------


@given(
    target=st.sampled_from(["/twilio/media", "/twilio/media/", "/twilio/media?x=1", "/nope"]),
    signature=st.sampled_from(["valid", "missing", "forged", "non-ascii", "twice"]),
    version=st.sampled_from([b"13", b"13", b"8", b"", b"abc"]),
    key=st.sampled_from(["valid", "short", "missing"]),
    extra=st.lists(
        st.sampled_from(
            [
                (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
                (b"sec-websocket-protocol", b"audio, \xff"),
                (b"origin", b"http://evil.example"),
            ]
        ),
        max_size=3,
    ),
)
@fuzz_settings(quick=40, full=800)
def test_fuzz_websocket_upgrades_are_accepted_only_when_valid(
    surface: Surface,
    target: str,
    signature: str,
    version: bytes,
    key: str,
    extra: list[tuple[bytes, bytes]],
) -> None:
    bridge = surface.bridge
    signed = compute_signature(AUTH_TOKEN, bridge.signed_media_url).encode()
    signatures = {
        "valid": [signed],
        "missing": [],
        "forged": [b"AAAA"],
        "non-ascii": ["sïg✓".encode()],
        "twice": [signed, signed],
    }[signature]
    keys = {"valid": [b64(b"0123456789abcdef").encode()], "short": [b"c2hvcnQ="], "missing": []}
    headers = [(b"host", f"127.0.0.1:{bridge.port}".encode()), (b"upgrade", b"websocket")]
    headers += [(b"connection", b"Upgrade")]
    headers += [(b"sec-websocket-key", value) for value in keys[key]]
    headers += [(b"sec-websocket-version", version)] if version else []
    headers += [(b"x-twilio-signature", value) for value in signatures]
    response = http_exchange(bridge.port, _request("GET", target, headers + extra))
    assert response is not None
    valid = (
        target.startswith("/twilio/media")
        and signature == "valid"
        and key == "valid"
        and version == b"13"
        and all(value.isascii() for _, value in extra)  # wsproto reads those as ASCII text
    )
    if valid:
        assert response.status == 101  # then our shut-down side ends the stream
    else:
        _assert_clear_error(response)
        assert response.status in (400, 403, 404, 426)


# -- Twilio frames on an accepted stream -------------------------------------------------------

CALL_SID = "CAfuzz0000000000000000000000000001"
STREAM_SID = "MZfuzz0000000000000000000000000001"
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _mutated(message: dict[str, object]) -> st.SearchStrategy[dict[str, object]]:
    """``message`` with some fields dropped or given a value of another type, recursively."""

    def mutate(value: object) -> st.SearchStrategy[object]:
        if isinstance(value, dict):
            return st.fixed_dictionaries(
                {},
                optional={k: st.one_of(st.just(v), mutate(v), junk) for k, v in value.items()},
            )
        return st.one_of(st.just(value), junk)

    return mutate(message)


def _start(params: dict[str, str]) -> dict[str, object]:
    return wire.start(
        sequence=1,
        stream_sid=STREAM_SID,
        call_sid=CALL_SID,
        account_sid="AC1",
        custom_parameters=params,
    )


def _media(timestamp: int, payload: bytes) -> dict[str, object]:
    return wire.media(
        sequence=2, stream_sid=STREAM_SID, chunk=1, timestamp_ms=timestamp, payload=payload
    )


STOP = wire.stop(sequence=9, stream_sid=STREAM_SID, account_sid="AC1", call_sid=CALL_SID)
params = st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=12)
text_frames = st.one_of(
    st.builds(lambda p: json.dumps(_start(p)), params),
    st.builds(json.dumps, st.builds(_start, params).flatmap(_mutated)),
    st.builds(
        lambda ts, payload: json.dumps(_media(ts, payload)),
        st.integers(0, 10**7),
        st.binary(max_size=400) | st.sampled_from([b"\xff" * 8001, b"\xff" * 160]),
    ),
    st.builds(
        json.dumps,
        st.builds(_media, st.integers(0, 10**6), st.binary(max_size=200)).flatmap(_mutated),
    ),
    st.builds(
        lambda p: json.dumps({"event": "media", "media": {"timestamp": "0", "payload": p}}),
        st.text(max_size=50),
    ),
    st.builds(json.dumps, _mutated(wire.mark(sequence=3, stream_sid=STREAM_SID, name="g1:m1:x"))),
    st.builds(json.dumps, _mutated({"event": "dtmf", "dtmf": {"digit": "5"}})),
    st.builds(json.dumps, _mutated(dict(wire.connected()))),
    st.just(json.dumps(STOP)),
    st.builds(json.dumps, junk | st.dictionaries(st.text(max_size=8), junk, max_size=4)),
    st.text(max_size=100),
)
frames_strategy = st.lists(
    st.one_of(
        # Mostly messages that leave the stream open, so that what follows them counts.
        st.tuples(st.just("text"), text_frames),
        st.tuples(st.just("text"), text_frames),
        st.tuples(st.just("text"), text_frames),
        st.tuples(st.just("binary"), st.binary(max_size=200)),
        st.tuples(st.just("flood"), text_frames, st.integers(50, 500)),
        # A start with many long custom parameters (built when sent: a short repr).
        st.tuples(st.just("big-start"), st.integers(10, 250)),
    ),
    max_size=8,
).flatmap(
    # Then, sometimes, a message that ends the stream at once.
    lambda frames: st.one_of(
        st.just(frames),
        st.just(frames),
        st.just([*frames, ("invalid-utf8",)]),
        st.integers(LIMITS.max_ws_message_bytes + 1, 3 * 2**20).map(
            lambda size: [*frames, ("too-big", size)]
        ),
    )
)


def _big_start(count: int) -> str:
    return json.dumps(_start({f"p{i}": "v" * 5000 for i in range(count)}))


def _text_of(frame: tuple[object, ...]) -> str | None:
    """The text message a frame sends (``None`` for the kinds that send none)."""
    match frame:
        case ("text", str() as text) | ("flood", str() as text, _):
            return text
        case ("big-start", int() as count):
            return _big_start(count)
    return None


def _predicted_close(frames: list[tuple[object, ...]], ending: str) -> set[int] | None:
    """The close codes the bridge's own parser and limits allow (``None``: our close).

    After a ``stop`` (or a call that failed at once) the stream is ending, and a frame
    that breaks the limits right behind it may still be the one the close names: the
    bridge reads ahead of the call in one go."""
    started = False
    ending_with: int | None = None
    for frame in frames:
        text = _text_of(frame)
        too_big = frame[0] == "too-big"
        if too_big or (text is not None and len(text.encode()) > LIMITS.max_ws_message_bytes):
            return {1009} if ending_with is None else {ending_with, 1009}
        if frame[0] == "invalid-utf8":
            return {1007} if ending_with is None else {ending_with, 1007}
        if text is None or ending_with is not None:
            continue
        event = twilio.parse_twilio_message(text)
        if not started and isinstance(event, twilio.Start):
            started = True
            if event.unsupported_media_format() is not None:
                ending_with = 1011
        elif started and isinstance(event, twilio.Stop):
            ending_with = 1000
    if ending_with is not None:
        return {ending_with}
    if ending == "stop" and started:
        return {1000}
    if ending in ("close", "drop"):
        return None
    return {1011} if started else {1008}  # no media (after start) or no start at all


@given(frames=frames_strategy, ending=st.sampled_from(["stop", "stop", "wait", "close", "drop"]))
@fuzz_settings(quick=30, full=600)
def test_fuzz_twilio_frames_end_with_a_close_code_that_says_why(
    surface: Surface, frames: list[tuple[object, ...]], ending: str
) -> None:
    bridge = surface.bridge
    status, ws = SyncWebSocket.open(bridge.port, headers=SyncWebSocket.signed_headers(bridge))
    assert status == 101
    assert ws is not None
    with ws:
        _stream_and_check(ws, frames, ending)


def _stream_and_check(ws: SyncWebSocket, frames: list[tuple[object, ...]], ending: str) -> None:
    open_ = True
    for frame in frames:
        match frame:
            case ("text", str() as text):
                open_ = ws.send_frame(text)
            case ("binary", bytes() as data):
                open_ = ws.send_frame(data)
            case ("flood", str() as text, int() as count):
                # Up to 2 MB a flood: many small frames, or a few big ones.
                open_ = ws.send_frame(text, min(count, max(1, 2_000_000 // (len(text) + 1))))
            case ("invalid-utf8",):
                open_ = ws.send_invalid_utf8()
            case ("big-start", int() as count):
                open_ = ws.send_frame(_big_start(count))
            case ("too-big", int() as size):
                ws.send_huge(size, binary=False)
                open_ = False
        if not open_:
            break
    expected = _predicted_close(frames, ending)
    event(f"expected close: {sorted(expected) if expected else 'ours'}")
    if ending == "stop" and open_:
        ws.send_frame(json.dumps(STOP))
    if expected is None:
        if ending == "drop":
            return  # the socket is closed on the way out: TCP ends without a close frame
        close = ws.close(1000)
        assert close is not None
        assert close.code in (1000, 1007, 1009, 1011)  # our 1000 echoed, or the bridge's own
        return
    close = ws.wait_close(CLOSE_WAIT_S)
    assert close is not None, "the bridge never closed the stream"
    assert close.code in expected, close
    if close.code != 1000:
        assert close.reason, "a close code other than 1000 carries its reason"


# -- the notes API -----------------------------------------------------------------------------

note_values = st.one_of(st.text(max_size=50), junk, st.just("x" * (MAX_NOTE_CHARS + 1)))
note_bodies = st.one_of(
    st.fixed_dictionaries(
        {"text": st.text(min_size=1, max_size=100)},
        optional={
            "respond": st.booleans() | junk,
            "awaits_confirmation": st.booleans() | junk,
            "epoch": st.integers(-2, 5) | junk,
            "reponds": st.booleans(),
        },
    ).map(lambda d: json.dumps(d).encode()),
    st.dictionaries(
        st.sampled_from(["text", "respond", "epoch", "x"]), note_values, max_size=4
    ).map(lambda d: json.dumps(d).encode()),
    bodies,
)


@given(
    target=st.sampled_from(["live", "live", "unknown", "odd"]),
    token=st.sampled_from(["right", "right", "right", "wrong", "none"]),
    body=note_bodies,
    content_type=st.sampled_from([b"application/json", b"text/plain", None]),
    burst=st.integers(1, 12),
)
@fuzz_settings(quick=40, full=800)
def test_fuzz_notes_get_a_clear_answer(
    surface: Surface,
    target: str,
    token: str,
    body: bytes | Fill,
    content_type: bytes | None,
    burst: int,
) -> None:
    sid = {
        "live": surface.calls.current_call_sid or "CAnone",
        "unknown": "CAnope",
        "odd": "CA%00%ff..",
    }[target]
    headers = [(b"host", b"127.0.0.1")]
    if token != "none":
        secret = CONTROL_TOKEN if token == "right" else "wrong-token"
        headers.append((b"authorization", f"Bearer {secret}".encode()))
    if content_type is not None:
        headers.append((b"content-type", content_type))
    data = _request("POST", f"/calls/{sid}/notes", headers, bytes(body))
    answers: list[RawResponse | None] = []

    def post() -> None:
        answers.append(http_exchange(surface.bridge.port, data))

    posters = [threading.Thread(target=post) for _ in range(burst)]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join()
    for answer in answers:
        _assert_clear_error(answer)
        assert answer is not None
        assert answer.status in (202, 400, 401, 404, 413, 415, 429, 503), answer
        if token != "right":  # 401, unless the body was refused before any route saw it
            assert answer.status in (401, 413)


# -- messages far over the limit: bounded memory -----------------------------------------------


def test_messages_far_over_the_limit_are_refused_without_being_held(surface: Surface) -> None:
    """The issue's case at full size (one 300 MB frame, then 20 × 20 MB at once); a
    smaller one in the quick run. Each stream is closed with 1009 and the bridge's
    peak RSS stays within the margin."""
    bridge = surface.bridge
    one, many, each = (300 * 2**20, 20, 20 * 2**20) if FULL else (32 * 2**20, 4, 8 * 2**20)
    peak_before = bridge.rss_kib("VmHWM")
    codes: list[int | None] = []

    def big(size: int) -> None:
        status, ws = SyncWebSocket.open(bridge.port, headers=SyncWebSocket.signed_headers(bridge))
        assert ws is not None, status
        with ws:
            ws.send_huge(size, binary=False)
            close = ws.wait_close(CLOSE_WAIT_S)
        codes.append(None if close is None else close.code)

    big(one)
    senders = [threading.Thread(target=big, args=(each,)) for _ in range(many)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert codes == [1009] * (1 + many)
    assert bridge.rss_kib("VmHWM") - peak_before < RSS_MARGIN_KIB


# -- after all of it -----------------------------------------------------------------------------


def test_zz_the_bridge_survived_every_call_completed_and_memory_stayed_bounded(
    surface: Surface,
) -> None:
    """Runs last (pytest keeps file order): the cross-example properties."""
    bridge = surface.bridge
    surface.calls.finish()
    assert bridge.alive
    health = http_exchange(bridge.port, _request("GET", "/healthz"))
    assert health is not None
    assert health.status == 200
    rss_after = bridge.rss_kib()
    assert surface.calls.failures == []
    assert surface.calls.reports, "no normal call was placed"
    for report in surface.calls.reports:
        assert report.close is not None
        assert report.close.by == "caller", report.close  # it hung up; the bridge did not
        assert len(report.ai_turns) >= 2  # the greeting and the answer
        assert report.violations == {}
    summary = {
        "rss_before_kib": surface.rss_before_kib,
        "rss_after_kib": rss_after,
        "rss_peak_kib": bridge.rss_kib("VmHWM"),
        "normal_calls": len(surface.calls.reports),
    }
    assert rss_after - surface.rss_before_kib < RSS_MARGIN_KIB, summary
    assert bridge.stop() == 0
    records = bridge.records()
    errors = [r["message"] for r in records if r["level"]["no"] >= 40]
    assert errors == []
    if FULL:  # `make fuzz` prints it
        summary["log_records"] = len(records)
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(json.dumps(summary, indent=1) + "\n")
