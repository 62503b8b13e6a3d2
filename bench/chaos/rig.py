"""Run one chaos schedule: a real call over loopback sockets, faults applied on time.

Everything listens on 127.0.0.1 (port 0): the bridge server (:func:`run_bridge`), the
simulated Realtime upstream and the simulated Twilio REST API; the simulated caller is the
Twilio side. Run it under Trio's virtual clock (``MockClock(autojump_threshold=0)``) and a
20-second call takes a fraction of a second.

:func:`run_schedule` returns an :class:`Observation`: what the caller heard and when, every
line the bridge logged for the call (stamped with Trio time), what each upstream session
was given, and what was left over once the call had ended. It raises nothing for a fault
of the bridge: an exception out of the rig is recorded as ``crashed``.
"""

from __future__ import annotations

import gc
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import trio
from loguru import logger

from bench.chaos.schedule import Schedule, UpstreamFault
from bridge.config import BridgeConfig, Secret
from bridge.runtime.http import HttpLimits, serve_http
from bridge.runtime.server import BridgeServer, run_bridge
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.playback import ClearResult, PlayedSegment
from bridge.sim.report import CallerReport, EventKind
from bridge.sim.rest import SimTwilioRest
from bridge.sim.upstream import SimSession, SimUpstream, SimUpstreamOptions

ACCOUNT_SID = "AC00000000000000000000000000000000"
AUTH_TOKEN = "chaos-auth-token"
CONTROL_TOKEN = "chaos-control-token-0123456789abcdef"
"""The control API's bearer token: the notes of a schedule are posted with it."""
END_WAIT_S = 30.0
"""After the caller is gone, the bridge must end the call within this (virtual) time."""


@dataclass(frozen=True, slots=True)
class BridgeLine:
    t: float
    """Trio time of the log call."""
    level: str
    message: str
    extra: dict[str, Any]

    @property
    def tag(self) -> str | None:
        tag = self.extra.get("tag")
        return tag if isinstance(tag, str) else None


@dataclass(slots=True)
class Observation:
    schedule: Schedule
    call_sid: str
    stream_start: float | None = None
    """Trio time the caller's stream started; fault times count from it."""
    report: CallerReport | None = None
    segments: list[PlayedSegment] = field(default_factory=list)
    caller_speech: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) of each caller utterance."""
    clears: list[ClearResult] = field(default_factory=list)
    caller_gone_at: float | None = None
    lines: list[BridgeLine] = field(default_factory=list)
    sessions: list[SimSession] = field(default_factory=list)
    hangup_requests: int = 0
    end_reason: str | None = None
    tasks_left: list[str] = field(default_factory=list)
    live_calls_left: int = 0
    health_status: int | None = None
    sockets_before: frozenset[str] = frozenset()
    sockets_after: frozenset[str] = frozenset()
    crashed: str | None = None
    """The traceback of an exception out of the rig."""
    applied: list[str] = field(default_factory=list)
    """Faults as applied, with the Trio time (what a reader of a violation wants first)."""
    notes: list[tuple[float, int]] = field(default_factory=list)
    """Each note posted and answered: (Trio time of the answer, its HTTP status)."""

    def lines_tagged(self, tag: str) -> list[BridgeLine]:
        return [line for line in self.lines if line.tag == tag]


def live_task_names() -> list[str]:
    """Names of every task alive in this Trio run."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        names.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    if root is not None:  # None only outside a Trio run, where no task is alive
        walk(root)
    return names


def call_tasks_alive(call_sid: str) -> list[str]:
    """The bridge's tasks of call ``call_sid`` still alive (its tasks are named ``…:sid``)."""
    return [name for name in live_task_names() if name.endswith(f":{call_sid}")]


CALL_SOCKET_TABLES: Final = ("tcp", "tcp6", "udp", "udp6", "unix")
"""The kernel's tables (``/proc/net``, Linux) of the sockets a call can own: its TCP
connections and listeners, and Trio's own socket pairs."""


def open_sockets() -> frozenset[str]:
    """The sockets this process holds that a call could own, each as ``socket:[inode]``; Linux.

    Sockets in :data:`CALL_SOCKET_TABLES`, not every descriptor: a library that opens a file
    lazily (once per process, at a moment of its choosing) is no leak of the call's, and
    neither is a netlink socket, which glibc's resolver opens for a moment inside
    ``getaddrinfo`` in a worker thread that a cancelled lookup abandons. A collection runs
    first: a socket that an earlier test in the same process dropped without closing is closed
    by the collector whenever it runs, and must not count as this schedule's. A socket still
    held is not collected, so a real leak still shows, by name."""
    gc.collect()
    owned = frozenset(inode for table in CALL_SOCKET_TABLES for inode in _inodes(table))
    names: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # closed since the listing (the listing's own descriptor)
            continue
        if target.startswith("socket:[") and _inode(target) in owned:
            names.add(target)
    return frozenset(names)


def describe_socket(name: str) -> str:
    """``socket:[inode]`` with its table, and its addresses and TCP state for an IP socket."""
    inode = _inode(name)
    for table in CALL_SOCKET_TABLES:
        for fields in _rows(table):
            if table == "unix":
                if len(fields) > 6 and fields[6] == inode:
                    return f"{name} unix {' '.join(fields[7:])}".rstrip()
            elif len(fields) >= 10 and fields[9] == inode:
                return f"{name} {table} {_ip(fields[1])}->{_ip(fields[2])} st={fields[3]}"
    return name


def _inode(name: str) -> str:
    return name.removeprefix("socket:[").removesuffix("]")


def _inodes(table: str) -> frozenset[str]:
    column = 6 if table == "unix" else 9
    return frozenset(fields[column] for fields in _rows(table) if len(fields) > column)


def _rows(table: str) -> list[list[str]]:
    try:
        with open(f"/proc/net/{table}") as rows:
            return [row.split() for row in rows][1:]
    except OSError:
        return []


def _ip(hex_address: str) -> str:
    host, port = hex_address.split(":")
    if len(host) == 8:
        octets = bytes.fromhex(host)[::-1]
        return f"{'.'.join(str(b) for b in octets)}:{int(port, 16)}"
    return f"[{host}]:{int(port, 16)}"


def bridge_config(schedule: Schedule, upstream_url: str, rest_url: str) -> BridgeConfig:
    return BridgeConfig(
        host="127.0.0.1",
        port=0,
        openai_realtime_url=upstream_url,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=Secret(AUTH_TOKEN),
        twilio_api_base_url=rest_url,
        control_token=Secret(CONTROL_TOKEN),
        session_timeout_s=3.0,
        fast_barge_in=schedule.fast_barge_in,
    )


async def run_schedule(schedule: Schedule) -> Observation:
    """Run ``schedule`` as one call; see the module docstring."""
    observation = Observation(schedule, call_sid=f"CA{schedule.seed:032x}")

    def sink(message: Any) -> None:
        record = message.record
        extra = record["extra"]
        if extra.get("call_sid") not in (observation.call_sid, None):
            return
        observation.lines.append(
            BridgeLine(trio.current_time(), record["level"].name, record["message"], dict(extra))
        )

    sink_id = logger.add(sink, level="INFO")
    observation.sockets_before = open_sockets()
    try:
        async with trio.open_nursery() as nursery:
            await _run_call(nursery, schedule, observation)
            nursery.cancel_scope.cancel()
    except Exception as exc:  # noqa: BLE001 - anything out of the rig is the finding
        observation.crashed = "".join(traceback.format_exception(exc))
    finally:
        logger.remove(sink_id)
    observation.sockets_after = open_sockets()
    return observation


async def _run_call(nursery: trio.Nursery, schedule: Schedule, seen: Observation) -> None:
    rest = SimTwilioRest()
    host, port = await nursery.start(serve_http, rest, "127.0.0.1", 0, HttpLimits())
    rest.url = f"http://{host}:{port}"
    sim = SimUpstream(
        SimUpstreamOptions(
            generation_speed=schedule.generation_speed,
            handshake_delay_ms=schedule.handshake_delay_ms,
            seed=schedule.seed,
        )
    )
    sim_url = await nursery.start(sim.serve)
    server: BridgeServer = await nursery.start(
        run_bridge, bridge_config(schedule, sim_url, rest.url)
    )
    caller = SimCaller(
        CallerOptions(
            url=server.media_url,
            script=schedule.script,
            auth_token=AUTH_TOKEN,
            signature_url=f"wss://{server.host}:{server.port}/twilio/media",
            call_sid=seen.call_sid,
            max_duration_s=schedule.max_duration_s,
            lost_inbound_ms=schedule.lost_inbound_ms,
            jitter_ms=schedule.jitter_ms,
            jitter_seed=schedule.seed,
        )
    )
    base = f"http://{server.host}:{server.port}"
    # Plain HTTP on loopback: no certificates to load (that would be most of a short run).
    bearer = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
    async with httpx.AsyncClient(base_url=base, timeout=5.0, verify=False, headers=bearer) as http:
        async with trio.open_nursery() as call:
            call.start_soon(_apply_faults, schedule, caller, sim, http, seen)
            origin = trio.current_time()  # the report's zero: run() starts at this instant
            seen.report = await caller.run()
            seen.caller_gone_at = trio.current_time()
            handle = await server.registry.wait_for_call(seen.call_sid)
            with trio.move_on_after(END_WAIT_S):
                await handle.ended.wait()
            call.cancel_scope.cancel()
        seen.health_status = (await http.get("/healthz")).status_code
    seen.end_reason = None if handle.end is None else handle.end.reason.value
    seen.caller_speech = _speech_spans(seen.report, origin)
    seen.segments = list(caller.playback.segments())
    seen.clears = list(caller.playback.clears)
    seen.sessions = list(sim.sessions)
    seen.hangup_requests = len(rest.hangups_for(seen.call_sid))
    seen.tasks_left = call_tasks_alive(seen.call_sid)
    seen.live_calls_left = len(server.registry.active())


def _speech_spans(report: CallerReport, origin: float) -> list[tuple[float, float]]:
    starts = [e.t_ms for e in report.timeline if e.kind is EventKind.SPEECH_START]
    ends = [e.t_ms for e in report.timeline if e.kind is EventKind.SPEECH_END]
    ends += [report.duration_ms] * (len(starts) - len(ends))
    return [(origin + a / 1000.0, origin + b / 1000.0) for a, b in zip(starts, ends, strict=True)]


async def _apply_faults(
    schedule: Schedule,
    caller: SimCaller,
    sim: SimUpstream,
    http: httpx.AsyncClient,
    seen: Observation,
) -> None:
    await caller.wait_stream_started()
    t0 = seen.stream_start = trio.current_time()
    timeline: list[tuple[float, str, UpstreamFault | None]] = [
        (f.at_s, f.describe(), f) for f in schedule.upstream_faults
    ]
    timeline += [(t, f"note@{t:.2f}s", None) for t in schedule.notes_at_s]
    if schedule.abort_at_s is not None:
        timeline.append((schedule.abort_at_s, "twilio_abort", None))
    for at_s, what, fault in sorted(timeline, key=lambda entry: entry[0]):
        await trio.sleep_until(t0 + at_s)
        seen.applied.append(f"{trio.current_time() - t0:.3f}s {what}")
        if fault is not None:
            await _apply_upstream_fault(fault, sim)
        elif what == "twilio_abort":
            caller.abort()
        else:
            note = {"text": f"Note at {at_s:.1f} s: the order shipped.", "respond": at_s > 6}
            answer = await http.post(f"/calls/{seen.call_sid}/notes", json=note)
            seen.notes.append((trio.current_time(), answer.status_code))


GARBAGE_SPACING_S = 0.01


async def _apply_upstream_fault(fault: UpstreamFault, sim: SimUpstream) -> None:
    """Apply ``fault`` to the current session (a refusal: to the next handshakes). A fault
    that finds the session already closed does nothing: the bridge is healing it."""
    if fault.kind == "refuse":
        sim.refuse_next(fault.count, fault.status)
        return
    if not sim.sessions:
        return
    session = sim.sessions[-1]
    if session.closed.is_set():
        return
    match fault.kind:
        case "close":
            session.close(fault.close_code)
        case "stall":
            session.stall(None if fault.stall_s is None else round(fault.stall_s * 1000))
        case "garbage":
            for i in range(fault.count):
                if session.closed.is_set():
                    return
                session.send_malformed(no_type=i % 2 == 1)
                await trio.sleep(GARBAGE_SPACING_S)
            if fault.then_close and not session.closed.is_set():
                session.close(1011)
        case "error_close":
            session.send_error("server_error", "The server had an error.")
            session.close(1011)
