"""Raw HTTP/1.1 over a Trio TCP stream, for tests that send what no client library would:
invalid bytes, oversized heads and bodies, duplicated headers, requests that never end.

:func:`exchange` writes bytes, then reads until the server closes the connection, and
parses what came back into a :class:`RawResponse` (or ``None`` when nothing came back).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[bytes, bytes]
    """Names lower-cased; a repeated header keeps its last value."""
    body: bytes


def parse_response(data: bytes, *, to_head: bool = False) -> RawResponse | None:
    """The first response in ``data`` (``None`` if there is none). ``to_head``: it answers
    a ``HEAD``, so it has no body and what follows it is the next answer; unless the server
    could not read the request as a ``HEAD`` (a bad request line) and sent the body its
    ``Content-Length`` declares."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    status_line, *header_lines = head.split(b"\r\n")
    status = int(status_line.split(b" ")[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    if to_head and (not rest or rest.startswith(b"HTTP/")):
        length = 0
    return RawResponse(status, headers, rest[:length])


async def exchange(
    port: int, data: bytes, *, read_limit: int = 1 << 20, host: str = "127.0.0.1"
) -> RawResponse | None:
    """Send ``data``, half-close, read until the server closes (or ``read_limit`` bytes)."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        received = bytearray()
        try:
            await stream.send_all(data)
            await stream.send_eof()
            while len(received) < read_limit:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
        except trio.BrokenResourceError:
            pass  # the server reset the connection: parse what came before
        return parse_response(bytes(received))


def request(
    method: str,
    path: str,
    *,
    headers: list[tuple[str, str | bytes]] | None = None,
    body: bytes = b"",
    host: str = "127.0.0.1",
) -> bytes:
    """A request's bytes, with ``Host``, ``Content-Length`` when there is a body, and
    ``Connection: close``, then ``headers`` as given."""
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}".encode()]
    if body:
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    for name, value in headers or []:
        raw = value if isinstance(value, bytes) else value.encode()
        lines.append(name.encode() + b": " + raw)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
