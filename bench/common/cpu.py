"""CPU accounting from ``/proc``: per process, the machine's busy time, and per call.

Every figure is CPU time (user + system) in seconds, never wall time. "Other processes"
is the machine's busy time minus ours: anything above a few % of a core there means the
run was measured under someone else's load.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Pid = int | Literal["self"]

OTHER_PROCESSES = "other processes"


def cpu_seconds(pid: Pid = "self") -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # Fields after the command name start at field 3 (state): utime is 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest and guest_nice (fields 9, 10) are already counted in user and nice.
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSample:
    wall_s: float
    """``time.monotonic()`` when taken."""
    cpu_s: dict[str, float]
    """Process label -> CPU seconds so far."""
    machine_busy_s: float


def cpu_snapshot(pids: dict[str, Pid]) -> CpuSample:
    return CpuSample(
        time.monotonic(),
        {label: cpu_seconds(pid) for label, pid in pids.items()},
        machine_busy_seconds(),
    )


def cpu_usage(before: CpuSample, after: CpuSample) -> dict[str, Any]:
    """Per process label, and for other processes: ``{"cpu_s", "pct_of_one_core"}`` over the
    interval; also ``wall_s`` and ``cores``."""
    wall = after.wall_s - before.wall_s

    def entry(used: float) -> dict[str, float | None]:
        pct = round(100.0 * used / wall, 1) if wall > 0 else None
        return {"cpu_s": round(used, 2), "pct_of_one_core": pct}

    usage: dict[str, Any] = {"wall_s": round(wall, 3)}
    ours = 0.0
    for label, start in before.cpu_s.items():
        used = after.cpu_s[label] - start
        ours += used
        usage[label] = entry(used)
    busy = after.machine_busy_s - before.machine_busy_s
    usage[OTHER_PROCESSES] = entry(max(0.0, busy - ours))
    usage["cores"] = os.cpu_count()
    return usage


def processes(usage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-process entries of a :func:`cpu_usage` result (other processes included)."""
    return {label: v for label, v in usage.items() if isinstance(v, dict)}


def cpu_per_call(usage: dict[str, Any], call_s: float) -> dict[str, Any]:
    """CPU per unit of call time, from a :func:`cpu_usage` result and ``call_s``, the calls'
    summed durations in seconds.

    Per process label: ``cpu_ms_per_call_second`` and ``cpu_s_per_call_minute`` (the same
    ratio, in the unit the issue quotes). Other processes are included: their share says how
    much of the machine someone else took, not what a call costs.
    """
    wall_s = float(usage["wall_s"])
    load: dict[str, Any] = {
        "call_seconds": round(call_s, 1),
        "mean_concurrent_calls": round(call_s / wall_s, 1) if wall_s > 0 else None,
    }
    if call_s > 0:
        for label, entry in processes(usage).items():
            per_call_s = float(entry["cpu_s"]) / call_s
            load[label] = {
                "cpu_ms_per_call_second": round(1000.0 * per_call_s, 2),
                "cpu_s_per_call_minute": round(60.0 * per_call_s, 3),
            }
    return load


def describe_cpu(usage: dict[str, Any]) -> str:
    """``bridge 1.2 s (30.0% of a core), ...`` for a :func:`cpu_usage` result."""
    return ", ".join(
        f"{label} {v['cpu_s']:.1f} s ({v['pct_of_one_core']}% of a core)"
        for label, v in processes(usage).items()
    )


def describe_load(load: dict[str, Any]) -> str:
    """One line from a :func:`cpu_per_call` result: call time, concurrency, CPU per call."""
    per_call = [
        f"{label} {v['cpu_ms_per_call_second']} ms/call-s = {v['cpu_s_per_call_minute']} s/call-min"
        for label, v in load.items()
        if isinstance(v, dict)
    ]
    return (
        f"load: {load['call_seconds']} call-seconds, mean {load['mean_concurrent_calls']} calls "
        f"at once; CPU per call: {', '.join(per_call) or '-'}"
    )
