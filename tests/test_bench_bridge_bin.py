"""``BENCH_BRIDGE_BIN`` runs another build of the bridge under the same load, and says so;
``BENCH_RECEIVE_STAMP`` chooses when the callers and the sim count a message as received."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.common.bridge_process import BRIDGE_BIN_VARIABLE, bridge_command
from bench.common.calls import RECEIVE_STAMP_VARIABLE, make_call, receive_stamp
from bench.common.report import provenance
from bench.common.scenario import bench_sim_options, layout
from bench.turn.plan import TurnPlan


def test_the_named_build_is_run_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BRIDGE_BIN_VARIABLE, "/opt/other-build/bin/bridge")
    command = bridge_command(8123)
    assert command[0] == "/opt/other-build/bin/bridge"
    assert command[1:] == ["serve", "--host", "127.0.0.1", "--port", "8123", "--log-format", "json"]
    assert provenance()["bridge_bin"] == "/opt/other-build/bin/bridge"


def test_without_it_the_bench_runs_this_environments_bridge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(BRIDGE_BIN_VARIABLE, raising=False)
    command = bridge_command()
    here = Path(sys.executable).parent / "bridge"
    expected = [str(here)] if here.exists() else [sys.executable, "-m", "bridge.cli"]
    assert command[: len(expected)] == expected
    assert provenance()["bridge_bin"] is None


@pytest.mark.parametrize(("chosen", "arrivals"), [(None, True), ("arrival", True), ("read", False)])
def test_the_receive_stamp_is_chosen_by_variable_and_recorded(
    monkeypatch: pytest.MonkeyPatch, chosen: str | None, arrivals: bool
) -> None:
    if chosen is None:
        monkeypatch.delenv(RECEIVE_STAMP_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(RECEIVE_STAMP_VARIABLE, chosen)
    run = make_call(TurnPlan(call_sid="CA1", turns=1), "ws://127.0.0.1:9/media", 0)
    assert run.caller.options.stamp_arrivals is arrivals
    assert bench_sim_options().stamp_arrivals is arrivals
    assert layout()["receive_stamp"] == ("arrival" if arrivals else "read")


def test_an_unknown_stamp_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RECEIVE_STAMP_VARIABLE, "kernel")
    with pytest.raises(ValueError, match=RECEIVE_STAMP_VARIABLE):
        receive_stamp()
