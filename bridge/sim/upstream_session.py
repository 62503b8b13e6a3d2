"""Sans-IO logic of one simulated OpenAI Realtime (GA) session: no trio, no sockets.

The adapter feeds it client events and the current value of its clock (``now``, seconds; any
epoch) and writes out the server events it returns, in order:

* :meth:`UpstreamSession.open` gives ``session.created``;
* :meth:`UpstreamSession.handle` takes one parsed client event (:func:`decode_frame`), or
  :meth:`UpstreamSession.handle_undecodable` a frame that was not a JSON object;
* :meth:`UpstreamSession.poll` gives the time-driven events due at ``now`` (audio deltas,
  transcriptions), and :meth:`UpstreamSession.next_deadline` says when to poll next;
* :meth:`UpstreamSession.on_sent` stamps observation records with the time a frame was written.

The input-audio clock (:attr:`UpstreamSession.audio_clock_ms`) counts ms of audio appended this
session from the sample count, never from ``now``; server VAD runs on it, so the same audio gives
the same VAD events whatever the wall-clock pacing. Errors use the service's codes and messages
(the Realtime API reference, https://developers.openai.com/api/reference/resources/realtime/server-events,
and error payloads reported by integrators); where those are unconfirmed the code is a
setting (:class:`SessionSettings`).
"""

from __future__ import annotations

import binascii
import bisect
import random
from collections import deque
from typing import Final

import orjson
import pybase64

from bridge.sim.upstream_audio import (
    EnergyVad,
    SpeechStart,
    bytes_per_ms,
    decode,
    reply_audio,
    sample_rate,
    threshold_to_dbfs,
)
from bridge.sim.upstream_config import (
    SEMANTIC_VAD_SILENCE_MS,
    ProtocolError,
    SessionSettings,
    apply_session_update,
    default_session,
    invalid_type,
    invalid_value,
    missing_parameter,
    response_output,
    unknown_parameter,
)
from bridge.sim.upstream_conversation import (
    Conversation,
    ConversationItem,
    IdGen,
    JsonObj,
    ResponseRecord,
    TruncationRecord,
)
from bridge.sim.upstream_items import ItemHandlers
from bridge.sim.upstream_response import ItemPlan, Pacing, ResponseGen, reply_text
from bridge.sim.upstream_tools import (
    PURPOSE_HEADS,
    SHORT_PURPOSES,
    answer_head,
    last_tool_output,
    plan_calls,
    say_first,
)

__all__ = ["CLIENT_EVENT_TYPES", "SessionSettings", "UpstreamSession", "decode_frame"]

CLIENT_EVENT_TYPES: Final = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
)
MIN_COMMIT_MS: Final = 100
_RESPONSE_KEYS: Final = frozenset(
    {
        "output_modalities",
        "instructions",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "conversation",
        "metadata",
        "prompt",
        "input",
    }
)


def reply_seed(options_seed: int, response_index: int, item_index: int) -> int:
    """The audio seed of item ``item_index`` of a session's ``response_index``-th response.
    It ignores which session it is, so benchmarks reuse cached audio across calls."""
    return options_seed * 1_000_003 + response_index * 16 + item_index


def warm_reply_audio(settings: SessionSettings, responses: int, fmt: str = "audio/pcmu") -> None:
    """Synthesise now the audio of a session's first ``responses`` responses (at both reply
    lengths). A session would otherwise synthesise it in the event loop the moment a turn
    ends (about 12 ms per second of audio), before it writes ``speech_stopped``: a bench
    calls this before it measures, so that its first call is timed like the others."""
    for n in range(responses):
        for i in range(settings.items_per_response):
            for ms in {settings.reply_ms, settings.short_reply_ms}:
                reply_audio(ms, reply_seed(settings.seed, n, i), fmt)


def decode_frame(data: str | bytes) -> JsonObj | None:
    """A client frame parsed as a JSON object, or ``None`` if it is not one."""
    try:
        value = orjson.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


class UpstreamSession:
    """The protocol state machine of one session; see the module docstring."""

    __slots__ = (
        "_buffer_start_ms",
        "_caller_turns",
        "_default_gen",
        "_gens",
        "_odd_byte",
        "_pushed_transcripts",
        "_reply_overrides",
        "_response_count",
        "_speech_item_id",
        "_timers",
        "_transcript_cursor",
        "_vad",
        "audio_clock_ms",
        "conversation",
        "ids",
        "items",
        "responses",
        "session",
        "settings",
        "speech_started",
        "truncations",
    )

    def __init__(
        self,
        settings: SessionSettings,
        *,
        session_index: int = 0,
        model: str = "gpt-realtime",
        unix_time: int = 0,
    ) -> None:
        """``unix_time`` (s) only feeds ``expires_at`` (+3600 s, the GA session cap)."""
        self.settings = settings
        self.ids = IdGen(random.Random(settings.seed * 7919 + session_index))
        self.session: JsonObj = default_session(self.ids.new("sess_"), model, unix_time + 3600)
        self.conversation = Conversation()
        self.responses: dict[str, ResponseRecord] = {}
        self.truncations: list[TruncationRecord] = []
        self.speech_started: list[tuple[float, int]] = []
        self.audio_clock_ms = 0.0
        self.items = ItemHandlers(self.conversation, self.ids, self.truncations, settings)
        self._buffer_start_ms = 0.0
        self._caller_turns = 0
        """Caller utterances committed so far (scripted tool calls name their turn)."""
        self._odd_byte = b""
        self._gens: list[ResponseGen] = []
        self._default_gen: ResponseGen | None = None
        self._response_count = 0
        self._reply_overrides: deque[int] = deque()
        self._pushed_transcripts: deque[str] = deque()
        self._transcript_cursor = 0
        self._speech_item_id: str | None = None
        self._timers: list[tuple[float, int, str]] = []
        self._vad = self._make_vad()

    # ---- runtime knobs (tests) -------------------------------------------------------------

    def next_reply_ms(self, ms: int) -> None:
        """Audio length (ms, per item) of the next response created; calls queue up in order."""
        if ms <= 0:
            raise ValueError("reply length must be > 0 ms")
        self._reply_overrides.append(ms)

    def push_caller_transcript(self, text: str) -> None:
        """Transcript of the next committed user audio item (before the scripted ones)."""
        self._pushed_transcripts.append(text)

    # ---- adapter interface -----------------------------------------------------------------

    def event(self, type_: str, **fields: object) -> JsonObj:
        return {"type": type_, "event_id": self.ids.new("event_"), **fields}

    def error_event(self, err: ProtocolError, client_event_id: object = None) -> JsonObj:
        """An ``error`` server event; ``client_event_id`` is the offending event's id."""
        return self.event(
            "error",
            error={
                "type": err.error_type,
                "code": err.code,
                "message": err.message,
                "param": err.param,
                "event_id": client_event_id,
            },
        )

    def open(self) -> list[JsonObj]:
        return [self.event("session.created", session=self.session)]

    def handle_undecodable(self) -> list[JsonObj]:
        """A frame that is not a JSON object. The code ``invalid_json`` is a guess."""
        err = ProtocolError(
            "invalid_json", "Invalid JSON: the event could not be parsed as a JSON object."
        )
        return [self.error_event(err)]

    def handle(self, event: JsonObj, now: float) -> list[JsonObj]:
        """Server events answering one client event received at clock value ``now`` (s)."""
        event_id = event.get("event_id")
        try:
            return self._dispatch(event, now)
        except ProtocolError as err:
            return [self.error_event(err, event_id)]

    def next_deadline(self) -> float | None:
        """Clock value (s) at which :meth:`poll` has something to send, or ``None``."""
        times = [gen.next_at for gen in self._gens]
        if self._timers:
            times.append(self._timers[0][0])
        return min(times) if times else None

    def poll(self, now: float) -> list[JsonObj]:
        """Time-driven events due at ``now`` (s), in the order of their due times."""
        out: list[JsonObj] = []
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                return out
            if self._timers and self._timers[0][0] == deadline:
                _, _, item_id = self._timers.pop(0)
                out += self._transcription_done(item_id)
                continue
            gen = min(self._gens, key=lambda g: g.next_at)
            out += gen.step()
            self._forget_finished()

    def on_sent(self, event: JsonObj, t: float) -> None:
        """Stamp records with the clock value ``t`` at which ``event`` was written."""
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_started":
            self.speech_started.append((t, int(event["audio_start_ms"])))
        elif kind == "response.created":
            self.responses[event["response"]["id"]].created_at = t
        elif kind == "response.done":
            self.responses[event["response"]["id"]].done_at = t

    # ---- dispatch --------------------------------------------------------------------------

    def _dispatch(self, event: JsonObj, now: float) -> list[JsonObj]:
        kind = event.get("type")
        if kind is None:
            raise ProtocolError("invalid_event", "The 'type' field is missing.")
        if kind == "session.update":
            return self._session_update(event)
        if kind == "input_audio_buffer.append":
            return self._append(event, now)
        if kind == "input_audio_buffer.commit":
            return self._commit_manual(now)
        if kind == "input_audio_buffer.clear":
            self._buffer_start_ms = self.audio_clock_ms
            self._speech_item_id = None
            self._reset_vad()
            return [self.event("input_audio_buffer.cleared")]
        if kind == "response.create":
            return self._response_create(event.get("response"), now)
        if kind == "response.cancel":
            return self._response_cancel(event.get("response_id"), now)
        if kind == "conversation.item.truncate":
            return self.items.truncate(event, now)
        if kind == "conversation.item.create":
            return self.items.create(event)
        if kind == "conversation.item.delete":
            return self.items.delete(event)
        if kind == "conversation.item.retrieve":
            return self.items.retrieve(event)
        raise invalid_value("type", kind, CLIENT_EVENT_TYPES)

    # ---- session and input audio -----------------------------------------------------------

    def _turn_detection(self) -> JsonObj | None:
        td: JsonObj | None = self.session["audio"]["input"]["turn_detection"]
        return td

    def _make_vad(self) -> EnergyVad | None:
        td = self._turn_detection()
        if td is None:
            return None
        semantic = td["type"] == "semantic_vad"
        vad = EnergyVad(
            threshold_dbfs=threshold_to_dbfs(0.5 if semantic else td["threshold"]),
            onset_ms=self.settings.vad_onset_ms,
            silence_ms=SEMANTIC_VAD_SILENCE_MS if semantic else td["silence_duration_ms"],
        )
        vad.reset(int(self.audio_clock_ms))
        return vad

    def _reset_vad(self) -> None:
        if self._vad is not None:
            self._vad.reset(int(self.audio_clock_ms))

    def _session_update(self, event: JsonObj) -> list[JsonObj]:
        if "session" not in event:
            raise missing_parameter("session")
        before = self._turn_detection()
        self.session = apply_session_update(self.session, event["session"])
        if self._turn_detection() != before:
            self._vad = self._make_vad()
            self._speech_item_id = None
        return [self.event("session.updated", session=self.session)]

    def _append(self, event: JsonObj, now: float) -> list[JsonObj]:
        audio = event.get("audio")
        if audio is None:
            raise missing_parameter("audio")
        if not isinstance(audio, str):
            raise invalid_type("audio", "a string", audio)
        try:
            raw = pybase64.b64decode(audio, validate=True)
        except binascii.Error:
            raise ProtocolError(
                "invalid_value", "Invalid 'audio': expected base64-encoded audio bytes.", "audio"
            ) from None
        fmt = self.session["audio"]["input"]["format"]["type"]
        if fmt == "audio/pcm":
            # PCM16 samples may straddle two appends: keep an odd trailing byte for the next.
            raw, self._odd_byte = self._odd_byte + raw, b""
            if len(raw) % 2:
                raw, self._odd_byte = raw[:-1], raw[-1:]
        self.audio_clock_ms += len(raw) / bytes_per_ms(fmt)
        if self._vad is None or not raw:
            return []
        out: list[JsonObj] = []
        for change in self._vad.feed(decode(raw, fmt), sample_rate(fmt)):
            if isinstance(change, SpeechStart):
                out += self._speech_start(change.onset_ms, now)
            else:
                out += self._speech_stop(change.end_ms, now)
        return out

    def _speech_start(self, onset_ms: int, now: float) -> list[JsonObj]:
        td = self._turn_detection()
        assert td is not None
        self._speech_item_id = self.ids.new("item_")
        padding = int(td.get("prefix_padding_ms", 300))
        out = [
            self.event(
                "input_audio_buffer.speech_started",
                audio_start_ms=max(0, onset_ms - padding),
                item_id=self._speech_item_id,
            )
        ]
        gen = self._default_gen
        if td["interrupt_response"] and gen is not None and gen.cancel_reason is None:
            out += gen.cancel(now, "turn_detected")
            self._forget_finished()
        return out

    def _speech_stop(self, end_ms: int, now: float) -> list[JsonObj]:
        td = self._turn_detection()
        assert td is not None
        assert self._speech_item_id is not None
        item_id, self._speech_item_id = self._speech_item_id, None
        out = [
            self.event("input_audio_buffer.speech_stopped", audio_end_ms=end_ms, item_id=item_id)
        ]
        out += self._commit(item_id, end_ms, now)
        if td["create_response"] and self._default_gen is None:
            out += self._start_response({}, now, caller_turn=self._caller_turns)
        return out

    def _next_caller_transcript(self) -> str:
        if self._pushed_transcripts:
            return self._pushed_transcripts.popleft()
        scripted = self.settings.caller_transcripts
        if not scripted:
            return ""
        text = scripted[self._transcript_cursor % len(scripted)]
        self._transcript_cursor += 1
        return text

    def _commit(self, item_id: str, end_ms: float, now: float) -> list[JsonObj]:
        """Commit the buffer up to ``end_ms`` as user audio item ``item_id``."""
        self._buffer_start_ms = end_ms
        self._caller_turns += 1
        item = ConversationItem(
            id=item_id,
            type="message",
            role="user",
            status="completed",
            content_type="input_audio",
            transcript=self._next_caller_transcript(),
        )
        previous = self.conversation.append(item)
        if self.session["audio"]["input"]["transcription"] is not None:
            due = now + self.settings.transcription_delay_ms / 1000.0
            bisect.insort(self._timers, (due, len(self.conversation.items), item_id))
        return [
            self.event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
            self.event("conversation.item.added", previous_item_id=previous, item=item.to_json()),
            self.event("conversation.item.done", previous_item_id=previous, item=item.to_json()),
        ]

    def _commit_manual(self, now: float) -> list[JsonObj]:
        buffered = self.audio_clock_ms - self._buffer_start_ms
        if buffered < MIN_COMMIT_MS:
            raise ProtocolError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered:.2f}ms of audio.",
            )
        item_id = self._speech_item_id or self.ids.new("item_")
        self._speech_item_id = None
        self._reset_vad()
        return self._commit(item_id, self.audio_clock_ms, now)

    def _transcription_done(self, item_id: str) -> list[JsonObj]:
        item = self.conversation.find(item_id)
        if item is None:
            return []
        item.transcribed = True
        return [
            self.event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=item.transcript,
                usage={"type": "duration", "seconds": 1},
            )
        ]

    # ---- responses -------------------------------------------------------------------------

    def _forget_finished(self) -> None:
        self._gens = [gen for gen in self._gens if not gen.finished]
        if self._default_gen is not None and self._default_gen.finished:
            self._default_gen = None

    def _response_create(self, params: object, now: float) -> list[JsonObj]:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise invalid_type("response", "an object", params)
        for key in params:
            if key not in _RESPONSE_KEYS:
                raise unknown_parameter(f"response.{key}")
        conversation = params.get("conversation", "auto")
        if conversation not in ("auto", "none"):
            raise invalid_value("response.conversation", conversation, ("auto", "none"))
        gen = self._default_gen
        if conversation == "auto" and gen is not None:
            raise ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {gen.record.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        return self._start_response(params, now)

    def _answering(self) -> str | None:
        for item in reversed(self.conversation.live()):
            if item.role == "user":
                return item.transcript
        return None

    def _resuming(self, params: JsonObj) -> str | None:
        """The last assistant words given as text, when asked to resume a cut-off reply."""
        instructions = params.get("instructions")
        if not isinstance(instructions, str) or "cut off" not in instructions:
            return None
        for item in reversed(self.conversation.live()):
            if item.role == "assistant" and item.client_item is not None:
                return item.transcript
        return ""

    def _start_response(
        self, params: JsonObj, now: float, *, caller_turn: int | None = None
    ) -> list[JsonObj]:
        output = response_output(params, self.session)
        in_conversation = params.get("conversation", "auto") == "auto"
        record = ResponseRecord(
            id=self.ids.new("resp_"),
            created_at=now,
            conversation="auto" if in_conversation else "none",
            metadata=params.get("metadata"),
            answering=self._answering(),
        )
        self.responses[record.id] = record
        script = self.settings.tool_calls
        calls = plan_calls(script, caller_turn, self.ids) if caller_turn is not None else []
        metadata = params.get("metadata")
        purpose = metadata.get("bridge_purpose") if isinstance(metadata, dict) else None
        head: str | None = None
        items = self.settings.items_per_response
        if calls:
            reply_ms, head = say_first(script, caller_turn or 0)
            items = 1 if reply_ms else 0
        else:
            short = purpose in SHORT_PURPOSES
            reply_ms = (
                self._reply_overrides.popleft()
                if self._reply_overrides
                else (self.settings.short_reply_ms if short else self.settings.reply_ms)
            )
            if isinstance(purpose, str) and purpose in PURPOSE_HEADS:
                head = PURPOSE_HEADS[purpose]
            elif purpose == "tools" and (found := last_tool_output(self.conversation)) is not None:
                head = answer_head(found)
        n = self._response_count
        self._response_count += 1
        resuming = self._resuming(params)
        fmt = output.format["type"]
        plans = [
            ItemPlan(
                item_id=self.ids.new("item_"),
                text=reply_text(
                    answering=record.answering,
                    greeting="instructions" in params,
                    resuming=resuming,
                    item_index=i,
                    audio_ms=reply_ms,
                    offset=n * 7 + i * 3,
                    head=head,
                ),
                audio=reply_audio(reply_ms, reply_seed(self.settings.seed, n, i), fmt)
                if output.audio
                else b"",
                audio_ms=reply_ms,
            )
            for i in range(items)
        ]
        s = self.settings
        gen = ResponseGen(
            record=record,
            plans=plans,
            pacing=Pacing(
                s.first_delta_delay_ms, s.delta_ms, s.generation_speed, s.late_deltas_after_cancel
            ),
            output_format=output.format,
            voice=output.voice,
            audio=output.audio,
            conversation=self.conversation if in_conversation else None,
            ids=self.ids,
            calls=calls,
            first_at=now + s.first_delta_delay_ms / 1000.0,
        )
        self._gens.append(gen)
        if in_conversation:
            self._default_gen = gen
        return gen.start()

    def _response_cancel(self, response_id: object, now: float) -> list[JsonObj]:
        if response_id is None:
            target = self._default_gen
        else:
            target = next((g for g in self._gens if g.record.id == response_id), None)
        if target is None or target.cancel_reason is not None:
            raise ProtocolError(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        out = target.cancel(now, "client_cancelled")
        self._forget_finished()
        return out
