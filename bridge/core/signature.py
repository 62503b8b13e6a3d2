"""Twilio request signatures (``X-Twilio-Signature``).

Twilio signs every webhook and the Media Streams WebSocket upgrade with
``base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 ...))``, the form
parameters sorted by name. For the WebSocket upgrade the URL is the ``wss://`` URL exactly
as written in the TwiML ``<Stream url>`` and there are no parameters; Twilio's docs advise
also trying the URL with a trailing ``/``. For HTTPS, Twilio signs the URL without the
port, so both forms are tried, as twilio-python's ``RequestValidator`` does.

The header is compared as it arrived, as bytes, in constant time
(:func:`hmac.compare_digest` on bytes accepts any content: non-ASCII, empty, huge); a URL
the request's ``Host`` made unparseable is tried as it is, without variants.
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
    # surrogatepass: text that is not valid Unicode (which Twilio never signs) still hashes.
    data = payload.encode("utf-8", "surrogatepass")
    digest = hmac.new(auth_token.encode(), data, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> set[str]:
    variants = {url}
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        return _with_slash(variants)
    hostname = parts.hostname or ""
    default_port = 443 if parts.scheme in ("https", "wss") else 80
    variants.add(urlunsplit(parts._replace(netloc=hostname)))
    variants.add(urlunsplit(parts._replace(netloc=f"{hostname}:{port or default_port}")))
    return _with_slash(variants)


def _with_slash(variants: set[str]) -> set[str]:
    return variants | {v + "/" for v in variants if not v.endswith("/")}


def is_valid_signature(
    auth_token: str,
    url: str,
    signature: bytes | str,
    params: Mapping[str, str | Iterable[str]] | None = None,
) -> bool:
    """Whether ``signature`` (the header value as received, or text) matches ``url`` (with
    or without port or a trailing ``/``)."""
    received = (
        signature if isinstance(signature, bytes) else signature.encode("utf-8", "surrogatepass")
    )
    return any(
        hmac.compare_digest(compute_signature(auth_token, variant, params).encode(), received)
        for variant in _url_variants(url)
    )
