"""Barge-in benchmark over real sockets: the bridge as its own process, simulated both ends.

Run from the project root::

    .venv/bin/python -m bench.bargein --out out/bench-bargein.json
    .venv/bin/python -m bench.bargein --scenario single --barge-ins-single 20
    .venv/bin/python -m bench.bargein --fast-barge-in duck

The bridge runs as ``bridge serve --log-format json`` in a child process (its log goes to
``out/bench-bargein-<scenario>.log``); the simulated upstream and callers run in this
process (:mod:`bench.common.scenario`). Scenarios:

* ``single``: calls one at a time, each with up to 10 barge-ins (``--barge-ins-single``
  in total);
* ``concurrent``: ``--calls-concurrent`` callers started within 1.5 s, 1 to 3 barge-ins each;
* ``concurrent-<N>`` for each ``N`` of ``--concurrency-sweep``.

Modules: :mod:`~bench.bargein.plan` (the calls and the simulated model),
:mod:`~bench.bargein.analysis` (the metrics, defined in its docstring),
:mod:`~bench.bargein.output` (the table), :mod:`~bench.bargein.cli` (the command line).
"""
