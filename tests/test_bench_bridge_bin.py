"""``BENCH_BRIDGE_BIN`` runs another build of the bridge under the same load, and says so."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.common.bridge_process import BRIDGE_BIN_VARIABLE, bridge_command
from bench.common.report import provenance


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
