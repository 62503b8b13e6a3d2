"""Settings: one definition each, the loader driven by it, the README table checked against it.

Every refused value must give one line, ``NAME='value': must be <allowed>``, so these tests
compare whole messages, not fragments.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.config import (
    FLAGS,
    SETTINGS,
    BridgeConfig,
    ConfigError,
    Secret,
    Setting,
    load_config,
)
from bridge.core.call import CoreSettings
from bridge.runtime.services import core_settings

README = Path(__file__).parent.parent / "README.md"
SHIPPED_WAV = str(Path(__file__).parent.parent / "bridge" / "assets" / "one_moment.wav")
TABLE_HEADER = "| Variable | Default | Allowed | What it does |"
EMPTY_TOOLS_FILE = Path(__file__).parent / "data" / "tools-empty.json"
BY_ENV: dict[str, Setting[Any]] = {s.env: s for s in SETTINGS}


def refusal(env: str, value: str) -> str:
    return f"{env}={value!r}: must be {BY_ENV[env].parser.allowed}"


# -- moved from test_config_and_state.py, assertions unchanged ----------------------------


def test_defaults_use_the_embedded_upstream() -> None:
    config = load_config({})
    assert config.uses_embedded_upstream
    assert config.realtime_url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert config.realtime_model == "gpt-realtime"
    assert not config.twilio_rest_enabled


def test_environment_is_parsed_and_secrets_stay_hidden() -> None:
    config = load_config(
        {
            "BRIDGE_PORT": "9090",
            "BRIDGE_PUBLIC_URL": "https://bridge.example.com/",
            "OPENAI_API_KEY": "sk-secret",
            "OPENAI_REALTIME_URL": "ws://127.0.0.1:9000/v1/realtime?model=gpt-realtime-mini",
            "OPENAI_VOICE": "cedar",
            "TWILIO_ACCOUNT_SID": "AC1",
            "TWILIO_AUTH_TOKEN": "tok-secret",
            "BRIDGE_AUDIO_GATE": "off",
            "BRIDGE_FAST_BARGE_IN": "duck",
            "BRIDGE_NEGATIONS": "no, nein ,non",
            "BRIDGE_GREETING": "",
        }
    )
    assert config.port == 9090
    assert config.media_stream_url(None) == "wss://bridge.example.com/twilio/media"
    assert config.realtime_model == "gpt-realtime-mini"
    assert config.openai_voice == "cedar"
    assert config.twilio_rest_enabled
    assert config.audio_gate is False
    assert config.fast_barge_in == "duck"
    assert config.negations == ("no", "nein", "non")
    assert config.greeting == ""
    assert config.openai_api_key == Secret("sk-secret")
    assert "sk-secret" not in repr(config)
    assert "tok-secret" not in repr(config)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BRIDGE_PORT", "http"),
        ("BRIDGE_PORT", "-1"),
        ("OPENAI_VOICE", "nova"),
        ("OPENAI_AUDIO_FORMAT", "g711_ulaw"),
        ("BRIDGE_AUDIO_GATE", "maybe"),
        ("BRIDGE_FAST_BARGE_IN", "fast"),
        ("BRIDGE_TX_FRAME_MS", "0"),
    ],
)
def test_bad_settings_are_named_in_the_error(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


def test_readme_documents_every_setting() -> None:
    readme = README.read_text()
    table = {
        line.split("|")[1].strip().strip("`")
        for line in readme.splitlines()
        if line.startswith("| `")
    }
    assert {setting.env for setting in SETTINGS} <= table


# -- one definition per setting -------------------------------------------------------------


def test_the_dataclass_defaults_are_the_definitions_defaults() -> None:
    config = BridgeConfig()
    for f in dataclasses.fields(BridgeConfig):
        definition = f.metadata.get("bridge.setting")
        if definition is not None:
            assert getattr(config, f.name) == definition.default, f.name
    assert load_config({}) == config
    assert config.tx_frame_ms == 100


def test_every_default_is_a_value_its_own_parser_accepts() -> None:
    for definition in SETTINGS:
        if definition.default is not None:
            shown = definition.parser.show(definition.default)
            assert definition.parser.parse(shown) == definition.default, definition.env


def test_the_core_has_no_defaults_of_its_own_for_a_setting() -> None:
    """The per-call settings come only from the configuration: no default can drift."""
    with_defaults = {
        f.name
        for f in dataclasses.fields(CoreSettings)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    assert with_defaults == {"max_queued_ms"}  # not a setting: the TX queue cap
    config = BridgeConfig()
    core = core_settings(config)
    assert (core.frame_ms, core.lead_ms, core.confirm_window_ms) == (
        config.tx_frame_ms,
        config.tx_lead_ms,
        config.confirm_window_ms,
    )
    assert (core.fast_barge_in, core.gate_enabled, core.log_transcripts) == (
        config.fast_barge_in,
        config.audio_gate,
        config.log_transcripts,
    )
    assert core.greeting == config.greeting
    assert core.negations == config.negations


def test_names_are_unique_and_docs_fit_in_a_table_cell() -> None:
    assert len(BY_ENV) == len(SETTINGS)
    assert len(FLAGS) == len([s for s in SETTINGS if s.flag])
    for definition in SETTINGS:
        for cell in (definition.doc, definition.default_cell, definition.parser.allowed):
            assert "|" not in cell, definition.env
            assert "\n" not in cell, definition.env


# -- the README table -------------------------------------------------------------------------


def readme_table_rows() -> list[list[str]]:
    lines = README.read_text().splitlines()
    start = lines.index(TABLE_HEADER)
    assert re.fullmatch(r"\|(---\|){4}", lines[start + 1])
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def expected_table() -> str:
    rows = [
        f"| `{s.env}` | {s.default_cell} | {s.parser.allowed} | {s.doc_cell} |" for s in SETTINGS
    ]
    return "\n".join([TABLE_HEADER, "|---|---|---|---|", *rows])


def test_the_readme_table_is_the_definitions_names_defaults_and_docs() -> None:
    rows = readme_table_rows()
    expected = [[f"`{s.env}`", s.default_cell, s.parser.allowed, s.doc_cell] for s in SETTINGS]
    assert rows == expected, "README configuration table drifted; it should be:\n" + (
        expected_table()
    )


def test_the_readme_never_runs_a_bare_bridge_command() -> None:
    """A bare ``bridge`` on Linux is iproute2's tool: commands name ``.venv/bin/bridge``."""
    bare = re.compile(r"(?<![\w/.-])bridge\s+(serve|call|demo|sim-upstream)\b")
    assert bare.findall(README.read_text()) == []


# -- parsing: good values ------------------------------------------------------------------

GOOD_VALUES: list[tuple[str, str, str, object]] = [
    ("BRIDGE_HOST", "127.0.0.1", "host", "127.0.0.1"),
    ("BRIDGE_HOST", "::", "host", "::"),
    ("BRIDGE_HOST", "bridge.internal", "host", "bridge.internal"),
    ("BRIDGE_PORT", "0", "port", 0),
    ("BRIDGE_PORT", "65535", "port", 65535),
    ("BRIDGE_PUBLIC_URL", "http://10.0.0.2:8080/prefix", "public_url", None),
    ("BRIDGE_PUBLIC_URL", "wss://bridge.example.com", "public_url", None),
    ("OPENAI_API_KEY", "sk-proj-abc_123", "openai_api_key", Secret("sk-proj-abc_123")),
    ("OPENAI_REALTIME_URL", "wss://h/v1/realtime?model=m", "openai_realtime_url", None),
    ("OPENAI_VOICE", "alloy", "openai_voice", "alloy"),
    ("OPENAI_AUDIO_FORMAT", "pcm16", "openai_audio_format", "pcm16"),
    ("BRIDGE_INSTRUCTIONS", "Be brief.\nBe kind.", "instructions", "Be brief.\nBe kind."),
    ("BRIDGE_GREETING", "Say hi.", "greeting", "Say hi."),
    ("BRIDGE_FALLBACK_MESSAGE", "x" * 1000, "fallback_message", "x" * 1000),
    ("TWILIO_ACCOUNT_SID", "AC" + "0" * 32, "twilio_account_sid", "AC" + "0" * 32),
    ("TWILIO_AUTH_TOKEN", "tok", "twilio_auth_token", Secret("tok")),
    ("TWILIO_API_BASE_URL", "http://127.0.0.1:9", "twilio_api_base_url", None),
    ("BRIDGE_TX_LEAD_MS", "20", "tx_lead_ms", 20),
    ("BRIDGE_TX_LEAD_MS", "2000", "tx_lead_ms", 2000),
    ("BRIDGE_TX_FRAME_MS", "20", "tx_frame_ms", 20),
    ("BRIDGE_TX_FRAME_MS", " 1000 ", "tx_frame_ms", 1000),
    ("BRIDGE_FAST_BARGE_IN", "off", "fast_barge_in", "off"),
    ("BRIDGE_CONFIRM_WINDOW_MS", "100", "confirm_window_ms", 100),
    ("BRIDGE_CONFIRM_WINDOW_MS", "5000", "confirm_window_ms", 5000),
    ("BRIDGE_AUDIO_GATE", "OFF", "audio_gate", False),
    ("BRIDGE_AUDIO_GATE", "yes", "audio_gate", True),
    ("BRIDGE_NEGATIONS", "לא, no thanks", "negations", ("לא", "no thanks")),
    ("BRIDGE_HEARTBEAT_S", "1", "heartbeat_interval_s", 1.0),
    ("BRIDGE_HEARTBEAT_S", "2.5", "heartbeat_interval_s", 2.5),
    ("BRIDGE_MAX_CALL_S", "86400", "max_call_s", 86400.0),
    ("BRIDGE_SESSION_RECYCLE_S", "60", "session_recycle_s", 60.0),
    ("BRIDGE_SESSION_RECYCLE_S", "3540", "session_recycle_s", 3540.0),
    ("BRIDGE_RECONNECT_ATTEMPTS", "0", "reconnect_attempts", 0),
    ("BRIDGE_RECONNECT_ATTEMPTS", "10", "reconnect_attempts", 10),
    ("BRIDGE_RECONNECT_WINDOW_S", "2.5", "reconnect_window_s", 2.5),
    ("BRIDGE_COMFORT_AFTER_MS", "100", "comfort_after_ms", 100),
    ("BRIDGE_HOLD_AUDIO_WAV", SHIPPED_WAV, "hold_audio_wav", SHIPPED_WAV),
    ("BRIDGE_REPLY_TIMEOUT_MS", "30000", "reply_timeout_ms", 30000),
    ("BRIDGE_MEDIA_TIMEOUT_S", "3", "media_timeout_s", 3.0),
    ("BRIDGE_MAX_CALL_S", "1e2", "max_call_s", 100.0),
    ("BRIDGE_LOG_FORMAT", "json", "log_format", "json"),
    ("BRIDGE_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ("BRIDGE_LOG_TRANSCRIPTS", "1", "log_transcripts", True),
    ("BRIDGE_CONTROL_TOKEN", "c" * 32, "control_token", Secret("c" * 32)),
    ("BRIDGE_LOG_PII", "on", "log_pii", True),
    ("BRIDGE_TOOLS_FILE", str(EMPTY_TOOLS_FILE), "tools_file", None),
    ("BRIDGE_APP_SECRET", "whsec_abc123", "app_secret", Secret("whsec_abc123")),
    ("BRIDGE_EVENTS_URL", "http://127.0.0.1:9/events", "events_url", None),
    ("BRIDGE_EVENTS_URL", "https://app.example.com/bridge/events", "events_url", None),
    ("BRIDGE_INTERNAL_URL", "http://10.0.0.7:8080", "internal_url", None),
    ("BRIDGE_TOOL_FILLER_MS", "0", "tool_filler_ms", 0),
    ("BRIDGE_TOOL_FILLER_MS", "1500", "tool_filler_ms", 1500),
]


@pytest.mark.parametrize(("env", "text", "attr", "value"), GOOD_VALUES)
def test_good_values_are_parsed(env: str, text: str, attr: str, value: object) -> None:
    """``value`` ``None``: the text is kept as it is (URLs)."""
    assert getattr(load_config({env: text}), attr) == (text if value is None else value)


def test_every_setting_has_good_and_bad_value_cases() -> None:
    assert {env for env, *_ in GOOD_VALUES} == set(BY_ENV)
    takes_any_text = {"BRIDGE_INSTRUCTIONS", "BRIDGE_GREETING"}
    secrets = set(SECRETS) | set(LONG_SECRETS)
    assert {env for env, _ in BAD_VALUES} | secrets == set(BY_ENV) - takes_any_text


def test_unset_and_empty_mean_the_default_but_an_empty_greeting_is_a_value() -> None:
    assert load_config({"BRIDGE_PORT": "", "BRIDGE_TX_FRAME_MS": ""}) == BridgeConfig()
    assert load_config({"BRIDGE_GREETING": ""}).greeting == ""


def test_the_heartbeat_timeout_follows_the_interval() -> None:
    config = load_config({"BRIDGE_HEARTBEAT_S": "2"})
    assert (config.heartbeat_interval_s, config.heartbeat_timeout_s) == (2.0, 2.0)


# -- parsing: every kind of bad value, and its one line ----------------------------------------

BAD_VALUES: list[tuple[str, str]] = [
    ("BRIDGE_HEARTBEAT_S", "nan"),
    ("BRIDGE_HEARTBEAT_S", "NaN"),
    ("BRIDGE_HEARTBEAT_S", "inf"),
    ("BRIDGE_HEARTBEAT_S", "-5"),
    ("BRIDGE_HEARTBEAT_S", "0"),
    ("BRIDGE_HEARTBEAT_S", "0.5"),
    ("BRIDGE_HEARTBEAT_S", "301"),
    ("BRIDGE_HEARTBEAT_S", "5s"),
    ("BRIDGE_MAX_CALL_S", "nan"),
    ("BRIDGE_MAX_CALL_S", "-inf"),
    ("BRIDGE_MAX_CALL_S", "1e999"),
    ("BRIDGE_MAX_CALL_S", "0"),
    ("BRIDGE_MAX_CALL_S", "86401"),
    ("BRIDGE_SESSION_RECYCLE_S", "3541"),
    ("BRIDGE_SESSION_RECYCLE_S", "nan"),
    ("BRIDGE_RECONNECT_ATTEMPTS", "-1"),
    ("BRIDGE_RECONNECT_ATTEMPTS", "11"),
    ("BRIDGE_RECONNECT_WINDOW_S", "0"),
    ("BRIDGE_COMFORT_AFTER_MS", "99"),
    ("BRIDGE_HOLD_AUDIO_WAV", "/nonexistent/hold.wav"),
    ("BRIDGE_HOLD_AUDIO_WAV", str(Path(__file__))),
    ("BRIDGE_REPLY_TIMEOUT_MS", "0"),
    ("BRIDGE_MEDIA_TIMEOUT_S", "2"),
    ("BRIDGE_PORT", "99999"),
    ("BRIDGE_PORT", "65536"),
    ("BRIDGE_PORT", "-1"),
    ("BRIDGE_PORT", "80.0"),
    ("BRIDGE_PORT", "http"),
    ("BRIDGE_TX_FRAME_MS", "0"),
    ("BRIDGE_TX_FRAME_MS", "1001"),
    ("BRIDGE_TX_FRAME_MS", "19"),
    ("BRIDGE_TX_FRAME_MS", "1e2"),
    ("BRIDGE_TX_LEAD_MS", "0"),
    ("BRIDGE_TX_LEAD_MS", "-100"),
    ("BRIDGE_TX_LEAD_MS", "2001"),
    ("BRIDGE_CONFIRM_WINDOW_MS", "0"),
    ("BRIDGE_CONFIRM_WINDOW_MS", "99999"),
    ("BRIDGE_HOST", "bridge host"),
    ("BRIDGE_HOST", "-bad-.example"),
    ("BRIDGE_HOST", "http://0.0.0.0"),
    ("BRIDGE_PUBLIC_URL", "bridge.example.com"),
    ("BRIDGE_PUBLIC_URL", "ftp://bridge.example.com"),
    ("BRIDGE_PUBLIC_URL", "https://"),
    ("BRIDGE_PUBLIC_URL", "https://bridge.example.com:99999"),
    ("BRIDGE_PUBLIC_URL", "https://bridge.example.com:port"),
    ("BRIDGE_PUBLIC_URL", "https://bridge.example.com/?a=1"),
    ("BRIDGE_PUBLIC_URL", "https://bridge.example.com/#x"),
    ("BRIDGE_PUBLIC_URL", "https://bridge example.com"),
    ("BRIDGE_PUBLIC_URL", "https://[::1"),
    ("OPENAI_REALTIME_URL", "https://api.openai.com/v1/realtime"),
    ("OPENAI_REALTIME_URL", "wss:/api.openai.com"),
    ("TWILIO_API_BASE_URL", "api.twilio.com"),
    ("TWILIO_API_BASE_URL", "wss://api.twilio.com"),
    ("OPENAI_VOICE", "nova"),
    ("OPENAI_VOICE", "Marin"),
    ("OPENAI_AUDIO_FORMAT", "g711_ulaw"),
    ("BRIDGE_FAST_BARGE_IN", "fast"),
    ("BRIDGE_LOG_FORMAT", "xml"),
    ("BRIDGE_LOG_LEVEL", "info"),
    ("BRIDGE_LOG_LEVEL", "TRACE"),
    ("BRIDGE_AUDIO_GATE", "maybe"),
    ("BRIDGE_LOG_TRANSCRIPTS", "2"),
    ("BRIDGE_LOG_PII", "maybe"),
    ("BRIDGE_NEGATIONS", " , ,"),
    ("BRIDGE_NEGATIONS", ",".join(["no"] * 101)),
    ("BRIDGE_NEGATIONS", "no," + "n" * 65),
    ("BRIDGE_FALLBACK_MESSAGE", "x" * 1001),
    ("TWILIO_ACCOUNT_SID", "AC 123"),
    ("TWILIO_ACCOUNT_SID", "AC" + "0" * 63),
    ("BRIDGE_TOOLS_FILE", "tools.yaml"),
    ("BRIDGE_TOOLS_FILE", "tools"),
    ("BRIDGE_EVENTS_URL", "http://app.example.com/events"),
    ("BRIDGE_EVENTS_URL", "ftp://127.0.0.1/events"),
    ("BRIDGE_INTERNAL_URL", "ws://10.0.0.7:8080"),
    ("BRIDGE_INTERNAL_URL", "http://10.0.0.7:8080/?a=1"),
    ("BRIDGE_TOOL_FILLER_MS", "-5"),
    ("BRIDGE_TOOL_FILLER_MS", "10001"),
]
SECRETS = ("OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "BRIDGE_APP_SECRET")
LONG_SECRETS = ("BRIDGE_CONTROL_TOKEN",)
"""Secrets with a minimum length: a short one is refused too, never quoted."""


@pytest.mark.parametrize(("env", "text"), BAD_VALUES)
def test_bad_values_are_refused_in_one_line(env: str, text: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({env: text})
    message = str(refused.value)
    if len(text) > 60:  # long values are quoted in part
        assert message == f"{env}={text[:60]!r}…: must be {BY_ENV[env].parser.allowed}"
    else:
        assert message == refusal(env, text)
    assert "\n" not in message


def test_the_issue_examples_are_refused() -> None:
    for env, text, allowed in [
        ("BRIDGE_HEARTBEAT_S", "nan", "a finite number of seconds in 1..300"),
        ("BRIDGE_MAX_CALL_S", "nan", "a finite number of seconds in 1..86400"),
        ("BRIDGE_PORT", "99999", "an integer in 0..65535 (0: any free port)"),
    ]:
        with pytest.raises(ConfigError) as refused:
            load_config({env: text})
        assert str(refused.value) == f"{env}={text!r}: must be {allowed}"


@pytest.mark.parametrize("env", SECRETS)
@pytest.mark.parametrize("text", ["sk-proj secret-part", "tok\ttok", "tok\n"])
def test_a_refused_secret_is_never_quoted(env: str, text: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({env: text})
    assert str(refused.value) == (
        f"{env}=<hidden, {len(text)} characters>: must be the secret as one word (no spaces)"
    )


@pytest.mark.parametrize("text", ["c" * 31, "c" * 16 + " " + "c" * 16])
def test_a_short_control_token_is_refused_and_never_quoted(text: str) -> None:
    allowed = "the secret as one word of 32 characters or more (no spaces)"
    with pytest.raises(ConfigError) as refused:
        load_config({"BRIDGE_CONTROL_TOKEN": text})
    assert str(refused.value) == (
        f"BRIDGE_CONTROL_TOKEN=<hidden, {len(text)} characters>: must be {allowed}"
    )


# -- command-line flags -----------------------------------------------------------------------


def test_a_flag_wins_over_its_variable_and_goes_through_the_same_parser() -> None:
    config = load_config(
        {"BRIDGE_PORT": "9090", "BRIDGE_HOST": "not a host"},
        {"--port": "8081", "--host": "127.0.0.1", "--public-url": "https://b.example.com"},
    )
    assert (config.port, config.host, config.public_url) == (
        8081,
        "127.0.0.1",
        "https://b.example.com",
    )
    with pytest.raises(ConfigError) as refused:
        load_config({"BRIDGE_PORT": "8080"}, {"--port": "99999"})
    assert str(refused.value) == (
        "--port='99999': must be an integer in 0..65535 (0: any free port)"
    )


def test_every_flag_names_a_setting_and_an_unknown_one_is_a_bug() -> None:
    setting_flags = {"--host", "--port", "--public-url", "--fast-barge-in"}
    assert setting_flags | {"--log-format", "--log-level"} == FLAGS
    with pytest.raises(ValueError, match="--colour"):
        load_config({}, {"--colour": "on"})
