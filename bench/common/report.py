"""The JSON report every bench writes: its results, under what it ran and from which tree.

A figure is only worth comparing with another run when both say what they measured: the
settings (``config``), the commit and the files that differed from it (a run measures the
working tree, not the commit), the interpreter and the machine.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common.bridge_process import BRIDGE_BIN_VARIABLE


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout if out.returncode == 0 else None


def uncommitted_changes(path: str = ".") -> list[str] | None:
    """Files under ``path`` that differ from HEAD (``None`` outside a git checkout)."""
    out = _git("status", "--porcelain", "--", path)
    return None if out is None else [line[3:] for line in out.splitlines() if line.strip()]


def provenance() -> dict[str, Any]:
    """Commit, uncommitted files (all, and the bridge's alone), the bridge executable when
    another build was named (``BENCH_BRIDGE_BIN``: then the commit is the bench's, not the
    bridge's), Python, platform, CPUs."""
    head = (_git("log", "--oneline", "-1") or "").strip()
    return {
        "git_head": head or None,
        "bridge_bin": os.environ.get(BRIDGE_BIN_VARIABLE) or None,
        "uncommitted_changes": uncommitted_changes(),
        "bridge_uncommitted_changes": uncommitted_changes("bridge"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def command_line(bench: str, argv: Sequence[str] | None) -> str:
    """How the bench was run, as ``python -m bench.<name> <arguments>``."""
    return f"python -m bench.{bench} " + " ".join(sys.argv[1:] if argv is None else argv)


def build_report(
    bench: str,
    argv: Sequence[str] | None,
    config: Mapping[str, Any],
    body: Mapping[str, Any],
    started: float,
) -> dict[str, Any]:
    """``bench``, ``command``, ``config`` (with :func:`provenance` merged in), the bench's own
    keys from ``body``, and ``duration_s`` since ``started`` (a ``time.monotonic`` value)."""
    return {
        "bench": bench,
        "command": command_line(bench, argv),
        "config": {**config, **provenance()},
        **body,
        "duration_s": round(time.monotonic() - started, 1),
    }


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write ``report`` as indented JSON, creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
