"""The one-port HTTP server (:mod:`bridge.runtime.http`) on its own, with a tiny app:
head, body and time limits, HEAD, and a bug in the app answered with 500 (traceback once)."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from bridge.runtime.http import HttpLimits, HttpRequest, HttpResponse, serve_http
from bridge.runtime.websocket import WebSocket
from tests.conftest import LogCapture
from tests.rawhttp import exchange, request

LIMITS = HttpLimits()


class EchoApp:
    """Answers with the request body; ``/bug`` raises."""

    async def http(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/bug":
            raise RuntimeError("a bug in the app")
        return HttpResponse(200, b"got " + str(len(request.body)).encode() + b"\n")

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        return HttpResponse(404, b"not found\n")

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        raise AssertionError("no WebSocket here")


async def _serve(nursery: trio.Nursery) -> int:
    _, port = await nursery.start(serve_http, EchoApp(), "127.0.0.1", 0, LIMITS)
    return int(port)


async def test_a_head_over_the_limit_is_a_431_whole_or_in_pieces(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    big = [("X-Padding", "p" * LIMITS.max_head_bytes)]
    just_under = [("X-Padding", "p" * (LIMITS.max_head_bytes - 200))]
    with trio.fail_after(20):
        port = await _serve(nursery)
        whole = await exchange(port, request("GET", "/", headers=big))
        under = await exchange(port, request("GET", "/", headers=just_under))
        # Never completed: h11 gives up once the unfinished head passes the limit.
        endless = await exchange(port, b"GET / HTTP/1.1\r\nX: " + b"p" * 100_000)
    assert whole is not None
    assert (whole.status, whole.body) == (431, b"request head too large\n")
    assert under is not None
    assert under.status == 200
    assert endless is not None
    assert endless.status == 431
    assert logs.errors == []


async def test_a_body_over_the_limit_is_a_413_declared_announced_or_streamed(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    at_limit = b"x" * LIMITS.max_body_bytes
    over = at_limit + b"x"
    chunked = f"{len(over):x}\r\n".encode() + over + b"\r\n0\r\n\r\n"
    with trio.fail_after(20):
        port = await _serve(nursery)
        accepted = await exchange(port, request("POST", "/", body=at_limit))
        declared = await exchange(port, request("POST", "/", body=over))
        # Only the head: the Content-Length alone is enough to refuse.
        announced = await exchange(
            port, request("POST", "/", headers=[("Content-Length", "999999999")])
        )
        streamed = await exchange(
            port, request("POST", "/", headers=[("Transfer-Encoding", "chunked")]) + chunked
        )
    assert accepted is not None
    assert accepted.body == f"got {LIMITS.max_body_bytes}\n".encode()
    for answer in (declared, announced, streamed):
        assert answer is not None
        assert (answer.status, answer.body) == (413, b"body too large\n")
    assert logs.errors == []


async def test_a_request_that_takes_too_long_is_a_408(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(30):
        port = await _serve(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            started = trio.current_time()
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
            waited = trio.current_time() - started
    assert data.startswith(b"HTTP/1.1 408 ")
    assert data.endswith(b"request timeout\n")
    assert waited == pytest.approx(LIMITS.request_timeout_s, abs=0.1)


async def test_head_gets_the_headers_of_the_answer_without_its_body(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(20):
        port = await _serve(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request("HEAD", "/"))
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 6\r\n" in data
    assert data.endswith(b"\r\n\r\n")  # no body
    assert logs.errors == []


async def test_a_bug_in_the_app_is_a_500_and_one_traceback(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(20):
        port = await _serve(nursery)
        answer = await exchange(port, request("GET", "/bug"))
        after = await exchange(port, request("GET", "/"))
    assert answer is not None
    assert (answer.status, answer.body) == (500, b"internal error\n")
    assert after is not None
    assert after.status == 200
    assert logs.errors == ["HTTP_ERROR a bug in the bridge while serving a request"]


async def test_an_error_answer_to_head_has_no_body_either(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """A HEAD whose body never arrives: the 400 goes out (h11 refuses a body after HEAD)."""
    with trio.fail_after(20):
        port = await _serve(nursery)
        answer = await exchange(port, b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab")
    assert answer is not None
    assert answer.status == 400
    assert answer.body == b""
    assert logs.errors == []


async def test_an_error_after_a_head_request_on_the_same_connection_has_its_body(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """A HEAD answered, then junk where the next request should be: the error answer
    belongs to that next request, not to the HEAD, so it carries its body (and goes out)."""
    junk = b"\x0e" * 1000
    with trio.fail_after(20):
        port = await _serve(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + junk)
            await stream.send_eof()
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    first, _, second = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert second.startswith(b"HTTP/1.1 400 ")
    assert second.endswith(b"\r\n\r\nbad request\n")
    assert logs.errors == []


async def test_an_answer_that_ends_the_connection_is_not_lost_to_a_reset(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    """HTTP/1.0 (the answer ends the connection) with 64 KiB the server never reads behind
    it: the server drains before it closes, so the client reads its answer, not a reset."""
    with trio.fail_after(20):
        port = await _serve(nursery)
        answer = await exchange(port, b"GET / HTTP/1.0\r\n\r\n" + b"\0" * 65536)
    assert answer is not None
    assert answer.status == 200


def _upgrade_request(key: bytes, *extra: bytes) -> bytes:
    return (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        + key
        + b"\r\n"
        + b"".join(header + b"\r\n" for header in extra)
        + b"\r\n"
    )


class AcceptingApp(EchoApp):
    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        return None


@pytest.mark.parametrize(
    "upgrade",
    [
        _upgrade_request(b"c2hvcnQ="),  # 5 bytes, not 16
        _upgrade_request(b"not base64!"),
        _upgrade_request(b"MDEyMzQ1Njc4OWFiY2RlZg==", b"Sec-WebSocket-Protocol: audio, \xff"),
        _upgrade_request(b"MDEyMzQ1Njc4OWFiY2RlZg==", b"Sec-WebSocket-Extensions: x; \xff"),
    ],
)
async def test_a_bad_upgrade_is_a_400_never_a_traceback(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture, upgrade: bytes
) -> None:
    with trio.fail_after(20):
        _, port = await nursery.start(serve_http, AcceptingApp(), "127.0.0.1", 0, LIMITS)
        answer = await exchange(port, upgrade)
    assert answer is not None
    assert (answer.status, answer.body) == (400, b"bad websocket upgrade\n")
    assert logs.errors == []


async def test_a_client_that_waits_on_the_network_holds_no_turn(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    """With one turn for the whole server, a client sending its head slowly (or reading
    its answer slowly) still leaves the turn to everyone else."""
    one_turn = HttpLimits(busy_connections=1)
    with trio.fail_after(20):
        _, port = await nursery.start(serve_http, EchoApp(), "127.0.0.1", 0, one_turn)
        slow = await trio.open_tcp_stream("127.0.0.1", port)
        async with slow:
            await slow.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and then nothing, for now
            started = trio.current_time()
            answers = [await exchange(port, request("GET", "/")) for _ in range(3)]
            served_in = trio.current_time() - started
            await slow.send_all(b"\r\n")
            slow_answer = await slow.receive_some(65536)
    assert [a.status if a is not None else None for a in answers] == [200, 200, 200]
    assert served_in < 1.0  # not after the slow client's 10 s request time
    assert slow_answer.startswith(b"HTTP/1.1 200 ")
