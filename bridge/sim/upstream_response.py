"""Generation of one simulated Realtime response: the GA event sequence, paced by a clock.

Sans-IO: :meth:`ResponseGen.start`, :meth:`ResponseGen.step` and :meth:`ResponseGen.cancel`
return server events; :attr:`ResponseGen.next_at` (clock seconds) is when ``step`` is due next.

Timing (faster than real time, like the service): the first audio delta of a response is due
``first_delta_delay_ms`` after ``response.created``; every later delta carries ``delta_ms`` of
audio and is due ``delta_ms / generation_speed`` ms after the previous one. When an item's audio
is exhausted its ``.done`` events follow at once, then the next item (if any) starts, and after
the last item ``response.done`` (``status: completed``).

Cancellation (``turn_detected`` or ``client_cancelled``): generation stops, but up to
``late_deltas_after_cancel`` deltas of the current item that were "already in flight" are still
sent at the normal pace (only if the item had started streaming), then the ``.done`` events with
item status ``incomplete`` and ``response.done`` with ``status: cancelled``. The item's audio
length counts the late deltas.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Final

from bridge.sim.upstream_audio import bytes_per_ms
from bridge.sim.upstream_conversation import (
    Conversation,
    ConversationItem,
    IdGen,
    JsonObj,
    ResponseRecord,
)
from bridge.sim.upstream_tools import CallPlan, call_events

_FILLER_TEXT: Final = (
    "I can help with that. Let me check the details for you, it should only take a moment. "
    "Thanks for your patience while I look into the account and the options that are available "
    "today, and then we can decide together what the best next step would be for you."
)
_FILLER: Final = tuple(_FILLER_TEXT.split())
GREETING: Final = "Hello! Thanks for calling, how can I help you today?"
WORDS_PER_S: Final = 2.5
"""Speaking rate used to size reply transcripts to their audio (about 150 words per minute)."""


def reply_text(
    *,
    answering: str | None,
    greeting: bool,
    item_index: int,
    audio_ms: int,
    offset: int,
    resuming: str | None = None,
    head: str | None = None,
) -> str:
    """Transcript of one assistant item, sized to ``audio_ms`` of speech.

    The first item answering a caller utterance starts with ``You said: <utterance>.``; a
    greeting starts with :data:`GREETING`; a reply asked to resume a cut-off one (its
    instructions say "cut off") starts with ``Sorry, I was cut off. As I was saying:`` and
    the last assistant words the session was given (``resuming``), which shows tests what
    a replacement session was told; later items of a multi-item response start with
    ``And one more thing:``. Filler words follow, from ``offset`` in a fixed text. ``head``
    replaces the opening of the first item (tool replies: :mod:`bridge.sim.upstream_tools`).
    """
    if head is not None and item_index == 0:
        pass
    elif item_index > 0:
        head = "And one more thing:"
    elif resuming is not None:
        said = " ".join(resuming.split()[-8:])
        head = f"Sorry, I was cut off. As I was saying: {said}"
    elif answering is not None:
        head = f"You said: {answering.rstrip('.!? ')}."
    elif greeting:
        head = GREETING
    else:
        head = "Sure."
    words = head.split()
    target = max(len(words), math.ceil(audio_ms / 1000 * WORDS_PER_S))
    i = 0
    while len(words) < target:
        words.append(_FILLER[(offset + i) % len(_FILLER)])
        i += 1
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class ItemPlan:
    """What one output item will contain if not cancelled."""

    item_id: str
    text: str
    audio: bytes
    """Encoded audio of the whole item (empty for a text-only response)."""
    audio_ms: int


@dataclass(frozen=True, slots=True)
class Pacing:
    """Generation timing, all in ms (``generation_speed`` is audio ms per wall ms)."""

    first_delta_delay_ms: float
    delta_ms: int
    generation_speed: float
    late_deltas_after_cancel: int

    @property
    def interval_s(self) -> float:
        return self.delta_ms / self.generation_speed / 1000.0


@dataclass(slots=True)
class ResponseGen:
    """One response being generated; see the module docstring for the event sequence."""

    record: ResponseRecord
    plans: list[ItemPlan]
    pacing: Pacing
    output_format: JsonObj
    voice: str | JsonObj
    audio: bool
    """``False`` for ``output_modalities: ["text"]``: text deltas, no audio."""
    conversation: Conversation | None
    """The default conversation; ``None`` for an out-of-band response (``conversation: none``)."""
    ids: IdGen
    first_at: float
    """Clock value (s) of the first delta."""
    steps: int = 0
    index: int = 0
    sent_ms: int = 0
    words_sent: int = 0
    cancel_reason: str | None = None
    late_left: int = 0
    finished: bool = False
    current: ConversationItem | None = None
    calls: list[CallPlan] = field(default_factory=list)
    """Function calls written after the audio items (:mod:`bridge.sim.upstream_tools`)."""
    call_items: list[JsonObj] = field(default_factory=list)

    @property
    def next_at(self) -> float:
        """Clock value (s) at which :meth:`step` is due (computed, so no drift accumulates)."""
        return self.first_at + self.steps * self.pacing.interval_s

    def event(self, type_: str, **fields: object) -> JsonObj:
        return {"type": type_, "event_id": self.ids.new("event_"), **fields}

    def _response_json(self, status: str, output: list[JsonObj], usage: JsonObj | None) -> JsonObj:
        details: JsonObj | None = None
        if self.cancel_reason is not None:
            details = {"type": "cancelled", "reason": self.cancel_reason}
        return {
            "object": "realtime.response",
            "id": self.record.id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": "conv_default" if self.conversation is not None else None,
            "output_modalities": ["audio"] if self.audio else ["text"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": dict(self.output_format), "voice": self.voice}},
            "usage": usage,
            "metadata": self.record.metadata,
        }

    def start(self) -> list[JsonObj]:
        """``response.created``, ``rate_limits.updated`` and the first item's opening events."""
        out = [
            self.event("response.created", response=self._response_json("in_progress", [], None)),
            self.event(
                "rate_limits.updated",
                rate_limits=[
                    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                    {"name": "tokens", "limit": 40000, "remaining": 38000, "reset_seconds": 3.0},
                ],
            ),
        ]
        if self.plans:
            out += self._open_item()
        return out

    def _calls(self) -> list[JsonObj]:
        """The function call items, after every audio item."""
        out: list[JsonObj] = []
        for k, plan in enumerate(self.calls):
            events, item = call_events(
                plan,
                response_id=self.record.id,
                output_index=len(self.plans) + k,
                conversation=self.conversation,
                ids=self.ids,
            )
            out += events
            self.call_items.append(item)
        return out

    def _part(self, text: str) -> JsonObj:
        """The ``part`` of ``response.content_part.*``: typed ``audio``/``text`` (as in the
        SDK's models), where the same content inside an item is ``output_audio``/``output_text``."""
        if self.audio:
            return {"type": "audio", "transcript": text}
        return {"type": "text", "text": text}

    def _ids(self) -> JsonObj:
        plan = self.plans[self.index]
        return {
            "response_id": self.record.id,
            "item_id": plan.item_id,
            "output_index": self.index,
            "content_index": 0,
        }

    def _open_item(self) -> list[JsonObj]:
        plan = self.plans[self.index]
        item = ConversationItem(
            id=plan.item_id,
            type="message",
            role="assistant",
            status="in_progress",
            content_type="output_audio" if self.audio else "output_text",
            response_id=self.record.id,
        )
        self.current = item
        self.sent_ms = 0
        self.words_sent = 0
        self.record.items.append(plan.item_id)
        self.record.audio_ms[plan.item_id] = 0
        self.record.transcripts[plan.item_id] = ""
        out = [
            self.event(
                "response.output_item.added",
                response_id=self.record.id,
                output_index=self.index,
                item=item.to_json(),
            )
        ]
        if self.conversation is not None:
            previous = self.conversation.append(item)
            out.append(
                self.event(
                    "conversation.item.added", previous_item_id=previous, item=item.to_json()
                )
            )
        out.append(self.event("response.content_part.added", **self._ids(), part=self._part("")))
        return out

    def _remaining_deltas(self) -> int:
        plan = self.plans[self.index]
        return math.ceil((plan.audio_ms - self.sent_ms) / self.pacing.delta_ms)

    def step(self) -> list[JsonObj]:
        """The events due at :attr:`next_at`: one delta of the current item, then the item's
        and the response's closing events if they follow it. Advances :attr:`next_at`."""
        if not self.plans:  # only function calls
            self.steps += 1
            return self._calls() + self._close_response()
        plan = self.plans[self.index]
        assert self.current is not None
        chunk_ms = min(self.pacing.delta_ms, plan.audio_ms - self.sent_ms)
        end_ms = self.sent_ms + chunk_ms
        words = plan.text.split()
        words_due = math.ceil(len(words) * end_ms / plan.audio_ms) if plan.audio_ms else len(words)
        text_delta = " ".join(words[self.words_sent : words_due])
        if self.words_sent and text_delta:
            text_delta = " " + text_delta
        out: list[JsonObj] = []
        if self.audio:
            bpm = bytes_per_ms(self.output_format["type"])
            chunk = plan.audio[self.sent_ms * bpm : end_ms * bpm]
            out.append(
                self.event(
                    "response.output_audio.delta",
                    **self._ids(),
                    delta=base64.b64encode(chunk).decode("ascii"),
                )
            )
            if text_delta:
                out.append(
                    self.event(
                        "response.output_audio_transcript.delta", **self._ids(), delta=text_delta
                    )
                )
            self.current.audio_ms = end_ms
            self.record.audio_ms[plan.item_id] = end_ms
        elif text_delta:
            out.append(self.event("response.output_text.delta", **self._ids(), delta=text_delta))
        self.sent_ms = end_ms
        self.words_sent = words_due
        self.record.transcripts[plan.item_id] = " ".join(words[:words_due])
        if self.current.truncated_at_ms is None:
            # A truncate while generating removed the transcript; it must not come back.
            self.current.transcript = self.record.transcripts[plan.item_id]
        self.steps += 1
        if self.cancel_reason is not None:
            self.record.late_deltas += 1
            self.late_left -= 1
            if self.late_left == 0 or self.sent_ms >= plan.audio_ms:
                return out + self._finish()
        elif self.sent_ms >= plan.audio_ms:
            out += self._close_item("completed")
            if self.index + 1 < len(self.plans):
                self.index += 1
                out += self._open_item()
            else:
                out += self._calls() + self._close_response()
        return out

    def _close_item(self, status: str) -> list[JsonObj]:
        assert self.current is not None
        item = self.current
        item.status = status
        text = item.transcript
        ids = self._ids()
        if self.audio:
            out = [
                self.event("response.output_audio.done", **ids),
                self.event("response.output_audio_transcript.done", **ids, transcript=text),
            ]
        else:
            out = [self.event("response.output_text.done", **ids, text=text)]
        out.append(self.event("response.content_part.done", **ids, part=self._part(text)))
        out.append(
            self.event(
                "response.output_item.done",
                response_id=self.record.id,
                output_index=self.index,
                item=item.to_json(),
            )
        )
        if self.conversation is not None:
            out.append(
                self.event(
                    "conversation.item.done",
                    previous_item_id=self.conversation.previous_of(item.id),
                    item=item.to_json(),
                )
            )
        return out

    def _close_response(self) -> list[JsonObj]:
        self.finished = True
        status = "cancelled" if self.cancel_reason is not None else "completed"
        self.record.status = status
        output = [
            ConversationItem(
                id=plan.item_id,
                type="message",
                role="assistant",
                status="completed" if i < self.index or status == "completed" else "incomplete",
                content_type="output_audio" if self.audio else "output_text",
                transcript=self.record.transcripts[plan.item_id],
            ).to_json()
            for i, plan in enumerate(self.plans[: self.index + 1])
        ] + list(self.call_items)
        audio_ms = sum(self.record.audio_ms.values())
        text_tokens = sum(len(t.split()) for t in self.record.transcripts.values())
        audio_tokens = audio_ms // 50
        usage = {
            "total_tokens": 120 + text_tokens + audio_tokens,
            "input_tokens": 120,
            "output_tokens": text_tokens + audio_tokens,
            "input_token_details": {"text_tokens": 100, "audio_tokens": 20, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        }
        return [self.event("response.done", response=self._response_json(status, output, usage))]

    def _finish(self) -> list[JsonObj]:
        return self._close_item("incomplete") + self._close_response()

    def cancel(self, now: float, reason: str) -> list[JsonObj]:
        """Stop generating; returns the closing events if no late delta is pending.

        Raises ``RuntimeError`` if already cancelled or finished (callers check first).
        """
        if self.finished or self.cancel_reason is not None:
            raise RuntimeError(f"response {self.record.id} is not cancellable")
        self.cancel_reason = reason
        self.record.reason = reason
        self.record.cancelled_at = now
        if not self.plans:
            return self._close_response()
        started = self.sent_ms > 0
        self.late_left = min(self.pacing.late_deltas_after_cancel, self._remaining_deltas())
        if not started or self.late_left <= 0:
            return self._finish()
        return []
