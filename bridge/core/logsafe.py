"""Text from outside that goes into a log line: bounded, quoted, and without personal data.

A peer controls the custom parameters of a stream's ``start`` (up to a whole WebSocket
message of them), a webhook's form fields and an upstream error's message. Each is shown
here cut to a stated length, through ``repr`` (so a newline cannot forge a log line), and
the caller's phone numbers only when ``BRIDGE_LOG_PII`` is on.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_LOGGED_PARAMETERS = 8
"""Custom parameters shown in ``CALL_START``; the rest are counted (``… N more``)."""
MAX_LOGGED_NAME_CHARS = 40
MAX_LOGGED_VALUE_CHARS = 80
MAX_LOGGED_TEXT_CHARS = 200
"""Any other outside text in a log line (a webhook's CallSid, an upstream error message)."""
PHONE_NUMBER_PARAMETERS = frozenset({"From", "To", "Caller", "Called", "ForwardedFrom"})
"""Twilio's parameters that carry phone numbers (the webhook passes From and To on)."""
HIDDEN = "<hidden>"


def clip(text: str, max_chars: int = MAX_LOGGED_TEXT_CHARS) -> str:
    """``text`` quoted (``repr``), cut to ``max_chars`` characters first (``…`` if cut)."""
    return repr(text if len(text) <= max_chars else text[:max_chars] + "…")


def start_parameters(parameters: Mapping[str, str], *, show_phone_numbers: bool) -> str:
    """A stream's custom parameters for ``CALL_START``: at most
    :data:`MAX_LOGGED_PARAMETERS`, each clipped, phone numbers hidden unless asked for."""
    shown = []
    for name, value in list(parameters.items())[:MAX_LOGGED_PARAMETERS]:
        hidden = name in PHONE_NUMBER_PARAMETERS and not show_phone_numbers
        text = HIDDEN if hidden else clip(value, MAX_LOGGED_VALUE_CHARS)
        shown.append(f"{clip(name, MAX_LOGGED_NAME_CHARS)}: {text}")
    more = len(parameters) - len(shown)
    if more > 0:
        shown.append(f"… {more} more")
    return "{" + ", ".join(shown) + "}"
