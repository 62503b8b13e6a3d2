"""Options of a simulated call, where it connects, and the caller's prepared speech.

Split from :mod:`bridge.sim.caller` so the Trio client stays small; import the public
names from there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import trio

from bridge.audio import mulaw, synth, wavio
from bridge.sim import wire
from bridge.sim.script import At, CallerScript, Speech


class CallerConnectError(Exception):
    """The caller could not open the WebSocket (``status_code`` when the bridge rejected)."""

    def __init__(self, url: str, detail: str, status_code: int | None = None) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class CallerOptions:
    """One simulated call.

    ``clock`` supplies every time in the playback model and the report (float seconds);
    it must run at the Trio clock's rate (the default is the Trio clock itself).
    """

    url: str
    """``ws://`` or ``wss://`` URL of the bridge's media endpoint."""
    script: CallerScript
    wav_in: Path | None = None
    """Caller speech from a WAV (any rate, mono or stereo) instead of synthesis: it
    replaces the script's utterances and starts at the first utterance's trigger
    (stream start if there is none)."""
    wav_out: Path | None = None
    """Where to write what the caller heard (16-bit PCM mono, call-time aligned)."""
    wav_out_rate: int = mulaw.SAMPLE_RATE
    noise_dbfs: float | None = None
    """Line noise level under the caller's audio (RMS dBFS); ``None``: digital silence."""
    auth_token: str | None = None
    """When set, the upgrade carries ``x-twilio-signature`` for ``signature_url``."""
    signature_url: str | None = None
    """URL to sign (the ``<Stream url>`` of the TwiML); defaults to ``url``."""
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    call_sid: str = field(default_factory=lambda: wire.new_sid("CA"))
    stream_sid: str = field(default_factory=lambda: wire.new_sid("MZ"))
    account_sid: str = field(default_factory=lambda: wire.new_sid("AC"))
    max_duration_s: float = 60.0
    """The caller hangs up after this long whatever the script says."""
    lost_inbound_ms: tuple[tuple[int, int], ...] = ()
    """``(start, length)`` spans of the caller's stream, ms, whose ``media`` frames are
    never sent (lost before reaching Twilio); the timestamps after a span go on counting."""
    jitter_ms: float = 0.0
    """Network jitter: each ``media`` frame leaves up to this many ms after its audio was
    captured (uniform, seeded by ``jitter_seed``); the frames behind a late one bunch up."""
    jitter_seed: int = 0
    clock: Callable[[], float] = trio.current_time
    stamp_arrivals: bool = False
    """Time each bridge message by when it reached the caller's socket (the kernel's
    receive time), not when the caller's task read it: what Twilio plays starts on arrival,
    and a loaded load generator reads late. Plain ``ws://`` only (``wss://`` is stamped at
    read); ``clock`` must tick at wall rate (a real clock, not Trio's autojump)."""
    on_media_sent: Callable[[float, int, bytes], None] | None = None
    """Told of every ``media`` frame right before it is written: (``clock`` time in s,
    its ``timestamp`` in ms, its μ-law payload). Benchmarks time the inbound path with it."""

    def __post_init__(self) -> None:
        WsTarget.from_url(self.url)
        if self.max_duration_s <= 0 or self.wav_out_rate <= 0:
            raise ValueError("max_duration_s and wav_out_rate must be positive")
        if self.jitter_ms < 0:
            raise ValueError("jitter_ms must be >= 0")
        if any(start < 0 or length <= 0 for start, length in self.lost_inbound_ms):
            raise ValueError("lost_inbound_ms spans need start >= 0 and length > 0")

    def is_lost(self, timestamp_ms: int) -> bool:
        """Whether the frame stamped ``timestamp_ms`` falls in a lost span."""
        return any(start <= timestamp_ms < start + n for start, n in self.lost_inbound_ms)


LOST_SPANS_FORM: Final = "START_MS:LENGTH_MS[,...] in whole ms, start >= 0 and length > 0"
"""What :func:`parse_lost_spans` accepts, worded for an error message."""
_WHOLE_MS: Final = re.compile(r"[0-9]+")


def parse_lost_spans(text: str) -> tuple[tuple[int, int], ...]:
    """``"3000:200,9000:60"`` → ``((3000, 200), (9000, 60))`` (start:length in ms).

    Raises:
        ValueError: anything but :data:`LOST_SPANS_FORM`.
    """
    spans = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        start, sep, length = item.partition(":")
        well_formed = sep and _WHOLE_MS.fullmatch(start) and _WHOLE_MS.fullmatch(length)
        if not well_formed or int(length) == 0:
            raise ValueError(f"lost span {item!r} is not {LOST_SPANS_FORM}")
        spans.append((int(start), int(length)))
    return tuple(spans)


def check_wav_out(path: Path) -> None:
    """Create ``path``'s directory and check that the file can be written there, leaving
    no file behind that was not there before (the WAV itself is written after the call).

    Raises:
        OSError: the directory cannot be created or the file cannot be opened for writing
            (a directory, no permission, a read-only file system).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    with path.open("ab"):
        pass
    if not existed:
        path.unlink()


@dataclass(frozen=True, slots=True)
class WsTarget:
    """Where a ``ws://``/``wss://`` URL points: what the TCP connect and handshake need."""

    host: str
    port: int
    resource: str
    """Path and query string."""
    use_ssl: bool

    @classmethod
    def from_url(cls, url: str) -> WsTarget:
        """Raises :class:`ValueError` unless ``url`` is ``ws://`` or ``wss://`` with a host."""
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"caller URL must be ws:// or wss:// with a host, got {url!r}")
        use_ssl = parts.scheme == "wss"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, parts.port or (443 if use_ssl else 80), resource, use_ssl)

    @property
    def host_header(self) -> str:
        return self.host if self.port in (80, 443) else f"{self.host}:{self.port}"


def prepare_speech(options: CallerOptions) -> list[Speech]:
    """The caller's utterances as 8 kHz float32 audio (synthesis or the WAV file).

    Raises:
        WavFormatError, OSError: ``options.wav_in`` cannot be read.
    """
    utterances = options.script.utterances
    if options.wav_in is not None:
        samples, rate = wavio.read_wav(options.wav_in)
        return [
            Speech(
                label=options.wav_in.name,
                samples=wavio.resample(samples, rate, mulaw.SAMPLE_RATE),
                trigger=utterances[0].trigger if utterances else At(ms=0),
                start=None,
            )
        ]
    return [
        Speech(
            label=f"seed {u.seed}",
            samples=synth.speech_like(u.duration_ms, seed=u.seed),
            trigger=u.trigger,
            start=None,
        )
        for u in utterances
    ]
