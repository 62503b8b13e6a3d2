"""The chaos bench: seeded random fault schedules against one real call each, in virtual time.

Each schedule (:mod:`bench.chaos.schedule`) is one call over loopback sockets: the real
bridge server, the simulated Realtime upstream and a simulated Twilio caller, with faults
on both sides at random moments. :mod:`bench.chaos.rig` runs it under Trio's virtual clock
and records what happened; :mod:`bench.chaos.invariants` checks it. ``make chaos`` runs
10,000 schedules; ``make test`` runs a few hundred (``tests/test_chaos.py``).
"""
