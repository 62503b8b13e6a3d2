"""Turn-path benchmark: ordinary conversation turns over real sockets, no barge-in.

Run from the project root::

    .venv/bin/python -m bench.turn --out out/bench-turn.json
    .venv/bin/python -m bench.turn --turns-single 10 --concurrency-sweep 5 --gate on

Same process layout as :mod:`bench.bargein` (:mod:`bench.common.scenario`): the bridge as
``bridge serve`` in a child process, the simulated upstream and callers here. The simulated
model answers after the session's ``silence_duration_ms`` of quiet input audio and streams
100 ms deltas at real time (:mod:`bench.turn.plan`). Scenarios, each once per gate mode
(``--gate``; ``BRIDGE_AUDIO_GATE=on`` and ``off``, the off one named ``<name>-gate-off``):

* ``single``: calls one at a time, 10 turns each (``--turns-single`` in total);
* ``concurrent-<N>`` for each ``N`` of ``--concurrency-sweep`` (10, 20, 40):
  ``N`` calls of ``--turns-per-call`` turns, started over 4 s.

The metrics (turn latency, turn-window inbound latency, first reply audio, audio never
forwarded at stop, CPU per call-minute) are defined in :mod:`bench.turn.analysis`.
"""
