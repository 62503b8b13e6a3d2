"""bridge: a Trio media bridge between Twilio Media Streams and the OpenAI Realtime API.

Layout (sans-IO core, thin Trio adapters, as in h11/wsproto/hypercorn):

* :mod:`bridge.core`: protocol parsing and call decisions; plain synchronous code that
  takes events and returns actions. No sockets, no Trio.
* :mod:`bridge.audio`: pure DSP on μ-law frames (codec, levels, VAD, gate, resampling).
* :mod:`bridge.runtime`: the Trio tasks that read, write, pace and supervise a call,
  and the one-port HTTP/WebSocket server.
* :mod:`bridge.sim`: the embedded simulated OpenAI upstream and the simulated caller.
"""

__version__ = "0.1.0"
