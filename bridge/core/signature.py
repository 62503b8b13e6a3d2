"""Twilio request signatures (``X-Twilio-Signature``).

Twilio signs every webhook and the Media Streams WebSocket upgrade with
``base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 ...))``, the form
parameters sorted by name. For the WebSocket upgrade the URL is the ``wss://`` URL exactly
as written in the TwiML ``<Stream url>`` and there are no parameters; Twilio's docs advise
also trying the URL with a trailing ``/``. For HTTPS, Twilio signs the URL without the
port, so both forms are tried, as twilio-python's ``RequestValidator`` does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit


def compute_signature(
    auth_token: str, url: str, params: Mapping[str, str | Iterable[str]] | None = None
) -> str:
    """The signature Twilio would send for a request to ``url`` with form ``params``."""
    payload = url
    for name in sorted(params or {}):
        values = (params or {})[name]
        for value in sorted({values} if isinstance(values, str) else set(values)):
            payload += name + value
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> set[str]:
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    without_port = urlunsplit(parts._replace(netloc=hostname))
    default_port = 443 if parts.scheme in ("https", "wss") else 80
    with_port = urlunsplit(parts._replace(netloc=f"{hostname}:{parts.port or default_port}"))
    variants = {url, without_port, with_port}
    return variants | {v + "/" for v in variants if not v.endswith("/")}


def is_valid_signature(
    auth_token: str,
    url: str,
    signature: str,
    params: Mapping[str, str | Iterable[str]] | None = None,
) -> bool:
    """Whether ``signature`` matches ``url`` (with or without port or a trailing ``/``)."""
    return any(
        hmac.compare_digest(compute_signature(auth_token, variant, params), signature)
        for variant in _url_variants(url)
    )
