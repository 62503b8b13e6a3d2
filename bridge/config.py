"""Process configuration: environment variables, overridden by command-line flags.

Every setting is documented in the README's configuration table; :data:`SETTINGS` below is
the single source of names, defaults and meanings. Secrets are wrapped in :class:`Secret`
so they never reach a log line or a ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import parse_qs, urlsplit

DEFAULT_REALTIME_URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise phone assistant. Speak in short sentences. "
    "If the caller interrupts you, stop and answer only what they just said."
)
DEFAULT_GREETING = "Greet the caller briefly and ask how you can help."
DEFAULT_FALLBACK = "Sorry, we are having a technical problem. Please call again later. Goodbye."
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")


class ConfigError(ValueError):
    """A setting has a value the bridge cannot run with; the message names it."""


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


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    public_url: str | None = None
    openai_api_key: Secret | None = None
    openai_realtime_url: str | None = None
    openai_voice: str = "marin"
    openai_audio_format: Literal["pcmu", "pcm16"] = "pcmu"
    instructions: str = DEFAULT_INSTRUCTIONS
    greeting: str = DEFAULT_GREETING
    fallback_message: str = DEFAULT_FALLBACK
    twilio_account_sid: str | None = None
    twilio_auth_token: Secret | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    tx_lead_ms: int = 100
    tx_frame_ms: int = 40
    fast_barge_in: Literal["off", "duck"] = "duck"
    confirm_window_ms: int = 700
    audio_gate: bool = True
    negations: tuple[str, ...] = field(default_factory=tuple)
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 5.0
    start_timeout_s: float = 10.0
    session_timeout_s: float = 10.0
    max_call_s: float = 3540.0
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    log_transcripts: bool = False

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

    def with_overrides(self, **changes: object) -> BridgeConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    attr: str
    default: str
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting("BRIDGE_HOST", "host", "0.0.0.0", "Interface to listen on (`--host`)."),
    Setting(
        "BRIDGE_PORT",
        "port",
        "8080",
        "Port for webhook, health, metrics and media WebSocket (`--port`).",
    ),
    Setting(
        "BRIDGE_PUBLIC_URL",
        "public_url",
        "(Host header)",
        "Public base URL Twilio reaches, e.g. `https://bridge.example.com`; the stream URL becomes `wss://…/twilio/media` and is what signatures are checked against.",
    ),
    Setting(
        "OPENAI_API_KEY",
        "openai_api_key",
        "(none)",
        "Realtime API key. With neither this nor `OPENAI_REALTIME_URL`, the embedded simulated upstream runs in-process.",
    ),
    Setting(
        "OPENAI_REALTIME_URL",
        "openai_realtime_url",
        DEFAULT_REALTIME_URL,
        "Full Realtime WebSocket URL (GA); `ws://127.0.0.1:…` works for tests and fakes.",
    ),
    Setting("OPENAI_VOICE", "openai_voice", "marin", "Voice: " + ", ".join(VOICES) + "."),
    Setting(
        "OPENAI_AUDIO_FORMAT",
        "openai_audio_format",
        "pcmu",
        "`pcmu` (μ-law passthrough, no transcoding) or `pcm16` (24 kHz PCM via soxr).",
    ),
    Setting(
        "BRIDGE_INSTRUCTIONS",
        "instructions",
        "(short phone persona)",
        "Session instructions for the model.",
    ),
    Setting(
        "BRIDGE_GREETING",
        "greeting",
        DEFAULT_GREETING,
        "Instructions for the first response, spoken when the session is ready; empty = wait for the caller.",
    ),
    Setting(
        "BRIDGE_FALLBACK_MESSAGE",
        "fallback_message",
        "(apology)",
        "What Twilio says when the stream ends abnormally (TwiML `<Say>` and REST hang-up).",
    ),
    Setting(
        "TWILIO_ACCOUNT_SID",
        "twilio_account_sid",
        "(none)",
        "With the token: REST hang-up when the bridge ends a call, and signature checks.",
    ),
    Setting(
        "TWILIO_AUTH_TOKEN",
        "twilio_auth_token",
        "(none)",
        "Validates `X-Twilio-Signature` on the webhook and the stream upgrade; REST auth.",
    ),
    Setting(
        "TWILIO_API_BASE_URL",
        "twilio_api_base_url",
        "https://api.twilio.com",
        "Twilio REST base URL (point it at a fake in tests).",
    ),
    Setting(
        "BRIDGE_TX_LEAD_MS",
        "tx_lead_ms",
        "100",
        "How far ahead of real time audio is sent to Twilio (ms).",
    ),
    Setting(
        "BRIDGE_TX_FRAME_MS",
        "tx_frame_ms",
        "20",
        "Outbound frame size (ms); a mark follows each frame.",
    ),
    Setting(
        "BRIDGE_FAST_BARGE_IN",
        "fast_barge_in",
        "duck",
        "Local fast barge-in: `off` or `duck` (stop at once, resume if the server does not confirm).",
    ),
    Setting(
        "BRIDGE_CONFIRM_WINDOW_MS",
        "confirm_window_ms",
        "700",
        "How long a local barge-in waits for the server's `speech_started` (ms).",
    ),
    Setting(
        "BRIDGE_AUDIO_GATE",
        "audio_gate",
        "on",
        "`on`: line noise reaches the model as silence; `off`: every frame passes unchanged.",
    ),
    Setting(
        "BRIDGE_NEGATIONS",
        "negations",
        "no,nope,nah,…,לא",
        "Comma-separated plain negations that discard notes awaiting confirmation.",
    ),
    Setting(
        "BRIDGE_HEARTBEAT_S",
        "heartbeat_interval_s",
        "5",
        "Upstream ping interval (s); a ping unanswered for as long ends the call (stall).",
    ),
    Setting(
        "BRIDGE_MAX_CALL_S",
        "max_call_s",
        "3540",
        "Call length limit (s), under the Realtime 60-minute session cap.",
    ),
    Setting(
        "BRIDGE_LOG_FORMAT", "log_format", "text", "`text` or `json` (one JSON object per line)."
    ),
    Setting("BRIDGE_LOG_LEVEL", "log_level", "INFO", "`DEBUG`, `INFO`, `WARNING`."),
    Setting(
        "BRIDGE_LOG_TRANSCRIPTS",
        "log_transcripts",
        "off",
        "`on`: log what the caller and the AI said at INFO (personal data; the demo turns it on).",
    ),
)


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "on", "true", "yes"):
        return True
    if lowered in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, not {value!r}")


def _number(value: str, name: str, kind: type[int] | type[float]) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {value!r}") from None
    if number < 0:
        raise ConfigError(f"{name} must not be negative")
    return number


def load_config(environ: Mapping[str, str]) -> BridgeConfig:
    """Build the configuration from environment variables (unset or empty = default)."""

    def get(name: str) -> str | None:
        value = environ.get(name)
        return value if value not in (None, "") else None

    config = BridgeConfig()
    changes: dict[str, object] = {}
    if (v := get("BRIDGE_HOST")) is not None:
        changes["host"] = v
    if (v := get("BRIDGE_PORT")) is not None:
        changes["port"] = int(_number(v, "BRIDGE_PORT", int))
    for name, attr in (
        ("BRIDGE_PUBLIC_URL", "public_url"),
        ("OPENAI_REALTIME_URL", "openai_realtime_url"),
        ("BRIDGE_INSTRUCTIONS", "instructions"),
        ("BRIDGE_FALLBACK_MESSAGE", "fallback_message"),
        ("TWILIO_ACCOUNT_SID", "twilio_account_sid"),
        ("TWILIO_API_BASE_URL", "twilio_api_base_url"),
        ("BRIDGE_LOG_LEVEL", "log_level"),
    ):
        if (v := get(name)) is not None:
            changes[attr] = v
    if "BRIDGE_GREETING" in environ:
        changes["greeting"] = environ["BRIDGE_GREETING"]
    if (v := get("OPENAI_API_KEY")) is not None:
        changes["openai_api_key"] = Secret(v)
    if (v := get("TWILIO_AUTH_TOKEN")) is not None:
        changes["twilio_auth_token"] = Secret(v)
    if (v := get("OPENAI_VOICE")) is not None:
        if v not in VOICES:
            raise ConfigError(f"OPENAI_VOICE must be one of {', '.join(VOICES)}, not {v!r}")
        changes["openai_voice"] = v
    if (v := get("OPENAI_AUDIO_FORMAT")) is not None:
        if v not in ("pcmu", "pcm16"):
            raise ConfigError(f"OPENAI_AUDIO_FORMAT must be pcmu or pcm16, not {v!r}")
        changes["openai_audio_format"] = v
    if (v := get("BRIDGE_FAST_BARGE_IN")) is not None:
        if v not in ("off", "duck"):
            raise ConfigError(f"BRIDGE_FAST_BARGE_IN must be off or duck, not {v!r}")
        changes["fast_barge_in"] = v
    if (v := get("BRIDGE_LOG_FORMAT")) is not None:
        if v not in ("text", "json"):
            raise ConfigError(f"BRIDGE_LOG_FORMAT must be text or json, not {v!r}")
        changes["log_format"] = v
    if (v := get("BRIDGE_AUDIO_GATE")) is not None:
        changes["audio_gate"] = _flag(v, "BRIDGE_AUDIO_GATE")
    if (v := get("BRIDGE_LOG_TRANSCRIPTS")) is not None:
        changes["log_transcripts"] = _flag(v, "BRIDGE_LOG_TRANSCRIPTS")
    if (v := get("BRIDGE_NEGATIONS")) is not None:
        changes["negations"] = tuple(w.strip() for w in v.split(",") if w.strip())
    for name, attr, kind in (
        ("BRIDGE_TX_LEAD_MS", "tx_lead_ms", int),
        ("BRIDGE_TX_FRAME_MS", "tx_frame_ms", int),
        ("BRIDGE_CONFIRM_WINDOW_MS", "confirm_window_ms", int),
        ("BRIDGE_HEARTBEAT_S", "heartbeat_interval_s", float),
        ("BRIDGE_MAX_CALL_S", "max_call_s", float),
    ):
        if (v := get(name)) is not None:
            number = _number(v, name, kind)
            changes[attr] = int(number) if kind is int else number
    if changes.get("tx_frame_ms", 20) == 0:
        raise ConfigError("BRIDGE_TX_FRAME_MS must be at least 1")
    if "heartbeat_interval_s" in changes:
        changes["heartbeat_timeout_s"] = changes["heartbeat_interval_s"]
    return replace(config, **changes)  # type: ignore[arg-type]
