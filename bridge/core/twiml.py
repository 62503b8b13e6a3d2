"""TwiML documents the bridge returns or sends (pure functions, XML-escaped)."""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

MAX_PARAMETER_CHARS = 499
"""Twilio: each ``<Parameter>``'s name plus value must be under 500 characters."""


def connect_stream(stream_url: str, parameters: Mapping[str, str], fallback_message: str) -> str:
    """``<Connect><Stream>`` to the bridge, then a fallback ``<Say>`` and ``<Hangup/>``.

    ``<Connect><Stream>`` blocks the document until the stream ends; when the bridge closes
    the WebSocket (a failure it could not recover from), Twilio runs the next verbs, so the
    caller hears the fallback instead of dead air, and the call ends.
    """
    params = "".join(
        f"<Parameter name={quoteattr(name)} "
        f"value={quoteattr(value[: max(0, MAX_PARAMETER_CHARS - len(name))])}/>"
        for name, value in parameters.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(stream_url)}>{params}</Stream></Connect>"
        f"<Say>{escape(fallback_message)}</Say><Hangup/></Response>"
    )


def say_and_hang_up(message: str) -> str:
    return f"<Response><Say>{escape(message)}</Say><Hangup/></Response>"


def dial(destination: str) -> str:
    """``<Dial>`` to an E.164 number, or to a SIP URI through ``<Sip>`` (``transfer_call``).

    Nothing follows the ``<Dial>``: when the transferred call ends, so does the call."""
    if destination.startswith(("sip:", "sips:")):
        return f"<Response><Dial><Sip>{escape(destination)}</Sip></Dial></Response>"
    return f"<Response><Dial>{escape(destination)}</Dial></Response>"
