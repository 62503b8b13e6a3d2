"""The soft cue a caller hears while the upstream heals, after the hold phrase.

One hold phrase per outage is enough words; if healing takes longer, silence would make the
caller think the line is dead, and more words would nag. The cue is a short, quiet two-note
chime (B4 and F#5, a fifth apart, like a "working on it" sound): 180 ms at about -30 dBFS
with raised-cosine edges, so it never clicks. 8 kHz μ-law, 8 bytes per ms.
"""

from __future__ import annotations

import numpy as np

from bridge.audio import mulaw

CUE_MS = 180
CUE_LEVEL = 10 ** (-30 / 20)
"""Peak amplitude (full scale 1.0) of each partial: about -30 dBFS together."""
_PARTIALS_HZ = (493.88, 739.99)
_EDGE_MS = 40


def comfort_cue() -> bytes:
    """The cue as μ-law bytes (:data:`CUE_MS` ms)."""
    n = CUE_MS * mulaw.SAMPLE_RATE // 1000
    t = np.arange(n) / mulaw.SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * f * t) for f in _PARTIALS_HZ) * (CUE_LEVEL / len(_PARTIALS_HZ))
    edge = _EDGE_MS * mulaw.SAMPLE_RATE // 1000
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    envelope = np.ones(n)
    envelope[:edge], envelope[-edge:] = ramp, ramp[::-1]
    return mulaw.encode_float((tone * envelope).astype(np.float32))
