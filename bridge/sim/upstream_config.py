"""GA ``session`` objects of the simulated Realtime upstream: defaults, validation, merging.

Pure functions over JSON-like dicts. :func:`apply_session_update` either returns the new
effective session (the whole update applied) or raises :class:`ProtocolError` carrying the
error the real service sends (``code``, ``message``, ``param``), in which case nothing is
applied. Shapes and messages follow the Realtime API reference (``session.update``,
https://developers.openai.com/api/reference/resources/realtime/client-events) and the error
payloads integrators report.

Choices where the reference is silent (documented, not confirmed against the service):

* default ``silence_duration_ms`` is 200 (the value in real ``session.created`` examples;
  the spec text says 500);
* ``semantic_vad`` is accepted and simulated by the energy VAD with 500 ms of silence;
* changing ``model`` is refused with ``invalid_value`` (the spec only says it cannot change);
* unknown keys anywhere in the validated tree give ``unknown_parameter`` with the full path.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Final

from bridge.sim.upstream_audio import FORMAT_TYPES, PCM_RATE
from bridge.sim.upstream_tools import SimToolCall

JsonObj = dict[str, Any]

VOICES: Final = (
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
SEMANTIC_VAD_SILENCE_MS: Final = 500
"""Silence (ms) after which the sim's stand-in for ``semantic_vad`` ends a turn."""

_SESSION_KEYS: Final = frozenset(
    {
        "type",
        "model",
        "output_modalities",
        "instructions",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "truncation",
        "tracing",
        "prompt",
        "include",
    }
)
_INPUT_KEYS: Final = frozenset({"format", "transcription", "noise_reduction", "turn_detection"})
_OUTPUT_KEYS: Final = frozenset({"format", "voice", "speed"})
_SERVER_VAD_KEYS: Final = frozenset(
    {
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "idle_timeout_ms",
        "create_response",
        "interrupt_response",
    }
)
_SEMANTIC_VAD_KEYS: Final = frozenset(
    {"type", "eagerness", "create_response", "interrupt_response"}
)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Behaviour knobs of a simulated session (units in the names: ms, or x real time).

    ``truncate_no_audio_code`` and ``unknown_item_code`` are settings because real captures
    disagree or are missing (UNCONFIRMED); ``None`` sends ``code: null``.
    """

    generation_speed: float = 4.0
    delta_ms: int = 100
    first_delta_delay_ms: float = 250.0
    late_deltas_after_cancel: int = 2
    vad_onset_ms: int = 150
    reply_ms: int = 3000
    items_per_response: int = 1
    caller_transcripts: tuple[str, ...] = (
        "I'd like to check the status of my order.",
        "Sorry, actually: what are your opening hours?",
        "Okay, thank you very much.",
    )
    transcription_delay_ms: float = 150.0
    truncate_no_audio_code: str | None = "unsupported_content_type"
    unknown_item_code: str | None = "item_not_found"
    seed: int = 0
    tool_calls: tuple[SimToolCall, ...] = ()
    """Scripted function calls (:mod:`bridge.sim.upstream_tools`)."""
    short_reply_ms: int = 1500
    """Audio of the short replies the bridge asks for: filler, goodbye, transfer notice."""

    def __post_init__(self) -> None:
        if self.generation_speed <= 0 or self.delta_ms <= 0 or self.reply_ms <= 0:
            raise ValueError("generation_speed, delta_ms and reply_ms must be > 0")
        if self.items_per_response < 1 or self.late_deltas_after_cancel < 0:
            raise ValueError("items_per_response must be >= 1, late deltas >= 0")


class ProtocolError(Exception):
    """A client event the real service would answer with an ``error`` event."""

    def __init__(
        self,
        code: str | None,
        message: str,
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type


def _quote_list(values: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def invalid_value(
    param: str, value: object, allowed: tuple[str, ...] | None = None
) -> ProtocolError:
    """``invalid_value`` in the service's wording; ``allowed`` lists the supported values."""
    message = f"Invalid value: '{value}'."
    if allowed:
        message += f" Supported values are: {_quote_list(allowed)}."
    return ProtocolError("invalid_value", message, param)


def unknown_parameter(param: str) -> ProtocolError:
    return ProtocolError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def missing_parameter(param: str) -> ProtocolError:
    return ProtocolError(
        "missing_required_parameter", f"Missing required parameter: '{param}'.", param
    )


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), "an unsupported type")


def invalid_type(param: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param,
    )


def default_turn_detection(vad_type: str) -> JsonObj:
    """Defaults of one turn-detection type (what a partial object is completed with)."""
    if vad_type == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": "auto",
            "create_response": True,
            "interrupt_response": True,
        }
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def default_session(session_id: str, model: str, expires_at: int) -> JsonObj:
    """The full GA session of ``session.created``: PCM 24 kHz both ways, voice ``alloy``.

    ``expires_at`` is a Unix time in seconds (the 60-minute cap).
    """
    pcm = {"type": "audio/pcm", "rate": PCM_RATE}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": (
            "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI."
        ),
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": expires_at,
        "include": None,
        "audio": {
            "input": {
                "format": dict(pcm),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": default_turn_detection("server_vad"),
            },
            "output": {"format": dict(pcm), "voice": "alloy", "speed": 1.0},
        },
    }


def _check_keys(obj: JsonObj, allowed: frozenset[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise unknown_parameter(f"{path}.{key}")


def _require_obj(value: object, path: str) -> JsonObj:
    if not isinstance(value, dict):
        raise invalid_type(path, "an object", value)
    return value


def _number_in(value: object, path: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_type(path, "a decimal", value)
    if value < low:
        raise ProtocolError(
            "decimal_below_min_value",
            f"Invalid '{path}': decimal below minimum value. "
            f"Expected a value >= {low}, but got {value} instead.",
            path,
        )
    if value > high:
        raise ProtocolError(
            "decimal_above_max_value",
            f"Invalid '{path}': decimal above maximum value. "
            f"Expected a value <= {high}, but got {value} instead.",
            path,
        )
    return float(value)


def _int_at_least(value: object, path: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(path, "an integer", value)
    if value < low:
        raise integer_below_min(path, value, low)
    return value


def integer_below_min(path: str, value: int, low: int) -> ProtocolError:
    """``integer_below_min_value`` in the service's wording."""
    return ProtocolError(
        "integer_below_min_value",
        f"Invalid '{path}': integer below minimum value. "
        f"Expected a value >= {low}, but got {value} instead.",
        path,
    )


def validate_format(value: object, path: str) -> JsonObj:
    """A GA audio format object; ``rate`` only on ``audio/pcm`` (and only 24000)."""
    fmt = _require_obj(value, path)
    if "type" not in fmt:
        raise missing_parameter(f"{path}.type")
    if fmt["type"] not in FORMAT_TYPES:
        raise invalid_value(f"{path}.type", fmt["type"], FORMAT_TYPES)
    allowed = frozenset({"type", "rate"}) if fmt["type"] == "audio/pcm" else frozenset({"type"})
    _check_keys(fmt, allowed, path)
    if fmt["type"] == "audio/pcm":
        rate = fmt.get("rate", PCM_RATE)
        if rate != PCM_RATE:
            raise invalid_value(f"{path}.rate", rate, (str(PCM_RATE),))
        return {"type": "audio/pcm", "rate": PCM_RATE}
    return {"type": fmt["type"]}


def validate_voice(value: object, path: str) -> str | JsonObj:
    """One of :data:`VOICES` or a custom ``{"id": "voice_…"}``."""
    if isinstance(value, dict) and set(value) == {"id"} and isinstance(value["id"], str):
        return dict(value)
    if not isinstance(value, str) or value not in VOICES:
        raise invalid_value(path, value, VOICES)
    return value


def _merge_turn_detection(current: JsonObj | None, value: object, path: str) -> JsonObj | None:
    if value is None:
        return None
    update = _require_obj(value, path)
    vad_type = update.get("type", current["type"] if current else "server_vad")
    if vad_type not in ("server_vad", "semantic_vad"):
        raise invalid_value(f"{path}.type", vad_type, ("server_vad", "semantic_vad"))
    _check_keys(update, _SERVER_VAD_KEYS if vad_type == "server_vad" else _SEMANTIC_VAD_KEYS, path)
    base = current if current is not None and current["type"] == vad_type else None
    merged = {**(base or default_turn_detection(vad_type)), **update}
    if vad_type == "server_vad":
        _number_in(merged["threshold"], f"{path}.threshold", 0.0, 1.0)
        _int_at_least(merged["prefix_padding_ms"], f"{path}.prefix_padding_ms", 0)
        _int_at_least(merged["silence_duration_ms"], f"{path}.silence_duration_ms", 0)
    elif merged["eagerness"] not in ("low", "medium", "high", "auto"):
        raise invalid_value(
            f"{path}.eagerness", merged["eagerness"], ("low", "medium", "high", "auto")
        )
    for flag in ("create_response", "interrupt_response"):
        if not isinstance(merged[flag], bool):
            raise invalid_type(f"{path}.{flag}", "a boolean", merged[flag])
    return merged


def _start_audio_merge(
    current: JsonObj, value: object, path: str, keys: frozenset[str]
) -> tuple[JsonObj, JsonObj]:
    """(update, merged so far) for ``audio.input``/``audio.output``: keys checked, format set."""
    update = _require_obj(value, path)
    _check_keys(update, keys, path)
    merged = dict(current)
    if "format" in update:
        merged["format"] = validate_format(update["format"], f"{path}.format")
    return update, merged


def _merge_input(current: JsonObj, value: object, path: str) -> JsonObj:
    update, merged = _start_audio_merge(current, value, path, _INPUT_KEYS)
    if "transcription" in update:
        tr = update["transcription"]
        if tr is not None:
            tr = _require_obj(tr, f"{path}.transcription")
            _check_keys(tr, frozenset({"model", "language", "prompt"}), f"{path}.transcription")
        merged["transcription"] = copy.deepcopy(tr)
    if "noise_reduction" in update:
        nr = update["noise_reduction"]
        if nr is not None:
            nr = _require_obj(nr, f"{path}.noise_reduction")
            _check_keys(nr, frozenset({"type"}), f"{path}.noise_reduction")
            if nr.get("type") not in ("near_field", "far_field"):
                raise invalid_value(
                    f"{path}.noise_reduction.type", nr.get("type"), ("near_field", "far_field")
                )
        merged["noise_reduction"] = copy.deepcopy(nr)
    if "turn_detection" in update:
        merged["turn_detection"] = _merge_turn_detection(
            current["turn_detection"], update["turn_detection"], f"{path}.turn_detection"
        )
    return merged


def _merge_output(current: JsonObj, value: object, path: str) -> JsonObj:
    update, merged = _start_audio_merge(current, value, path, _OUTPUT_KEYS)
    if "voice" in update:
        merged["voice"] = validate_voice(update["voice"], f"{path}.voice")
    if "speed" in update:
        merged["speed"] = _number_in(update["speed"], f"{path}.speed", 0.25, 1.5)
    return merged


def validate_modalities(value: object, path: str) -> list[str]:
    """``["audio"]`` or ``["text"]``; both at once is refused, as by the service."""
    if value not in (["audio"], ["text"]):
        raise invalid_value(path, value, ("audio", "text"))
    return list(value) if isinstance(value, list) else ["audio"]


def apply_session_update(current: JsonObj, session: object) -> JsonObj:
    """The effective session after a ``session.update`` whose ``session`` field is given.

    Only fields present change; ``audio.input``, ``audio.output`` and ``turn_detection`` are
    merged key by key. Raises :class:`ProtocolError` and changes nothing when any part is
    invalid (``session.type`` missing, beta or unknown fields, bad format or voice, …).
    """
    if session is None:
        raise missing_parameter("session")
    update = _require_obj(session, "session")
    if "type" not in update:
        raise missing_parameter("session.type")
    if update["type"] != "realtime":
        raise invalid_value("session.type", update["type"], ("realtime",))
    _check_keys(update, _SESSION_KEYS, "session")
    merged = copy.deepcopy(current)
    if "model" in update and update["model"] != current["model"]:
        raise invalid_value("session.model", update["model"], (current["model"],))
    if "output_modalities" in update:
        merged["output_modalities"] = validate_modalities(
            update["output_modalities"], "session.output_modalities"
        )
    if "instructions" in update:
        if not isinstance(update["instructions"], str):
            raise invalid_type("session.instructions", "a string", update["instructions"])
        merged["instructions"] = update["instructions"]
    for key in (
        "tools",
        "tool_choice",
        "max_output_tokens",
        "truncation",
        "tracing",
        "prompt",
        "include",
    ):
        if key in update:
            merged[key] = copy.deepcopy(update[key])
    if "audio" in update:
        audio = _require_obj(update["audio"], "session.audio")
        _check_keys(audio, frozenset({"input", "output"}), "session.audio")
        if "input" in audio:
            merged["audio"]["input"] = _merge_input(
                current["audio"]["input"], audio["input"], "session.audio.input"
            )
        if "output" in audio:
            merged["audio"]["output"] = _merge_output(
                current["audio"]["output"], audio["output"], "session.audio.output"
            )
    return merged


@dataclass(frozen=True, slots=True)
class ResponseOutput:
    """Output settings of one response: the session's, overridden by ``response.create``."""

    format: JsonObj
    voice: str | JsonObj
    audio: bool
    """``False`` when the output modalities are ``["text"]``."""


def response_output(params: JsonObj, session: JsonObj) -> ResponseOutput:
    """Validate the output overrides of ``response.create`` (``response.*``) over ``session``."""
    out = session["audio"]["output"]
    fmt, voice = out["format"], out["voice"]
    modalities = session["output_modalities"]
    if "output_modalities" in params:
        modalities = validate_modalities(params["output_modalities"], "response.output_modalities")
    if "audio" in params:
        audio = _require_obj(params["audio"], "response.audio")
        _check_keys(audio, frozenset({"output"}), "response.audio")
        output = _require_obj(audio.get("output", {}), "response.audio.output")
        _check_keys(output, frozenset({"format", "voice"}), "response.audio.output")
        if "format" in output:
            fmt = validate_format(output["format"], "response.audio.output.format")
        if "voice" in output:
            voice = validate_voice(output["voice"], "response.audio.output.voice")
    return ResponseOutput(dict(fmt), copy.deepcopy(voice), modalities == ["audio"])
