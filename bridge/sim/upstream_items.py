"""``conversation.item.*`` client events of the simulated Realtime session (sans-IO).

Truncate follows the Realtime API reference (``conversation.item.truncate`` and the errors
integrators report for it), checked in this order:
``audio_end_ms`` negative ⇒ ``integer_below_min_value``; unknown item ⇒
``settings.unknown_item_code`` (default ``item_not_found``, UNCONFIRMED); not an assistant audio
item, or no audio generated yet ⇒ "Only model output audio messages can be truncated" with
``settings.truncate_no_audio_code`` (UNCONFIRMED: ``unsupported_content_type`` or null);
``audio_end_ms == 0`` ⇒ ``invalid_value``; more than the item's audio ⇒ ``invalid_value``
"Audio content of {generated}ms is already shorter than {requested}ms". On success the item's
transcript is removed, as the service does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Final

from bridge.sim.upstream_config import (
    ProtocolError,
    SessionSettings,
    integer_below_min,
    invalid_type,
    invalid_value,
    missing_parameter,
)
from bridge.sim.upstream_conversation import (
    Conversation,
    ConversationItem,
    IdGen,
    JsonObj,
    TruncationRecord,
)

_CONTENT_BY_ROLE: Final = {
    "system": ("input_text",),
    "user": ("input_text",),
    "assistant": ("output_text",),
}


@dataclass(slots=True)
class ItemHandlers:
    """Handlers of create/retrieve/delete/truncate over the session's conversation."""

    conversation: Conversation
    ids: IdGen
    truncations: list[TruncationRecord]
    settings: SessionSettings

    def event(self, type_: str, **fields: object) -> JsonObj:
        return {"type": type_, "event_id": self.ids.new("event_"), **fields}

    def _unknown_item(self, item_id: object, param: str) -> ProtocolError:
        return ProtocolError(
            self.settings.unknown_item_code, f"Item with item_id not found: {item_id}", param
        )

    def _item_id(self, event: JsonObj) -> str:
        if "item_id" not in event:
            raise missing_parameter("item_id")
        item_id = event["item_id"]
        if not isinstance(item_id, str):
            raise invalid_type("item_id", "a string", item_id)
        return item_id

    def truncate(self, event: JsonObj, now: float) -> list[JsonObj]:
        """``conversation.item.truncate`` at clock value ``now`` (s); always recorded."""
        item_id = self._item_id(event)
        for key in ("content_index", "audio_end_ms"):
            if key not in event:
                raise missing_parameter(key)
            if isinstance(event[key], bool) or not isinstance(event[key], int):
                raise invalid_type(key, "an integer", event[key])
        end_ms: int = event["audio_end_ms"]
        item = self.conversation.find(item_id)
        generated = 0
        if item is not None:
            generated = item.audio_ms if item.truncated_at_ms is None else item.truncated_at_ms
        try:
            self._check_truncate(item, item_id, event["content_index"], end_ms, generated)
        except ProtocolError as err:
            self.truncations.append(
                TruncationRecord(
                    now, item_id, end_ms, generated, accepted=False, error_code=err.code
                )
            )
            raise
        assert item is not None
        item.truncated_at_ms = end_ms
        item.transcript = ""
        self.truncations.append(
            TruncationRecord(now, item_id, end_ms, generated, accepted=True, error_code=None)
        )
        return [
            self.event(
                "conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms
            )
        ]

    def _check_truncate(
        self,
        item: ConversationItem | None,
        item_id: str,
        content_index: int,
        end_ms: int,
        generated: int,
    ) -> None:
        if end_ms < 0:
            raise integer_below_min("audio_end_ms", end_ms, 0)
        if item is None:
            raise self._unknown_item(item_id, "item_id")
        if item.role != "assistant" or item.content_type != "output_audio" or generated == 0:
            raise ProtocolError(
                self.settings.truncate_no_audio_code,
                "Only model output audio messages can be truncated",
            )
        if content_index != 0:
            raise invalid_value("content_index", content_index, ("0",))
        if end_ms == 0:
            # Message wording is a guess; only the code and param are reported by clients.
            raise ProtocolError(
                "invalid_value", "Invalid 'audio_end_ms': expected a value > 0.", "audio_end_ms"
            )
        if end_ms > generated:
            raise ProtocolError(
                "invalid_value",
                f"Audio content of {generated}ms is already shorter than {end_ms}ms",
                "audio_end_ms",
            )

    def delete(self, event: JsonObj) -> list[JsonObj]:
        item_id = self._item_id(event)
        item = self.conversation.find(item_id)
        if item is None:
            raise self._unknown_item(item_id, "item_id")
        item.deleted = True
        return [self.event("conversation.item.deleted", item_id=item_id)]

    def retrieve(self, event: JsonObj) -> list[JsonObj]:
        item_id = self._item_id(event)
        item = self.conversation.find(item_id)
        if item is None:
            raise self._unknown_item(item_id, "item_id")
        return [self.event("conversation.item.retrieved", item=item.to_json())]

    def create(self, event: JsonObj) -> list[JsonObj]:
        """``conversation.item.create``: text messages and ``function_call_output`` items."""
        if "item" not in event:
            raise missing_parameter("item")
        raw = event["item"]
        if not isinstance(raw, dict):
            raise invalid_type("item", "an object", raw)
        item = self._new_item(raw)
        previous_id = event.get("previous_item_id")
        if previous_id is None:
            previous = self.conversation.append(item)
        else:
            try:
                self.conversation.insert_after(item, str(previous_id))
            except KeyError:
                raise self._unknown_item(previous_id, "previous_item_id") from None
            previous = None if previous_id == "root" else str(previous_id)
        rendered = item.to_json()
        return [
            self.event("conversation.item.added", previous_item_id=previous, item=rendered),
            self.event("conversation.item.done", previous_item_id=previous, item=rendered),
        ]

    def _new_item(self, raw: JsonObj) -> ConversationItem:
        kind = raw.get("type", "message")
        item_id = raw.get("id") or self.ids.new("item_")
        if not isinstance(item_id, str):
            raise invalid_type("item.id", "a string", item_id)
        stored = {**copy.deepcopy(raw), "type": kind, "status": "completed"}
        if kind == "function_call_output":
            return ConversationItem(
                id=item_id,
                type=kind,
                role=None,
                status="completed",
                content_type="",
                client_item=stored,
            )
        if kind != "message":
            raise invalid_value("item.type", kind, ("message", "function_call_output"))
        role = raw.get("role")
        if role not in _CONTENT_BY_ROLE:
            raise invalid_value("item.role", role, tuple(_CONTENT_BY_ROLE))
        content = raw.get("content")
        if not isinstance(content, list) or not content:
            raise missing_parameter("item.content")
        texts: list[str] = []
        for i, part in enumerate(content):
            allowed = _CONTENT_BY_ROLE[role]
            part_type = part.get("type") if isinstance(part, dict) else None
            if part_type not in allowed:
                raise invalid_value(f"item.content[{i}].type", part_type, allowed)
            texts.append(str(part.get("text", "")))
        return ConversationItem(
            id=item_id,
            type="message",
            role=role,
            status="completed",
            content_type=_CONTENT_BY_ROLE[role][0],
            transcript=" ".join(texts),
            client_item=stored,
        )
