"""The tools the model may call, as configured in the tools file (JSON or TOML), sans-IO.

A tools file lists tools under ``tools``; each has a ``name``, a ``description``, JSON-schema
``parameters`` and either the ``url`` of the application that runs it or a ``builtin``
(``end_call``, ``transfer_call``). The file is read once, at start-up
(``BRIDGE_TOOLS_FILE``), by :func:`parse_tools_document`; anything wrong in it is a
:class:`ToolsFileError` naming the line (syntax) or the field (``tools[2].url``), so the
process refuses to start instead of failing on the first call.

TOML::

    [[tools]]
    name = "lookup_order"
    description = "Look up an order by its number."
    url = "https://app.example.com/tools/lookup_order"
    timeout_s = 5                # default 8
    on_barge_in = "cancel"       # or "finish"; default "cancel"
    [tools.parameters]
    type = "object"
    required = ["order_id"]
    properties = { order_id = { type = "string", description = "The order number." } }

    [[tools]]
    name = "end_call"
    builtin = "end_call"

    [[tools]]
    name = "transfer_call"
    builtin = "transfer_call"
    targets = { sales = "+15551230000", support = "sip:support@pbx.example.com" }

The same in JSON is ``{"tools": [{"name": ..., ...}, ...]}``.

Rules:

* ``url`` is ``https://``; ``http://`` only to a loopback host (``127.0.0.1``, ``::1``,
  ``localhost``): signed request bodies carry what the caller said, so they do not travel
  in clear text over a network.
* ``on_barge_in``: what happens to a call still running when the caller barges in.
  ``cancel`` (the default, as in pipecat and LiveKit): the application gets a cancel request,
  the model gets an output saying the call was cancelled, a late result is dropped and
  counted. ``finish``: the call runs on and its result is delivered as output, silently
  (it never starts a response by itself). Use ``finish`` for actions that must not be left
  half-done (a payment, a booking).
* Built-ins get a description and parameters when the file gives none. ``transfer_call``
  needs ``targets`` (a name → an E.164 number or a ``sip:`` URI): the model picks a *name*
  (its parameters are generated, an ``enum`` of the names), never a number, so nothing the
  caller says can make the bridge dial an arbitrary destination.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

ToolKind = Literal["url", "end_call", "transfer_call"]
OnBargeIn = Literal["cancel", "finish"]
BUILTINS: Final[tuple[ToolKind, ...]] = ("end_call", "transfer_call")
DEFAULT_TIMEOUT_S: Final = 8.0
MAX_TIMEOUT_S: Final = 60.0
MAX_TOOLS: Final = 64
"""More tools than any voice agent should offer (and far more than the API handles well)."""
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SIP = re.compile(r"sips?:[^\s<>\"']+@[^\s<>\"']+")
_FIELDS: Final = frozenset(
    {"name", "description", "parameters", "url", "builtin", "timeout_s", "on_barge_in", "targets"}
)

_DEFAULT_DESCRIPTIONS: Final[Mapping[ToolKind, str]] = {
    "end_call": (
        "End the phone call. Call it only when the caller has nothing more to ask and you have "
        "said goodbye (or are about to: the call ends once the caller has heard you)."
    ),
    "transfer_call": (
        "Transfer the caller to a person. Tell the caller you are transferring them first: "
        "the transfer starts once the caller has heard you."
    ),
}
_END_CALL_PARAMETERS: Final = (
    '{"type":"object","properties":{"reason":{"type":"string",'
    '"description":"Why the call ends, in a few words."}}}'
)


class ToolsFileError(ValueError):
    """What is wrong with a tools file, with the line or the field (one line, no value of a
    secret: tools files hold none)."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool, checked. ``parameters`` is its JSON schema as compact JSON text."""

    name: str
    description: str
    parameters: str
    kind: ToolKind
    url: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    on_barge_in: OnBargeIn = "cancel"
    targets: tuple[tuple[str, str], ...] = ()
    """``transfer_call``: (name, number or SIP URI), in file order."""

    def target(self, name: str) -> str | None:
        return dict(self.targets).get(name)

    def session_tool(self) -> dict[str, Any]:
        """The tool as ``session.update`` lists it (a Realtime ``function`` tool)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": json.loads(self.parameters),
        }


@dataclass(frozen=True, slots=True)
class ToolCatalog:
    """The configured tools, in file order (names unique)."""

    tools: tuple[ToolSpec, ...] = ()

    def get(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    @property
    def has_url_tools(self) -> bool:
        return any(t.kind == "url" for t in self.tools)

    @property
    def builtins(self) -> tuple[ToolSpec, ...]:
        return tuple(t for t in self.tools if t.kind != "url")

    def __bool__(self) -> bool:
        return bool(self.tools)


NO_TOOLS: Final = ToolCatalog()


def is_allowed_app_url(url: str) -> bool:
    """``https://`` with a host, or ``http://`` to a loopback host; no fragment."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    if not parts.hostname or parts.fragment or any(c.isspace() for c in url):
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


APP_URL_ALLOWED: Final = "an https:// URL (http:// only to 127.0.0.1, ::1 or localhost)"


def _transfer_parameters(names: list[str]) -> str:
    schema = {
        "type": "object",
        "properties": {
            "destination": {
                "type": "string",
                "enum": names,
                "description": "Where to transfer the caller.",
            },
            "reason": {"type": "string", "description": "Why, in a few words."},
        },
        "required": ["destination"],
    }
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


class _Checker:
    """Checks one tool entry; errors name ``tools[i] (name).field``."""

    def __init__(self, index: int, entry: Mapping[str, Any]) -> None:
        self.entry = entry
        name = entry.get("name")
        self.where = f"tools[{index}]" + (f" ({name})" if isinstance(name, str) else "")

    def fail(self, field: str | None, problem: str) -> ToolsFileError:
        return ToolsFileError(f"{self.where}{'.' + field if field else ''}: {problem}")

    def text(self, field: str, *, required: bool) -> str | None:
        value = self.entry.get(field)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "must be a non-empty string")
        return value

    def check(self) -> ToolSpec:
        unknown = sorted(set(self.entry) - _FIELDS)
        if unknown:
            raise self.fail(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
        name = self.text("name", required=True)
        assert name is not None
        if not _NAME.fullmatch(name):
            raise self.fail("name", "must be 1-64 letters, digits, '_' or '-'")
        url = self.text("url", required=False)
        builtin = self.text("builtin", required=False)
        if (url is None) == (builtin is None):
            raise self.fail(None, "needs exactly one of 'url' or 'builtin'")
        kind: ToolKind
        if builtin is not None:
            if builtin not in BUILTINS:
                raise self.fail("builtin", f"must be one of {', '.join(BUILTINS)}")
            kind = "end_call" if builtin == "end_call" else "transfer_call"
        else:
            kind = "url"
            assert url is not None
            if not is_allowed_app_url(url):
                raise self.fail("url", f"must be {APP_URL_ALLOWED}")
        targets = self._targets(kind)
        description = self.text("description", required=kind == "url")
        parameters = self._parameters(kind, targets)
        return ToolSpec(
            name=name,
            description=description or _DEFAULT_DESCRIPTIONS.get(kind, ""),
            parameters=parameters,
            kind=kind,
            url=url,
            timeout_s=self._timeout(kind),
            on_barge_in=self._on_barge_in(kind),
            targets=targets,
        )

    def _timeout(self, kind: ToolKind) -> float:
        value = self.entry.get("timeout_s")
        if value is None:
            return DEFAULT_TIMEOUT_S
        if kind != "url":
            raise self.fail("timeout_s", "only tools with a 'url' have a timeout")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail("timeout_s", f"must be a number of seconds in 0.1..{MAX_TIMEOUT_S:g}")
        if not 0.1 <= float(value) <= MAX_TIMEOUT_S:
            raise self.fail("timeout_s", f"must be a number of seconds in 0.1..{MAX_TIMEOUT_S:g}")
        return float(value)

    def _on_barge_in(self, kind: ToolKind) -> OnBargeIn:
        value = self.entry.get("on_barge_in")
        if value is None:
            return "cancel"
        if kind != "url":
            raise self.fail("on_barge_in", "built-ins have fixed barge-in rules")
        if value not in ("cancel", "finish"):
            raise self.fail("on_barge_in", "must be 'cancel' or 'finish'")
        return "cancel" if value == "cancel" else "finish"

    def _targets(self, kind: ToolKind) -> tuple[tuple[str, str], ...]:
        value = self.entry.get("targets")
        if kind != "transfer_call":
            if value is not None:
                raise self.fail("targets", "only the transfer_call built-in has targets")
            return ()
        if not isinstance(value, dict) or not value:
            raise self.fail("targets", "must map destination names to numbers or SIP URIs")
        targets: list[tuple[str, str]] = []
        for target_name, destination in value.items():
            if not _NAME.fullmatch(str(target_name)):
                raise self.fail(f"targets.{target_name}", "names are letters, digits, '_', '-'")
            if not isinstance(destination, str) or not (
                _E164.fullmatch(destination) or _SIP.fullmatch(destination)
            ):
                raise self.fail(
                    f"targets.{target_name}",
                    "must be an E.164 number (+15551230000) or a sip: URI (sip:user@host)",
                )
            targets.append((str(target_name), destination))
        return tuple(targets)

    def _parameters(self, kind: ToolKind, targets: tuple[tuple[str, str], ...]) -> str:
        value = self.entry.get("parameters")
        if kind == "transfer_call":
            if value is not None:
                raise self.fail("parameters", "generated from 'targets' for transfer_call")
            return _transfer_parameters([name for name, _ in targets])
        if value is None:
            if kind == "end_call":
                return _END_CALL_PARAMETERS
            return '{"type":"object","properties":{}}'
        if not isinstance(value, dict) or value.get("type") != "object":
            raise self.fail("parameters", 'must be a JSON schema object with "type": "object"')
        properties = value.get("properties", {})
        if not isinstance(properties, dict):
            raise self.fail("parameters.properties", "must be an object")
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            raise self.fail("parameters", "must be plain JSON (no dates, no NaN)") from None


def _load(text: str, fmt: Literal["json", "toml"]) -> Any:
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolsFileError(f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line 3, column 9)"; keep its wording, it names the line.
        raise ToolsFileError(str(exc)) from None


def parse_tools_document(text: str, fmt: Literal["json", "toml"]) -> ToolCatalog:
    """The catalog of one tools file's text.

    Raises:
        ToolsFileError: syntax (with the line) or a field that is not allowed (with its path).
    """
    document = _load(text, fmt)
    if not isinstance(document, dict) or set(document) - {"tools"}:
        raise ToolsFileError("the file must hold only 'tools', a list of tools")
    entries = document.get("tools", [])
    if not isinstance(entries, list):
        raise ToolsFileError("'tools' must be a list of tools")
    if len(entries) > MAX_TOOLS:
        raise ToolsFileError(f"'tools' lists {len(entries)} tools; at most {MAX_TOOLS}")
    specs: list[ToolSpec] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ToolsFileError(f"tools[{index}]: must be a table/object")
        spec = _Checker(index, entry).check()
        if any(s.name == spec.name for s in specs):
            raise ToolsFileError(f"tools[{index}] ({spec.name}).name: used by an earlier tool")
        if spec.kind != "url" and any(s.kind == spec.kind for s in specs):
            raise ToolsFileError(f"tools[{index}] ({spec.name}).builtin: {spec.kind} twice")
        specs.append(spec)
    return ToolCatalog(tuple(specs))
