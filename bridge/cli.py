"""Command line: ``bridge serve | call | demo | sim-upstream``.

Configuration comes from the environment (see the README table). The flags that override a
setting (``--host``, ``--port``, ``--public-url``, ``--fast-barge-in``, ``--log-format``,
``--log-level``) and every other flag's value go through the parsers of
:mod:`bridge.config`, so a bad value gets the same one-line answer wherever it was given.

Exit status: 0 done; 1 ``bridge call`` placed no proper call (it could not connect, the
bridge ended the stream abnormally, or no audio went through); 2 a mistake in the command
line, the environment or the machine's state (a value that is not allowed, a port already
in use, a file that cannot be read or written), reported in one line on stderr; 130
interrupted. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import trio

from bridge.config import (
    FLAGS,
    PORT,
    SETTINGS,
    BridgeConfig,
    ConfigError,
    Float,
    Host,
    Int,
    Parser,
    Url,
    check_together,
    load_config,
    parse_value,
)
from bridge.logs import configure_logging

T = TypeVar("T")

Command = Callable[[], Awaitable[int]]
"""A prepared command: every value already checked, run under ``trio.run``."""

_BY_FLAG: Final = {s.flag: s for s in SETTINGS if s.flag is not None}
_MEDIA_URL: Final = Url(("ws", "wss"))
_OUT_RATE: Final = Int(8000, 48000, "Hz")
_MAX_DURATION: Final = Float(0.1, 3600.0, "seconds")
_NOISE_DBFS: Final = Float(-120.0, 0.0, "dBFS")
_SCRIPTS: Final = "demo, talk, listen or listen:SECONDS"
SIM_DELAY_MS: Final = Float(0.0, 60_000.0, "ms")
SIM_SESSION_MAX_S: Final = Float(1.0, 86_400.0, "seconds")
SIM_REFUSALS: Final = Int(0, 100)
_FAULTS: Final = (
    "comma-separated faults such as close1011@3000, error:CODE@1500 or stall@2500+1000 "
    "(kinds: close, malformed, notype, unknown, error, stall); error@1500,close1011@1500 is "
    "a server error followed by a close"
)
_LISTEN_ERRNOS: Final = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


@dataclass(frozen=True, slots=True)
class _FunctionParser(Parser[T]):
    """A flag's parser made of a function that raises :class:`ValueError` and a phrase
    saying what it accepts."""

    function: Callable[[str], T]
    accepts: str

    @property
    def allowed(self) -> str:
        return self.accepts

    def parse(self, text: str) -> T:
        return self.function(text)


def _add_setting_flag(parser: argparse.ArgumentParser, flag: str) -> None:
    definition = _BY_FLAG[flag]
    parser.add_argument(flag, help=f"overrides {definition.env}: {definition.parser.allowed}")


def _add_logging_flags(parser: argparse.ArgumentParser) -> None:
    _add_setting_flag(parser, "--log-format")
    _add_setting_flag(parser, "--log-level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Trio media bridge between Twilio Media Streams and the OpenAI Realtime API.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bridge (webhook, health, metrics, media)")
    for flag in ("--host", "--port", "--public-url"):
        _add_setting_flag(serve, flag)
    _add_logging_flags(serve)

    call = sub.add_parser("call", help="place a simulated Twilio call against a bridge")
    call.add_argument(
        "--url", required=True, help="media WebSocket, e.g. ws://127.0.0.1:8080/twilio/media"
    )
    call.add_argument("--script", default="talk", help=f"{_SCRIPTS} (default: talk)")
    call.add_argument("--wav-in", type=Path, help="caller audio from a WAV file (any rate)")
    call.add_argument("--out", type=Path, help="write what the caller heard to this WAV")
    call.add_argument(
        "--out-rate", default="8000", help=f"sample rate of --out: {_OUT_RATE.allowed}"
    )
    call.add_argument("--noise-dbfs", help=f"line noise under the caller: {_NOISE_DBFS.allowed}")
    call.add_argument("--auth-token", help="sign the upgrade like Twilio (X-Twilio-Signature)")
    call.add_argument("--signature-url", help="the wss:// URL to sign (default --url)")
    call.add_argument(
        "--max-duration", default="60", help=f"hang up after: {_MAX_DURATION.allowed}"
    )
    call.add_argument(
        "--lose",
        default="",
        help="inbound audio never sent, START_MS:LENGTH_MS[,...] (timestamps go on counting)",
    )
    _add_logging_flags(call)

    demo = sub.add_parser("demo", help="bridge + simulated upstream + simulated caller")
    demo.add_argument("--out", type=Path, default=Path("out/demo-heard.wav"))
    demo.add_argument("--script", default="demo", help=f"{_SCRIPTS} (default: demo)")
    _add_setting_flag(demo, "--fast-barge-in")
    _add_logging_flags(demo)

    sim = sub.add_parser("sim-upstream", help="run the simulated Realtime upstream alone")
    # Its own address, not the bridge's: other names keep them out of the setting flags.
    sim.add_argument("--host", dest="sim_host", default="127.0.0.1")
    sim.add_argument("--port", dest="sim_port", default="9000", help=PORT.allowed)
    sim.add_argument("--fault", default="", help=_FAULTS)
    sim.add_argument(
        "--handshake-delay-ms", default="0", help=f"each handshake waits: {SIM_DELAY_MS.allowed}"
    )
    sim.add_argument(
        "--session-max-s",
        default="",
        help=f"close each session with 1001 at this age, as the service does at 60 minutes: "
        f"{SIM_SESSION_MAX_S.allowed}",
    )
    sim.add_argument(
        "--refuse-reconnects",
        default="0",
        help=f"answer this many handshakes after the first with HTTP 503: {SIM_REFUSALS.allowed}",
    )
    _add_logging_flags(sim)
    return parser


def _setting_flags(args: argparse.Namespace) -> dict[str, str]:
    """The setting flags given on this command line, by flag name."""
    given = {flag: getattr(args, flag[2:].replace("-", "_"), None) for flag in FLAGS}
    return {flag: text for flag, text in given.items() if text is not None}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(os.environ, _setting_flags(args))
        command, listening = _prepare(args, config)
    except ConfigError as exc:
        return _refuse(str(exc))
    configure_logging(fmt=config.log_format, level=config.log_level)
    try:
        return trio.run(command)
    except KeyboardInterrupt:
        return 130
    except (OSError, BaseExceptionGroup) as exc:
        reason = None if listening is None else listen_failure(exc, *listening)
        if reason is None:
            raise
        return _refuse(reason)


def _refuse(reason: str) -> int:
    print(f"bridge: {reason}", file=sys.stderr)
    return 2


def _prepare(
    args: argparse.Namespace, config: BridgeConfig
) -> tuple[Command, tuple[str, int] | None]:
    """The command to run and the address it listens on, every value checked first.

    Raises:
        ConfigError: a flag's value is not allowed, or ``--out`` cannot be written.
    """
    match args.command:
        case "serve":
            check_together(config)
            return _serve(config), (config.host, config.port)
        case "call":
            return _call(args), None
        case "demo":
            return _demo(args, config), None
        case _:
            host = parse_value(Host(), "--host", args.sim_host)
            port = parse_value(PORT, "--port", args.sim_port)
            return _sim_upstream(host, port, args), (host, port)


def listen_failure(error: BaseException, host: str, port: int) -> str | None:
    """The one-line reason when ``error`` (alone, or every exception in its group) is the
    listening socket failing to bind ``host:port``; ``None`` for anything else."""
    leaves = list(_leaves(error))
    failures = [e for e in leaves if isinstance(e, OSError) and _is_listen_error(e)]
    if not failures or len(failures) < len(leaves):
        return None
    first = failures[0]
    if isinstance(first, socket.gaierror):
        return f"cannot listen on {host}: {first.strerror}"
    if first.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use"
    if first.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: not an address of this machine"
    return f"not allowed to listen on port {port} on {host} (ports below 1024 need privileges)"


def _is_listen_error(error: OSError) -> bool:
    return isinstance(error, socket.gaierror) or error.errno in _LISTEN_ERRNOS


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _serve(config: BridgeConfig) -> Command:
    """``bridge serve``; with no key and no upstream URL, on the embedded simulated upstream.

    Only that case imports the simulator: a production bridge never loads it.
    """

    async def serve() -> int:
        from bridge.runtime.server import serve_until_signal

        if not config.uses_embedded_upstream:
            await serve_until_signal(config)
            return 0
        from bridge.logs import log_tagged
        from bridge.sim.upstream import SimUpstream

        log_tagged(
            "INFO",
            "SIM_UPSTREAM",
            "no OPENAI_API_KEY and no OPENAI_REALTIME_URL: starting the embedded simulated "
            "Realtime upstream in-process (no network, no keys)",
        )
        async with trio.open_nursery() as nursery:
            sim_url = await nursery.start(SimUpstream().serve)
            await serve_until_signal(config, upstream_url=sim_url)
            nursery.cancel_scope.cancel()
        return 0

    return serve


def _checked_out(flag: str, path: Path) -> Path:
    """``path`` once it is known to be writable, before a call spends its time.

    Raises:
        ConfigError: its directory cannot be created or the file cannot be written.
    """
    from bridge.sim.caller_options import check_wav_out

    try:
        check_wav_out(path)
    except OSError as exc:
        why = exc.strerror
        if exc.filename not in (None, str(path)):  # a directory on the way: say which
            why = f"{why}: {exc.filename}"
        raise ConfigError(f"{flag}={str(path)!r}: cannot be written ({why})") from None
    return path


def _call(args: argparse.Namespace) -> Command:
    from bridge.audio.wavio import WavFormatError
    from bridge.sim.caller import CallerConnectError, CallerOptions, call_failure, run_call_cli
    from bridge.sim.caller_options import LOST_SPANS_FORM, parse_lost_spans
    from bridge.sim.script import script_from_name

    options = CallerOptions(
        url=parse_value(_MEDIA_URL, "--url", args.url),
        script=parse_value(_FunctionParser(script_from_name, _SCRIPTS), "--script", args.script),
        wav_in=args.wav_in,
        wav_out=None if args.out is None else _checked_out("--out", args.out),
        wav_out_rate=parse_value(_OUT_RATE, "--out-rate", args.out_rate),
        noise_dbfs=(
            None
            if args.noise_dbfs is None
            else parse_value(_NOISE_DBFS, "--noise-dbfs", args.noise_dbfs)
        ),
        auth_token=args.auth_token,
        signature_url=args.signature_url,
        max_duration_s=parse_value(_MAX_DURATION, "--max-duration", args.max_duration),
        lost_inbound_ms=parse_value(
            _FunctionParser(parse_lost_spans, LOST_SPANS_FORM), "--lose", args.lose
        ),
    )

    async def call() -> int:
        try:
            report = await run_call_cli(options)
        except CallerConnectError as exc:
            print(f"bridge call: {exc}", file=sys.stderr)
            return 1
        except (OSError, WavFormatError) as exc:
            if isinstance(exc, OSError) and exc.filename is None:
                raise  # not a file the user named: a bug or the network, shown in full
            print(f"bridge call: {exc}", file=sys.stderr)
            return 2
        if (failure := call_failure(report)) is not None:
            print(f"bridge call: {failure}", file=sys.stderr)
            return 1
        return 0

    return call


def _demo(args: argparse.Namespace, config: BridgeConfig) -> Command:
    from bridge.sim.script import script_from_name

    # run_demo takes the script's name: parsed here only so that a typo is one line.
    parse_value(_FunctionParser(script_from_name, _SCRIPTS), "--script", args.script)
    wav_out = _checked_out("--out", args.out)

    async def demo() -> int:
        from bridge.sim.demo import run_demo

        return await run_demo(config, wav_out, args.script)

    return demo


def _sim_upstream(host: str, port: int, args: argparse.Namespace) -> Command:
    from bridge.sim.upstream import SimUpstreamOptions, run_sim_upstream
    from bridge.sim.upstream_faults import parse_fault_plan

    faults = parse_value(_FunctionParser(parse_fault_plan, _FAULTS), "--fault", args.fault)
    options = SimUpstreamOptions(
        host=host,
        port=port,
        faults=faults,
        handshake_delay_ms=parse_value(
            SIM_DELAY_MS, "--handshake-delay-ms", args.handshake_delay_ms
        ),
        session_max_s=(
            parse_value(SIM_SESSION_MAX_S, "--session-max-s", args.session_max_s)
            if args.session_max_s
            else None
        ),
        refuse_reconnects=parse_value(SIM_REFUSALS, "--refuse-reconnects", args.refuse_reconnects),
    )

    async def sim_upstream() -> int:
        await run_sim_upstream(options)
        return 0

    return sim_upstream


if __name__ == "__main__":
    sys.exit(main())
