"""The reconnect bench: how fast a call heals when its upstream breaks, and a long call.

Three parts (``python -m bench.reconnect``):

* ``close``: real time, the bridge as its own process, the simulated upstream answering
  each handshake after 200 ms and generating audio in real time. Mid-greeting the session
  is closed with 1011. Measured: from the close to the caller hearing the AI again; the
  comfort cues heard; whether the new session was given what the caller heard and the AI's
  next words resumed from it.
* ``stall``: the same, but the session stops answering (no close). Measured: from the
  stall to the bridge giving it up (a new connection at the sim), and from that to the new
  session confirmed (the bridge's ``UPSTREAM_RESTORED`` gap).
* ``long``: in this process under a virtual clock: one call of two hours with the real
  service's 60-minute session cap in the sim; it must never be cut, and every session
  switch must fall at a turn boundary.
"""
