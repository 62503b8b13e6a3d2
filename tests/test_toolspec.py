"""The tools file: JSON or TOML, checked at start-up, every mistake one line naming where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import cli
from bridge.config import BridgeConfig, ConfigError, Secret, check_together, load_config
from bridge.core.realtime_client import FunctionTool, SessionSettings, SessionUpdate, encode
from bridge.core.toolspec import ToolsFileError, parse_tools_document
from tests.conformance import assert_client_frame_conforms

EXAMPLE = Path(__file__).parent.parent / "examples" / "tools.toml"


def parse(entries: list[dict[str, object]]) -> object:
    return parse_tools_document(json.dumps({"tools": entries}), "json")


def refusal(entries: list[dict[str, object]]) -> str:
    with pytest.raises(ToolsFileError) as refused:
        parse(entries)
    return str(refused.value)


URL = "https://app.example.com/tools/x"


def test_the_shipped_example_parses_and_goes_into_session_update_as_the_sdk_expects() -> None:
    catalog = parse_tools_document(EXAMPLE.read_text(), "toml")
    names = [t.name for t in catalog.tools]
    assert names == ["lookup_order", "book_table", "end_call", "transfer_call"]
    transfer = catalog.get("transfer_call")
    assert transfer is not None
    schema = json.loads(transfer.parameters)
    assert schema["properties"]["destination"]["enum"] == ["sales", "support"]
    assert transfer.target("support") == "sip:support@pbx.example.com"
    end = catalog.get("end_call")
    assert end is not None
    assert end.description  # a default one
    session = SessionSettings(
        model="gpt-realtime",
        voice="marin",
        instructions="x",
        tools=tuple(FunctionTool(t.name, t.description, t.parameters) for t in catalog.tools),
    )
    frame = encode(SessionUpdate("e1", session))
    assert_client_frame_conforms(frame)
    sent = json.loads(frame)["session"]
    assert [t["type"] for t in sent["tools"]] == ["function"] * 4
    assert sent["tool_choice"] == "auto"


def test_no_tools_means_no_tools_field_in_session_update() -> None:
    frame = encode(
        SessionUpdate("e1", SessionSettings(model=None, voice="marin", instructions="x"))
    )
    assert "tools" not in json.loads(frame)["session"]


def test_json_and_toml_syntax_errors_name_the_line() -> None:
    with pytest.raises(ToolsFileError, match=r"^line 3 column 1: "):
        parse_tools_document('{"tools": [\n{"name": "a",\n}]}', "json")
    with pytest.raises(ToolsFileError, match=r"at line 2"):
        parse_tools_document('[[tools]]\nname = "a\n', "toml")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"name": "a b", "url": URL, "description": "d"}], "tools[0] (a b).name: must be 1-64"),
        (
            [{"name": "a", "description": "d"}],
            "tools[0] (a): needs exactly one of 'url' or 'builtin'",
        ),
        (
            [{"name": "a", "description": "d", "url": "http://app.example.com/x"}],
            "tools[0] (a).url: must be an https:// URL (http:// only to 127.0.0.1, ::1 or "
            "localhost)",
        ),
        ([{"name": "a", "url": URL}], "tools[0] (a).description: must be a non-empty string"),
        (
            [{"name": "a", "url": URL, "description": "d", "parameters": {"type": "string"}}],
            'tools[0] (a).parameters: must be a JSON schema object with "type": "object"',
        ),
        (
            [{"name": "a", "url": URL, "description": "d", "timeout_s": 0}],
            "tools[0] (a).timeout_s: must be a number of seconds in 0.1..60",
        ),
        (
            [{"name": "a", "url": URL, "description": "d", "on_barge_in": "ignore"}],
            "tools[0] (a).on_barge_in: must be 'cancel' or 'finish'",
        ),
        (
            [{"name": "a", "url": URL, "description": "d", "retries": 3}],
            "tools[0] (a).retries: unknown field",
        ),
        ([{"name": "t", "builtin": "transfer_call"}], "tools[0] (t).targets: must map"),
        (
            [{"name": "t", "builtin": "transfer_call", "targets": {"sales": "555-1234"}}],
            "tools[0] (t).targets.sales: must be an E.164 number",
        ),
        ([{"name": "x", "builtin": "dance"}], "tools[0] (x).builtin: must be one of end_call"),
        (
            [
                {"name": "a", "url": URL, "description": "d"},
                {"name": "a", "url": URL, "description": "d"},
            ],
            "tools[1] (a).name: used by an earlier tool",
        ),
        (
            [{"name": "e1", "builtin": "end_call"}, {"name": "e2", "builtin": "end_call"}],
            "tools[1] (e2).builtin: end_call twice",
        ),
    ],
)
def test_a_wrong_field_is_named_with_its_tool(
    entries: list[dict[str, object]], message: str
) -> None:
    assert refusal(entries).startswith(message)


def test_loopback_http_is_allowed_and_defaults_are_filled_in() -> None:
    [tool] = parse([{"name": "a", "url": "http://127.0.0.1:8000/a", "description": "d"}]).tools  # type: ignore[attr-defined]
    assert (tool.kind, tool.timeout_s, tool.on_barge_in) == ("url", 8.0, "cancel")
    assert json.loads(tool.parameters) == {"type": "object", "properties": {}}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_bad_file_is_one_start_up_line_naming_the_file_and_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path, "tools.toml", '[[tools]]\nname = "a"\nurl = "ftp://x"\ndescription = "d"\n'
    )
    monkeypatch.setenv("BRIDGE_TOOLS_FILE", path)
    assert cli.main(["serve", "--port", "0"]) == 2
    assert capsys.readouterr().err == (
        f"bridge: BRIDGE_TOOLS_FILE={path!r}: tools[0] (a).url: must be an https:// URL "
        "(http:// only to 127.0.0.1, ::1 or localhost)\n"
    )
    missing = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"nope.json'?: cannot be read \(No such file"):
        load_config({"BRIDGE_TOOLS_FILE": missing})


def test_settings_that_only_work_together_are_refused_before_serving(tmp_path: Path) -> None:
    path = write(
        tmp_path, "t.json", json.dumps({"tools": [{"name": "a", "url": URL, "description": "d"}]})
    )
    with pytest.raises(
        ConfigError, match=r"^BRIDGE_APP_SECRET: must be set: it signs the requests to the tools"
    ):
        check_together(load_config({"BRIDGE_TOOLS_FILE": path}))
    with pytest.raises(ConfigError, match=r"to BRIDGE_EVENTS_URL$"):
        check_together(load_config({"BRIDGE_EVENTS_URL": "https://app.example.com/e"}))
    ends = write(
        tmp_path, "e.json", json.dumps({"tools": [{"name": "bye", "builtin": "end_call"}]})
    )
    with pytest.raises(
        ConfigError, match="end_call needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
    ):
        check_together(load_config({"BRIDGE_TOOLS_FILE": ends}))
    fine = load_config(
        {"BRIDGE_TOOLS_FILE": ends, "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}
    )
    check_together(fine)
    assert check_together(BridgeConfig(app_secret=Secret("s"), events_url="https://a.b/e")) is None
