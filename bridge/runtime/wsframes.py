"""The common WebSocket frames, parsed and made without websockets' generic machinery.

Almost every frame of a call is one whole text message in one frame: a Twilio media
message (about 300 bytes) or a Realtime event. websockets' sans-IO protocol parses each
through a generator, a ``Frame`` object and an event list, and makes each through a
``Frame`` and its ``serialize``: about a tenth of the bridge's CPU at 20 calls. Here a
data frame with FIN set, no reserved bits and the side's masking is cut out of the bytes
read with a few slices (unmasked by websockets' C ``apply_mask``), and an outgoing message
is one header and a payload.

Everything else is websockets' work, so RFC 6455 applies as before (the same close codes,
pongs and close replies): :func:`scan` stops at the first frame it does not take and says
where it starts, and websockets is given a stream that starts at a frame boundary. A whole
control frame (ping, pong, close) is given to it alone, after which the scan goes on; a
fragment, a frame over the size limit or a broken frame hands it the rest for good.

Sans-IO: no sockets, no Trio.
"""

from __future__ import annotations

import enum
import os
from typing import Final

from websockets.speedups import apply_mask

OPCODE_TEXT: Final = 0x1
OPCODE_BINARY: Final = 0x2
_FIN: Final = 0x80
_MASKED: Final = 0x80
_MASK_POOL_BYTES: Final = 4096
"""Random bytes drawn at once for mask keys: 1024 client frames per ``os.urandom`` call."""


Message = tuple[bool, bytes]
"""A whole message from one data frame: whether it is text, and its payload (unmasked, not
yet decoded). A tuple, not a dataclass: one is made for every frame of a call."""


class Stop(enum.Enum):
    """Why :func:`scan` stopped."""

    MORE = "more"
    """The bytes from ``stop`` on are the start of a frame this module or websockets takes
    once it is whole (at most ``max_size`` plus a 14-byte header; a control frame at most
    131 bytes): wait for more."""
    CONTROL = "control"
    """A whole control frame (ping, pong or close) runs from ``stop`` to ``control_end``:
    websockets' to handle, after which the stream is at a frame boundary again."""
    OTHER = "other"
    """From ``stop`` on, the stream is websockets' for good: a fragment, a frame over the
    size limit, or a protocol error it reports with its close code."""


Scan = tuple[list[Message], int, Stop, int]
"""What :func:`scan` found in a run of bytes that starts at a frame boundary: the messages
of the whole data frames at its start, in order; the offset of the first byte not taken
(the next frame's start); why the scan stopped there; with :attr:`Stop.CONTROL`, the offset
just past that control frame (else 0). A tuple, made once per read."""


_CONTROL_OPCODES: Final = frozenset((0x8, 0x9, 0xA))
_MAX_CONTROL_PAYLOAD: Final = 125


def scan(data: bytes, *, peer_masks: bool, max_size: int | None) -> Scan:
    """Cut the whole data frames (FIN set, no reserved bits, text or binary, masked as the
    peer must: ``peer_masks`` on a server) off the start of ``data``, at most
    ``max_size`` bytes each (``None``: no limit), and say why the scan stopped. Never
    raises: whatever is wrong with a frame is websockets' to report."""
    messages: list[Message] = []
    end = len(data)
    pos = 0
    mask_bit = _MASKED if peer_masks else 0
    while end - pos >= 2:
        first = data[pos]
        second = data[pos + 1]
        opcode = first & 0x0F
        length = second & 0x7F
        if first & 0xF0 != _FIN or second & _MASKED != mask_bit:
            return messages, pos, Stop.OTHER, 0
        if opcode in _CONTROL_OPCODES:
            if length > _MAX_CONTROL_PAYLOAD:
                return messages, pos, Stop.OTHER, 0
            control_end = pos + 2 + (4 if peer_masks else 0) + length
            if control_end > end:
                return messages, pos, Stop.MORE, 0
            return messages, pos, Stop.CONTROL, control_end
        if opcode not in (OPCODE_TEXT, OPCODE_BINARY):
            return messages, pos, Stop.OTHER, 0
        head = pos + 2
        if length == 126:
            if end - head < 2:
                break
            length = int.from_bytes(data[head : head + 2], "big")
            head += 2
        elif length == 127:
            if end - head < 8:
                break
            length = int.from_bytes(data[head : head + 8], "big")
            head += 8
        if max_size is not None and length > max_size:
            return messages, pos, Stop.OTHER, 0  # websockets refuses it from its header
        start = head + 4 if peer_masks else head
        stop = start + length
        if stop > end:
            break
        payload = data[start:stop]
        if peer_masks:
            payload = apply_mask(payload, data[head:start])
        messages.append((opcode == OPCODE_TEXT, payload))
        pos = stop
    return messages, pos, Stop.MORE, 0


class FrameMaker:
    """Makes whole text frames for one side of a connection (a client masks them)."""

    __slots__ = ("_masks", "_masks_at", "masks")

    def __init__(self, *, masks: bool) -> None:
        self.masks = masks
        self._masks = b""
        self._masks_at = 0

    def text(self, payload: bytes) -> bytes:
        """One frame carrying all of ``payload`` (UTF-8 text) as a message."""
        n = len(payload)
        mask_bit = _MASKED if self.masks else 0
        if n < 126:
            header = bytes((_FIN | OPCODE_TEXT, mask_bit | n))
        elif n < 65536:
            header = bytes((_FIN | OPCODE_TEXT, mask_bit | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((_FIN | OPCODE_TEXT, mask_bit | 127)) + n.to_bytes(8, "big")
        if not self.masks:
            return header + payload
        key = self._mask_key()
        return header + key + apply_mask(payload, key)

    def _mask_key(self) -> bytes:
        """Four unpredictable bytes (RFC 6455 5.3), from the system's CSPRNG in bulk."""
        at = self._masks_at
        if at + 4 > len(self._masks):
            self._masks, at = os.urandom(_MASK_POOL_BYTES), 0
        self._masks_at = at + 4
        return self._masks[at : at + 4]
