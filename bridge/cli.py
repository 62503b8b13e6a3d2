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

from bridge.config import BridgeConfig, ConfigError, load_config
from bridge.logs import configure_logging


def _common_logging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("text", "json"), help="BRIDGE_LOG_FORMAT")
    parser.add_argument("--log-level", help="BRIDGE_LOG_LEVEL (DEBUG, INFO, WARNING)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Trio media bridge between Twilio Media Streams and the OpenAI Realtime API.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bridge (webhook, health, metrics, media)")
    serve.add_argument("--host", help="BRIDGE_HOST (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="BRIDGE_PORT (default 8080)")
    serve.add_argument("--public-url", help="BRIDGE_PUBLIC_URL, e.g. https://bridge.example.com")
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
    demo.add_argument("--fast-barge-in", choices=("off", "duck"), help="BRIDGE_FAST_BARGE_IN")
    _common_logging(demo)

    sim = sub.add_parser("sim-upstream", help="run the simulated Realtime upstream alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9000)
    sim.add_argument("--fault", default="", help="e.g. close1011@3000,stall@5000")
    _common_logging(sim)
    return parser


def _config(args: argparse.Namespace) -> BridgeConfig:
    config = load_config(os.environ)
    return config.with_overrides(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        public_url=getattr(args, "public_url", None),
        log_format=args.log_format,
        log_level=args.log_level,
        fast_barge_in=getattr(args, "fast_barge_in", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=config.log_format, level=config.log_level)
    try:
        match args.command:
            case "serve":
                trio.run(_serve, config)
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


async def _serve(config: BridgeConfig) -> None:
    """``bridge serve``; with no key and no upstream URL, on the embedded simulated upstream.

    Only this branch imports the simulator: a production bridge never loads it.
    """
    from bridge.runtime.server import serve_until_signal

    if not config.uses_embedded_upstream:
        await serve_until_signal(config)
        return
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
    await run_sim_upstream(SimUpstreamOptions(host=args.host, port=args.port, faults=faults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
