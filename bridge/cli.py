"""Command line: ``bridge serve | call | demo | sim-upstream``.

Configuration comes from the environment (see the README table); flags override it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from bridge.config import FLAGS, SETTINGS, BridgeConfig, ConfigError, load_config
from bridge.logs import configure_logging

_BY_FLAG = {s.flag: s for s in SETTINGS if s.flag is not None}


def _add_setting_flag(parser: argparse.ArgumentParser, flag: str) -> None:
    definition = _BY_FLAG[flag]
    parser.add_argument(flag, help=f"overrides {definition.env}: {definition.parser.allowed}")


def _common_logging(parser: argparse.ArgumentParser) -> None:
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
    _common_logging(serve)

    call = sub.add_parser("call", help="place a simulated Twilio call against a bridge")
    call.add_argument(
        "--url", required=True, help="media WebSocket, e.g. ws://127.0.0.1:8080/twilio/media"
    )
    call.add_argument("--script", default="talk", help="demo | talk | listen[:seconds]")
    call.add_argument("--wav-in", type=Path, help="caller audio from a WAV file (any rate)")
    call.add_argument("--out", type=Path, help="write what the caller heard to this WAV")
    call.add_argument("--out-rate", type=int, default=8000, help="sample rate of --out (Hz)")
    call.add_argument("--noise-dbfs", type=float, help="line noise under the caller (dBFS)")
    call.add_argument("--auth-token", help="sign the upgrade like Twilio (X-Twilio-Signature)")
    call.add_argument("--signature-url", help="the wss:// URL to sign (default --url)")
    call.add_argument("--max-duration", type=float, default=60.0, help="hang up after (s)")
    call.add_argument(
        "--lose",
        default="",
        help="inbound audio never sent, START_MS:LENGTH_MS[,...] (timestamps go on counting)",
    )
    _common_logging(call)

    demo = sub.add_parser("demo", help="bridge + simulated upstream + simulated caller")
    demo.add_argument("--out", type=Path, default=Path("out/demo-heard.wav"))
    demo.add_argument("--script", default="demo", help="caller script (default: demo)")
    _add_setting_flag(demo, "--fast-barge-in")
    _common_logging(demo)

    sim = sub.add_parser("sim-upstream", help="run the simulated Realtime upstream alone")
    # Its own address, not the bridge's: other names keep them out of the setting flags.
    sim.add_argument("--host", dest="sim_host", default="127.0.0.1")
    sim.add_argument("--port", dest="sim_port", type=int, default=9000)
    sim.add_argument("--fault", default="", help="e.g. close1011@3000,stall@5000")
    _common_logging(sim)
    return parser


def _config(args: argparse.Namespace) -> BridgeConfig:
    """The environment's configuration, overridden by the setting flags given."""
    given = {flag: getattr(args, flag[2:].replace("-", "_"), None) for flag in FLAGS}
    return load_config(os.environ, {flag: text for flag, text in given.items() if text})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=config.log_format, level=config.log_level)
    try:
        match args.command:
            case "serve":
                from bridge.runtime.server import serve_until_signal

                trio.run(serve_until_signal, config)
            case "call":
                return trio.run(_call, args)
            case "demo":
                from bridge.sim.demo import run_demo

                return trio.run(run_demo, config, args.out, args.script)
            case "sim-upstream":
                return trio.run(_sim_upstream, args)
    except KeyboardInterrupt:
        return 130
    return 0


async def _call(args: argparse.Namespace) -> int:
    from bridge.sim.caller import CallerConnectError, CallerOptions, run_call_cli
    from bridge.sim.caller_options import parse_lost_spans
    from bridge.sim.script import script_from_name

    try:
        options = CallerOptions(
            url=args.url,
            script=script_from_name(args.script),
            wav_in=args.wav_in,
            wav_out=args.out,
            wav_out_rate=args.out_rate,
            noise_dbfs=args.noise_dbfs,
            auth_token=args.auth_token,
            signature_url=args.signature_url,
            max_duration_s=args.max_duration,
            lost_inbound_ms=parse_lost_spans(args.lose),
        )
        await run_call_cli(options)
    except (ValueError, CallerConnectError) as exc:
        print(f"bridge call: {exc}", file=sys.stderr)
        return 1
    return 0


async def _sim_upstream(args: argparse.Namespace) -> int:
    from bridge.sim.upstream import SimUpstreamOptions, run_sim_upstream
    from bridge.sim.upstream_faults import parse_fault_plan

    try:
        faults = parse_fault_plan(args.fault)
    except ValueError as exc:
        print(f"bridge sim-upstream: {exc}", file=sys.stderr)
        return 2
    await run_sim_upstream(
        SimUpstreamOptions(host=args.sim_host, port=args.sim_port, faults=faults)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
