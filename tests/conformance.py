"""Realtime events checked against the vendor's own types: the ``openai`` package's models.

The SDK's models accept unknown fields (``extra="allow"``) so that old clients keep working when
the service adds some; here the check is the other way round, so every model is validated with
``extra="forbid"``, which pydantic applies to every nested model, list element and union member.
Validation is of the JSON text in strict mode, with fields by their wire names (aliases), as the
service reads them: a field the SDK does not define, anywhere, fails the check, and so does an
event ``type`` it does not know.

One departure from the event classes, and only by the SDK's own types: ``session.created`` and
``session.updated`` name the session *request* models, which lack ``id``, ``object`` and
``expires_at``; every served session has them (the spec's own examples, the SDK's
``Realtime*SessionCreateResponse``, and the bridge reads ``session.id``). So the ``session`` of
those two events is the request model plus exactly the fields the response model adds, typed as
it types them (:data:`SERVED_SESSION_FIELDS`; a test checks the SDK still lacks them).

Use :func:`assert_client_event_conforms` / :func:`assert_server_event_conforms` on decoded
events, or the ``*_frame_*`` forms on raw WebSocket text frames (which also refuse binary
frames, JSON that is not an object and duplicate keys, which a decoded dict would hide).
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any, Final

import pydantic
from openai.types.realtime import (
    RealtimeClientEvent,
    RealtimeServerEvent,
    RealtimeSessionCreateRequest,
    RealtimeSessionCreateResponse,
    RealtimeTranscriptionSessionCreateRequest,
    RealtimeTranscriptionSessionCreateResponse,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)


class EventCatalog:
    """The event models of one direction, by their ``type`` literal."""

    __slots__ = ("direction", "models")

    def __init__(
        self,
        direction: str,
        union: Any,
        replacements: Mapping[str, type[pydantic.BaseModel]] | None = None,
    ) -> None:
        """``replacements``: models used instead of the union's for these types (see above)."""
        self.direction = direction
        self.models: dict[str, type[pydantic.BaseModel]] = {}
        for model in _union_members(union):
            for type_name in typing.get_args(model.model_fields["type"].annotation):
                if type_name in self.models:
                    raise ValueError(f"two {direction} models claim type {type_name!r}")
                self.models[type_name] = model
        for type_name, model in (replacements or {}).items():
            if type_name not in self.models:
                raise ValueError(f"replacement for {type_name!r}, which the SDK does not know")
            self.models[type_name] = model

    def assert_conforms(self, event: Mapping[str, Any]) -> pydantic.BaseModel:
        """The validated model; ``AssertionError`` naming every offending field otherwise."""
        type_name = event.get("type")
        model = self.models.get(type_name) if isinstance(type_name, str) else None
        if model is None:
            raise AssertionError(f"{self.direction} event type {type_name!r} is unknown to the SDK")
        try:
            # NaN and Infinity are not JSON, whatever Python's json module allows by default.
            text = json.dumps(event, allow_nan=False)
        except ValueError as exc:
            raise AssertionError(f"{self.direction} event {type_name!r}: not JSON, {exc}") from None
        try:
            return model.model_validate_json(
                text, strict=True, extra="forbid", by_alias=True, by_name=False
            )
        except pydantic.ValidationError as exc:
            raise AssertionError(
                f"{self.direction} event {type_name!r} does not conform to "
                f"{model.__module__}.{model.__qualname__}:\n{exc}\nevent: {text[:2000]}"
            ) from None

    def assert_frame_conforms(self, frame: str | bytes) -> pydantic.BaseModel:
        return self.assert_conforms(parse_frame(frame))


def _union_members(union: Any) -> list[type[pydantic.BaseModel]]:
    """The models of a union (or one model), through ``Annotated`` (the SDK's unions are)."""
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    members = (union,) if isinstance(union, type) else typing.get_args(union)
    if not members or not all(
        isinstance(m, type) and issubclass(m, pydantic.BaseModel) for m in members
    ):
        raise TypeError(f"not a union of models: {union!r}")
    return list(members)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise AssertionError(f"duplicate keys in a JSON object: {duplicates}")
    return dict(pairs)


def parse_frame(frame: str | bytes) -> dict[str, Any]:
    """A Realtime text frame as a JSON object; ``AssertionError`` for anything else."""
    assert isinstance(frame, str), f"binary frame ({len(frame)} bytes): Realtime events are text"
    try:
        value = json.loads(frame, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"frame is not JSON ({exc.msg}): {frame[:200]!r}") from None
    assert isinstance(value, dict), f"frame is not a JSON object: {frame[:200]!r}"
    return value


def _with_fields_of(
    base: type[pydantic.BaseModel], other: type[pydantic.BaseModel], names: frozenset[str]
) -> type[pydantic.BaseModel]:
    """``base`` plus the fields ``names`` of ``other``, typed and required as ``other`` has them."""
    if not names <= other.model_fields.keys() - base.model_fields.keys():
        raise ValueError(f"{other.__name__} does not add {sorted(names)} to {base.__name__}")
    added: dict[str, Any] = {
        name: (other.model_fields[name].annotation, other.model_fields[name]) for name in names
    }
    return pydantic.create_model(base.__name__, __base__=base, **added)


SERVED_SESSION_FIELDS: Final = frozenset({"id", "object", "expires_at"})
"""What a served session has beyond the request models that the session events name."""

_SERVED_SESSION: Final = _with_fields_of(
    RealtimeSessionCreateRequest, RealtimeSessionCreateResponse, SERVED_SESSION_FIELDS
) | _with_fields_of(
    RealtimeTranscriptionSessionCreateRequest,
    RealtimeTranscriptionSessionCreateResponse,
    SERVED_SESSION_FIELDS,
)
SERVED_SESSION_EVENTS: Final[Mapping[str, type[pydantic.BaseModel]]] = {
    typing.get_args(model.model_fields["type"].annotation)[0]: pydantic.create_model(
        model.__name__, __base__=model, session=(_SERVED_SESSION, ...)
    )
    for model in (SessionCreatedEvent, SessionUpdatedEvent)
}

CLIENT_EVENTS: Final = EventCatalog("client", RealtimeClientEvent)
SERVER_EVENTS: Final = EventCatalog("server", RealtimeServerEvent, SERVED_SESSION_EVENTS)
"""The SDK's server events, with :data:`SERVED_SESSION_EVENTS` for the two session events."""


def assert_client_event_conforms(event: Mapping[str, Any]) -> pydantic.BaseModel:
    return CLIENT_EVENTS.assert_conforms(event)


def assert_server_event_conforms(event: Mapping[str, Any]) -> pydantic.BaseModel:
    return SERVER_EVENTS.assert_conforms(event)


def assert_client_frame_conforms(frame: str | bytes) -> pydantic.BaseModel:
    return CLIENT_EVENTS.assert_frame_conforms(frame)


def assert_server_frame_conforms(frame: str | bytes) -> pydantic.BaseModel:
    return SERVER_EVENTS.assert_frame_conforms(frame)
