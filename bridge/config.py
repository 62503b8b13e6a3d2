"""Process configuration: environment variables, overridden by command-line flags.

Every environment setting is defined once, by :func:`setting` in the ``metadata`` of its
:class:`BridgeConfig` field: its variable, its command-line flag if it has one, its parser
(type and allowed range), its default and its doc line. :func:`load_config` reads the
environment through those definitions and nothing else, :data:`SETTINGS` lists them in
field order, and ``tests/test_config.py`` checks the README's configuration table against
them, row by row (variable, default, allowed values, doc line).

A value a parser refuses is a :class:`ConfigError` whose message is one line naming the
variable (or flag), the value and what is allowed. Secrets are wrapped in :class:`Secret`
so they never reach a log line, a ``repr`` or an error message.
"""

from __future__ import annotations

import ipaddress
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar, overload
from urllib.parse import parse_qs, urlsplit

from bridge.core.notes import DEFAULT_NEGATIONS
from bridge.core.toolspec import (
    APP_URL_ALLOWED,
    NO_TOOLS,
    ToolCatalog,
    ToolsFileError,
    is_allowed_app_url,
    parse_tools_document,
)

T = TypeVar("T")
S = TypeVar("S", bound=str)

DEFAULT_REALTIME_URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise phone assistant. Speak in short sentences. "
    "If the caller interrupts you, stop and answer only what they just said."
)
DEFAULT_GREETING = "Greet the caller briefly and ask how you can help."
DEFAULT_FALLBACK = "Sorry, we are having a technical problem. Please call again later. Goodbye."

AudioFormat = Literal["pcmu", "pcm16"]
FastBargeIn = Literal["off", "duck"]
LogFormat = Literal["text", "json"]
VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
AUDIO_FORMATS: tuple[AudioFormat, ...] = ("pcmu", "pcm16")
FAST_BARGE_IN_MODES: tuple[FastBargeIn, ...] = ("off", "duck")
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")

_SHOWN_VALUE_CHARS: Final = 60
"""A refused value is quoted up to this many characters, so the error stays one short line."""


class ConfigError(ValueError):
    """A setting or flag has a value the bridge cannot run with.

    The message is one line naming the variable or flag, its value and what is wrong,
    e.g. ``NAME='value': must be <what is allowed>``.
    """


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# -- parsers: text of one setting -> its value ------------------------------------------


class Parser(ABC, Generic[T]):
    """Turns the text of one setting into its value, or refuses it."""

    __slots__ = ()

    hides_value: ClassVar[bool] = False
    """A refused value is never quoted in the error (secrets)."""

    @property
    @abstractmethod
    def allowed(self) -> str:
        """What the text may be, worded to follow "must be" (errors and the README)."""

    @abstractmethod
    def parse(self, text: str) -> T:
        """The value of ``text``.

        Raises:
            ValueError: ``text`` is not one of :attr:`allowed`.
        """

    def show(self, value: T) -> str:
        """``value`` as it is written in the environment (the README's default column)."""
        return str(value)


@dataclass(frozen=True, slots=True)
class Int(Parser[int]):
    """A whole number in ``minimum..maximum`` (both included), in ``unit`` if given."""

    minimum: int
    maximum: int
    unit: str | None = None
    note: str | None = None
    """What a special value means, e.g. ``0: any free port``."""

    @property
    def allowed(self) -> str:
        kind = f"a whole number of {self.unit}" if self.unit else "an integer"
        note = f" ({self.note})" if self.note else ""
        return f"{kind} in {self.minimum}..{self.maximum}{note}"

    def parse(self, text: str) -> int:
        digits = text.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", digits):
            raise ValueError(text)
        number = int(digits)
        if not self.minimum <= number <= self.maximum:
            raise ValueError(text)
        return number


@dataclass(frozen=True, slots=True)
class Float(Parser[float]):
    """A finite number in ``minimum..maximum`` (both included) of ``unit``; NaN and
    infinities are refused whatever the range."""

    minimum: float
    maximum: float
    unit: str

    @property
    def allowed(self) -> str:
        return f"a finite number of {self.unit} in {self.minimum:g}..{self.maximum:g}"

    def parse(self, text: str) -> float:
        number = float(text)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            raise ValueError(text)
        return number

    def show(self, value: float) -> str:
        return f"{value:g}"


@dataclass(frozen=True, slots=True)
class Choice(Parser[S]):
    """One of ``options``, spelled exactly."""

    options: tuple[S, ...]

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(self.options)

    def parse(self, text: str) -> S:
        for option in self.options:
            if text == option:
                return option
        raise ValueError(text)


@dataclass(frozen=True, slots=True)
class Flag(Parser[bool]):
    """On or off, in the spellings people use for it (any case)."""

    ON: ClassVar[tuple[str, ...]] = ("on", "1", "true", "yes")
    OFF: ClassVar[tuple[str, ...]] = ("off", "0", "false", "no")

    @property
    def allowed(self) -> str:
        return "on or off (also 1/0, true/false, yes/no)"

    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in self.ON:
            return True
        if lowered in self.OFF:
            return False
        raise ValueError(text)

    def show(self, value: bool) -> str:
        return "on" if value else "off"


@dataclass(frozen=True, slots=True)
class Text(Parser[str]):
    """Any text, up to ``max_chars`` characters if given."""

    max_chars: int | None = None

    @property
    def allowed(self) -> str:
        return (
            "any text" if self.max_chars is None else f"text of {self.max_chars} characters at most"
        )

    def parse(self, text: str) -> str:
        if self.max_chars is not None and len(text) > self.max_chars:
            raise ValueError(text)
        return text


def _is_word(text: str) -> bool:
    return text != "" and text.isprintable() and not any(c.isspace() for c in text)


@dataclass(frozen=True, slots=True)
class Token(Parser[str]):
    """One word: printable, no spaces, up to ``max_chars`` characters (ids such as SIDs)."""

    max_chars: int

    @property
    def allowed(self) -> str:
        return f"one word of {self.max_chars} characters at most (no spaces)"

    def parse(self, text: str) -> str:
        if not _is_word(text) or len(text) > self.max_chars:
            raise ValueError(text)
        return text


@dataclass(frozen=True, slots=True)
class SecretText(Parser[Secret]):
    """A key or token: one printable word of ``min_chars`` or more, kept in a
    :class:`Secret`, never quoted."""

    hides_value: ClassVar[bool] = True
    min_chars: int = 1

    @property
    def allowed(self) -> str:
        if self.min_chars > 1:
            return f"the secret as one word of {self.min_chars} characters or more (no spaces)"
        return "the secret as one word (no spaces)"

    def parse(self, text: str) -> Secret:
        if not _is_word(text) or len(text) < self.min_chars:
            raise ValueError("refused secret")  # never the value itself
        return Secret(text)


_HOST_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*\.?")


@dataclass(frozen=True, slots=True)
class Host(Parser[str]):
    """An IPv4/IPv6 address or a DNS host name (whether it resolves is found at bind)."""

    @property
    def allowed(self) -> str:
        return "an IP address or a host name"

    def parse(self, text: str) -> str:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            if len(text) > 253 or not _HOST_NAME.fullmatch(text):
                raise
        return text


@dataclass(frozen=True, slots=True)
class Url(Parser[str]):
    """An absolute URL with one of ``schemes``, a host and a valid port if any; with
    ``query=False`` no query string (a base URL that paths are appended to)."""

    schemes: tuple[str, ...]
    query: bool = True

    @property
    def allowed(self) -> str:
        *first, last = (f"{scheme}://" for scheme in self.schemes)
        schemes = f"{', '.join(first)} or {last}" if first else last
        limits = "no fragment" if self.query else "no query or fragment"
        return f"a URL ({schemes}) with a host and {limits}"

    def parse(self, text: str) -> str:
        if any(c.isspace() for c in text):
            raise ValueError(text)
        parts = urlsplit(text)  # raises ValueError on a malformed IPv6 literal
        _ = parts.port  # raises ValueError on a port that is not a number in 0..65535
        if parts.scheme not in self.schemes or not parts.hostname or parts.fragment:
            raise ValueError(text)
        if parts.query and not self.query:
            raise ValueError(text)
        return text


@dataclass(frozen=True, slots=True)
class WavFile(Parser[str]):
    """The path of a readable WAV file (read once here, so a bad one stops the start)."""

    @property
    def allowed(self) -> str:
        return "the path of a readable PCM or μ-law WAV file"

    def parse(self, text: str) -> str:
        # Imported here: the audio package is only needed when the setting is given.
        from bridge.audio.wavio import read_wav

        try:
            samples, _rate = read_wav(Path(text))
        except (OSError, EOFError, ValueError) as exc:
            raise ValueError(text) from exc
        if not len(samples):
            raise ValueError(text)
        return text


@dataclass(frozen=True, slots=True)
class Words(Parser[tuple[str, ...]]):
    """A comma-separated list of words or phrases, each stripped; empty items are skipped."""

    max_words: int
    max_chars: int

    @property
    def allowed(self) -> str:
        return (
            f"comma-separated words or phrases ({self.max_words} at most, "
            f"{self.max_chars} characters each at most)"
        )

    def parse(self, text: str) -> tuple[str, ...]:
        words = tuple(word for word in (part.strip() for part in text.split(",")) if word)
        if not words or len(words) > self.max_words:
            raise ValueError(text)
        if any(len(word) > self.max_chars or not word.isprintable() for word in words):
            raise ValueError(text)
        return words

    def show(self, value: tuple[str, ...]) -> str:
        return ", ".join(value)


@dataclass(frozen=True, slots=True)
class AppUrl(Parser[str]):
    """Where the bridge posts to the application: ``https://``, or ``http://`` to a loopback
    host (signed bodies carry what the caller said; they do not cross a network in clear)."""

    @property
    def allowed(self) -> str:
        return APP_URL_ALLOWED

    def parse(self, text: str) -> str:
        if not is_allowed_app_url(text):
            raise ValueError(text)
        return text


@dataclass(frozen=True, slots=True)
class FilePath(Parser[str]):
    """A file path ending in one of ``suffixes`` (read and checked by :func:`load_config`)."""

    suffixes: tuple[str, ...]

    @property
    def allowed(self) -> str:
        *first, last = self.suffixes
        names = f"{', '.join(first)} or {last}" if first else last
        return f"a path to a {names} file"

    def parse(self, text: str) -> str:
        if not text.strip() or Path(text).suffix.lower() not in self.suffixes:
            raise ValueError(text)
        return text


PORT: Final = Int(0, 65535, note="0: any free port")
"""A TCP port to listen on (``BRIDGE_PORT``, ``--port`` of every command that listens)."""


def parse_value(parser: Parser[T], source: str, text: str) -> T:
    """``text`` of the variable or flag ``source`` through ``parser``.

    Raises:
        ConfigError: one line, ``SOURCE='text': must be <parser.allowed>`` (a secret's
            text is replaced by its length).
    """
    try:
        return parser.parse(text)
    except ValueError:
        if parser.hides_value:
            shown = f"<hidden, {len(text)} characters>"
        elif len(text) > _SHOWN_VALUE_CHARS:
            shown = repr(text[:_SHOWN_VALUE_CHARS]) + "…"
        else:
            shown = repr(text)
        raise ConfigError(f"{source}={shown}: must be {parser.allowed}") from None


# -- one definition per setting ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One environment setting, as its :class:`BridgeConfig` field declares it."""

    env: str
    """The environment variable."""
    parser: Parser[T]
    default: T | None
    doc: str
    """One line for the README table (markdown, no ``|``)."""
    flag: str | None
    """The command-line flag that overrides the variable, if any."""
    unset_means: str | None
    """What a ``None`` default means, for the README (markdown)."""
    empty_is_value: bool
    """Set but empty is a value of its own (``BRIDGE_GREETING``); otherwise the default."""

    @property
    def default_cell(self) -> str:
        """The default as the README's table writes it."""
        if self.default is None:
            return self.unset_means or "none"
        return f"`{self.parser.show(self.default)}`"

    @property
    def doc_cell(self) -> str:
        """The doc line with the overriding flag, as the README's table writes it."""
        return f"{self.doc} Flag: `{self.flag}`." if self.flag else self.doc


_SETTING: Final = "bridge.setting"
"""The dataclass field metadata key that holds a field's :class:`Setting`."""


@overload
def setting(
    env: str,
    parser: Parser[T],
    default: T,
    doc: str,
    *,
    flag: str | None = None,
    empty_is_value: bool = False,
) -> T: ...


@overload
def setting(
    env: str,
    parser: Parser[T],
    default: None,
    doc: str,
    *,
    unset_means: str,
    flag: str | None = None,
) -> T | None: ...


def setting(
    env: str,
    parser: Parser[T],
    default: T | None,
    doc: str,
    *,
    flag: str | None = None,
    unset_means: str | None = None,
    empty_is_value: bool = False,
) -> T | None:
    """A :class:`BridgeConfig` field read from ``env``: its default, with its
    :class:`Setting` in the field's metadata."""
    definition = Setting(env, parser, default, doc, flag, unset_means, empty_is_value)
    return field(default=default, metadata={_SETTING: definition})


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Everything the process runs with. Durations in seconds (``_s``) or ms (``_ms``)."""

    host: str = setting("BRIDGE_HOST", Host(), "0.0.0.0", "Interface to listen on.", flag="--host")
    port: int = setting(
        "BRIDGE_PORT",
        PORT,
        8080,
        "The one port: webhook, health, metrics and media WebSocket (with `0`, the `BRIDGE_READY` log line says which port it took).",
        flag="--port",
    )
    public_url: str | None = setting(
        "BRIDGE_PUBLIC_URL",
        Url(("https", "http", "wss", "ws"), query=False),
        None,
        "Public base URL Twilio reaches, e.g. `https://bridge.example.com`; the stream URL becomes `wss://…/twilio/media`, and signatures are checked against it.",
        unset_means="Host header",
        flag="--public-url",
    )
    openai_api_key: Secret | None = setting(
        "OPENAI_API_KEY",
        SecretText(),
        None,
        "Realtime API key. With neither this nor `OPENAI_REALTIME_URL`, the embedded simulated upstream runs in-process (the first log line says so).",
        unset_means="none",
    )
    openai_realtime_url: str | None = setting(
        "OPENAI_REALTIME_URL",
        Url(("wss", "ws")),
        None,
        "Full Realtime WebSocket URL (GA). `ws://127.0.0.1:…` works, for tests and your own fakes.",
        unset_means=f"`{DEFAULT_REALTIME_URL}`",
    )
    openai_voice: str = setting("OPENAI_VOICE", Choice(VOICES), "marin", "The model's voice.")
    openai_audio_format: AudioFormat = setting(
        "OPENAI_AUDIO_FORMAT",
        Choice(AUDIO_FORMATS),
        "pcmu",
        "`pcmu`: μ-law passthrough. `pcm16`: 24 kHz PCM to the model, through soxr (LQ) streaming resamplers.",
    )
    instructions: str = setting(
        "BRIDGE_INSTRUCTIONS", Text(), DEFAULT_INSTRUCTIONS, "Session instructions for the model."
    )
    greeting: str = setting(
        "BRIDGE_GREETING",
        Text(),
        DEFAULT_GREETING,
        "Instructions for the first response, spoken as soon as the session is ready; set but empty: wait for the caller.",
        empty_is_value=True,
    )
    fallback_message: str = setting(
        "BRIDGE_FALLBACK_MESSAGE",
        # The REST hang-up carries it inside TwiML, which Twilio caps at 4000 characters.
        Text(max_chars=1000),
        DEFAULT_FALLBACK,
        "What Twilio says when the stream ends abnormally (TwiML fallback and REST hang-up).",
    )
    twilio_account_sid: str | None = setting(
        "TWILIO_ACCOUNT_SID",
        Token(max_chars=64),
        None,
        "With the token: REST hang-up when the bridge ends a call.",
        unset_means="none",
    )
    twilio_auth_token: Secret | None = setting(
        "TWILIO_AUTH_TOKEN",
        SecretText(),
        None,
        "Checks `X-Twilio-Signature` on the webhook and the stream upgrade; REST auth.",
        unset_means="none",
    )
    twilio_api_base_url: str = setting(
        "TWILIO_API_BASE_URL",
        Url(("https", "http"), query=False),
        "https://api.twilio.com",
        "Twilio REST base URL (point it at a fake in tests).",
    )
    control_token: Secret | None = setting(
        "BRIDGE_CONTROL_TOKEN",
        # 32 characters of a random token are far beyond guessing, even without a lockout.
        SecretText(min_chars=32),
        None,
        "Enables the control API (`GET /calls`, `POST /calls/{call_sid}/notes`): each request must carry `Authorization: Bearer <token>`. Unset: those routes answer 404.",
        unset_means="none (control API off)",
    )
    tx_lead_ms: int = setting(
        "BRIDGE_TX_LEAD_MS",
        # Below one 20 ms frame Twilio would hold nothing and every network hiccup is a gap.
        Int(20, 2000, "ms"),
        200,
        "The most unplayed AI audio Twilio holds; a barge-in's clear drops it at once.",
    )
    tx_frame_ms: int = setting(
        "BRIDGE_TX_FRAME_MS",
        # Under 20 ms a message would carry less than the queue's unit.
        Int(20, 1000, "ms"),
        100,
        "Largest media message to Twilio, sent whenever Twilio has room for one (a mark every 200 ms).",
    )
    fast_barge_in: FastBargeIn = setting(
        "BRIDGE_FAST_BARGE_IN",
        Choice(FAST_BARGE_IN_MODES),
        "duck",
        "Local fast barge-in: `duck` stops playout at once on local voice and resumes if the server does not confirm; `off` waits for the server's VAD.",
        flag="--fast-barge-in",
    )
    confirm_window_ms: int = setting(
        "BRIDGE_CONFIRM_WINDOW_MS",
        Int(100, 5000, "ms"),
        700,
        "How long a local barge-in waits for the server's `speech_started`.",
    )
    audio_gate: bool = setting(
        "BRIDGE_AUDIO_GATE",
        Flag(),
        True,
        "`on`: line noise reaches the model as silence; `off`: every frame passes unchanged.",
    )
    negations: tuple[str, ...] = setting(
        "BRIDGE_NEGATIONS",
        Words(max_words=100, max_chars=64),
        DEFAULT_NEGATIONS,
        "Plain negations that discard notes awaiting confirmation.",
    )
    heartbeat_interval_s: float = setting(
        "BRIDGE_HEARTBEAT_S",
        # A ping may stay unanswered for one interval: under 1 s, ordinary jitter would
        # make stalls of round trips. 1 s finds a stalled session within 1.5 s.
        Float(1.0, 300.0, "seconds"),
        1.0,
        "Upstream quiet for half of this gets a ping; unanswered for this, the session is replaced (stall).",
    )
    heartbeat_timeout_s: float = 1.0
    """How long a ping may go unanswered; ``load_config`` makes it ``BRIDGE_HEARTBEAT_S``."""
    start_timeout_s: float = 10.0
    """How long a new media stream may take to send ``start``."""
    session_timeout_s: float = 10.0
    """Bound on the upstream handshake, and separately on its session confirmation."""
    max_call_s: float = setting(
        "BRIDGE_MAX_CALL_S",
        Float(1.0, 86400.0, "seconds"),
        14400.0,
        "The call's own length limit (the upstream session is renewed before its cap).",
    )
    session_recycle_s: float = setting(
        "BRIDGE_SESSION_RECYCLE_S",
        Float(60.0, 3540.0, "seconds"),
        3300.0,
        "Replace the upstream session at a turn boundary after this long (the service caps a session at 60 minutes).",
    )
    reconnect_attempts: int = setting(
        "BRIDGE_RECONNECT_ATTEMPTS",
        Int(0, 10),
        3,
        "Upstream connections tried within `BRIDGE_RECONNECT_WINDOW_S` when the upstream is lost; 0: a lost upstream ends the call.",
    )
    reconnect_window_s: float = setting(
        "BRIDGE_RECONNECT_WINDOW_S",
        Float(1.0, 300.0, "seconds"),
        10.0,
        "The window of the reconnect budget; once it is spent the TwiML fallback plays.",
    )
    comfort_after_ms: int = setting(
        "BRIDGE_COMFORT_AFTER_MS",
        Int(100, 10000, "ms"),
        700,
        "Silence at the caller before comfort audio: while the upstream heals, the hold "
        "phrase (once; then a soft cue after every 1.2 s of silence); when a reply's audio "
        "stops coming mid-word, a soft cue (once per silence).",
    )
    hold_audio_wav: str | None = setting(
        "BRIDGE_HOLD_AUDIO_WAV",
        WavFile(),
        None,
        "The hold phrase the caller hears while the upstream heals or a reply is late.",
        unset_means='the shipped "One moment, please."',
    )
    reply_timeout_ms: int = setting(
        "BRIDGE_REPLY_TIMEOUT_MS",
        Int(500, 30000, "ms"),
        3000,
        "The caller's turn ended and no reply started: one nudge to the model, then the hold phrase.",
    )
    media_timeout_s: float = setting(
        "BRIDGE_MEDIA_TIMEOUT_S",
        Float(3.0, 600.0, "seconds"),
        10.0,
        "Twilio's socket open but no caller audio for this long: the call ends with the fallback.",
    )
    log_format: LogFormat = setting(
        "BRIDGE_LOG_FORMAT",
        Choice(LOG_FORMATS),
        "text",
        "`json`: one JSON object per line.",
        flag="--log-format",
    )
    log_level: str = setting(
        "BRIDGE_LOG_LEVEL", Choice(LOG_LEVELS), "INFO", "Lowest level logged.", flag="--log-level"
    )
    log_transcripts: bool = setting(
        "BRIDGE_LOG_TRANSCRIPTS",
        Flag(),
        False,
        "`on`: log what the caller and the AI said at INFO (personal data).",
    )
    log_pii: bool = setting(
        "BRIDGE_LOG_PII",
        Flag(),
        False,
        "`on`: log the caller's and the called phone numbers (`From`, `To`) in `CALL_START` (personal data); `off`: they show as `<hidden>`.",
    )
    tools_file: str | None = setting(
        "BRIDGE_TOOLS_FILE",
        FilePath((".json", ".toml")),
        None,
        "The tools the model may call (see Tools below): read and checked at start-up; a mistake stops the command naming the line or field.",
        unset_means="none (no tools)",
    )
    tools: ToolCatalog = NO_TOOLS
    """The tools of ``BRIDGE_TOOLS_FILE``; ``load_config`` reads the file into it."""
    app_secret: Secret | None = setting(
        "BRIDGE_APP_SECRET",
        SecretText(),
        None,
        "Shared secret that signs every request to the application (tool calls, call events): `X-Bridge-Signature`, HMAC-SHA256. Required with tools that have a `url`, or with `BRIDGE_EVENTS_URL`.",
        unset_means="none",
    )
    events_url: str | None = setting(
        "BRIDGE_EVENTS_URL",
        AppUrl(),
        None,
        "Where call events are posted (`call.started`, `transcript`, `barge_in`, `tool.called`, `call.ended`).",
        unset_means="none (no events)",
    )
    internal_url: str | None = setting(
        "BRIDGE_INTERNAL_URL",
        Url(("http", "https"), query=False),
        None,
        "Base URL at which the application reaches this process; each call's control URL is this plus `/calls/{CallSid}`.",
        unset_means="`http://<this host's address>:<port>`",
    )
    tool_filler_ms: int = setting(
        "BRIDGE_TOOL_FILLER_MS",
        Int(0, 10000, "ms", note="0: no filler"),
        1000,
        "Silence the caller may hear while a tool runs before the model says it is checking (once per wait).",
    )

    @property
    def uses_embedded_upstream(self) -> bool:
        """No key and no URL: run the simulated upstream in-process."""
        return self.openai_api_key is None and self.openai_realtime_url is None

    @property
    def realtime_url(self) -> str:
        return self.openai_realtime_url or DEFAULT_REALTIME_URL

    @property
    def realtime_model(self) -> str | None:
        return parse_qs(urlsplit(self.realtime_url).query).get("model", [None])[0]

    @property
    def twilio_rest_enabled(self) -> bool:
        return self.twilio_account_sid is not None and self.twilio_auth_token is not None

    def media_stream_url(self, host_header: str | None) -> str:
        """The ``wss://`` URL Twilio connects to (and signs), from ``BRIDGE_PUBLIC_URL``."""
        if self.public_url:
            base = urlsplit(self.public_url)
            scheme = "ws" if base.scheme in ("http", "ws") else "wss"
            return f"{scheme}://{base.netloc}{base.path.rstrip('/')}/twilio/media"
        return f"wss://{host_header or f'{self.host}:{self.port}'}/twilio/media"


_SETTING_FIELDS: Final[tuple[tuple[str, Setting[Any]], ...]] = tuple(
    (f.name, f.metadata[_SETTING]) for f in fields(BridgeConfig) if _SETTING in f.metadata
)
SETTINGS: Final[tuple[Setting[Any], ...]] = tuple(s for _, s in _SETTING_FIELDS)
"""Every environment setting, in :class:`BridgeConfig` field order (the README's order)."""
FLAGS: Final[frozenset[str]] = frozenset(s.flag for s in SETTINGS if s.flag is not None)
"""The command-line flags that override a setting."""


def load_config(environ: Mapping[str, str], flags: Mapping[str, str] | None = None) -> BridgeConfig:
    """The configuration from environment variables and overriding command-line flags.

    ``flags`` maps flag names (``"--port"``, see :data:`FLAGS`) to their text; a flag wins
    over its variable, which is then not read. An unset or empty variable means the default
    (except where :attr:`Setting.empty_is_value`).

    Raises:
        ConfigError: a value its parser refuses (one line naming it and what is allowed).
        ValueError: a key of ``flags`` that is no setting's flag (a bug in the caller).
    """
    given = dict(flags or {})
    if unknown := set(given) - FLAGS:
        raise ValueError(f"not flags of any setting: {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    text: str | None
    for attr, definition in _SETTING_FIELDS:
        flag = definition.flag
        if flag is not None and flag in given:
            source, text = flag, given[flag]
        else:
            source, text = definition.env, environ.get(definition.env)
        if text is None or (text == "" and not definition.empty_is_value):
            continue
        changes[attr] = parse_value(definition.parser, source, text)
    if "heartbeat_interval_s" in changes:
        changes["heartbeat_timeout_s"] = changes["heartbeat_interval_s"]
    if "tools_file" in changes:
        changes["tools"] = load_tools_file(changes["tools_file"])
    return replace(BridgeConfig(), **changes)


def load_tools_file(path: str) -> ToolCatalog:
    """The tools of the file at ``path`` (``.json`` or ``.toml``).

    Raises:
        ConfigError: one line, ``BRIDGE_TOOLS_FILE='path': <the line or field and what is
            wrong>``, or that the file cannot be read.
    """
    source = f"BRIDGE_TOOLS_FILE={path!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: is not UTF-8 text") from None
    fmt: Literal["json", "toml"] = "json" if path.lower().endswith(".json") else "toml"
    try:
        return parse_tools_document(text, fmt)
    except ToolsFileError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def check_together(config: BridgeConfig) -> None:
    """Settings that only work together (checked by ``bridge serve`` before it starts, and
    by :func:`bridge.runtime.server.run_bridge`).

    Raises:
        ConfigError: one line naming the settings and why.
    """
    tools = config.tools
    if config.app_secret is None and (tools.has_url_tools or config.events_url):
        needs = "the tools with a url in BRIDGE_TOOLS_FILE" if tools.has_url_tools else ""
        if config.events_url:
            needs = f"{needs} and BRIDGE_EVENTS_URL" if needs else "BRIDGE_EVENTS_URL"
        raise ConfigError(f"BRIDGE_APP_SECRET: must be set: it signs the requests to {needs}")
    for builtin in tools.builtins:
        if not config.twilio_rest_enabled:
            why = (
                "the call is hung up through REST once the goodbye was heard (closing the stream "
                "alone would play BRIDGE_FALLBACK_MESSAGE)"
                if builtin.kind == "end_call"
                else "the transfer is a REST redirect to <Dial>"
            )
            raise ConfigError(
                f"BRIDGE_TOOLS_FILE={config.tools_file!r}: {builtin.kind} needs "
                f"TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: {why}"
            )
