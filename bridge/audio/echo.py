"""Echo guard: how much inbound power our own outbound audio can explain.

On speakerphones and cheap handsets the caller's line carries back part of what we play,
delayed by the echo path (acoustic plus network, up to a few hundred ms) and attenuated
by the echo return loss (ERL). That echo must not look like the caller starting to talk,
or the fast barge-in path would interrupt the AI with its own voice.

**Model.** Both directions are kept as power envelopes on the caller's time axis (Twilio
media timestamps, ms), in 10 ms bins: the outbound envelope from
:meth:`EchoGuard.note_outbound` (what is played, and when it starts playing), the inbound
one from :meth:`EchoGuard.record`. Echo power at time ``t`` is bounded by
``max over lags d in 0..max_delay_ms of g[d] · out(t - d)``, with one gain ``g[d]`` per
10 ms lag. A max over per-lag gains needs no single delay estimate, and it covers
reverberant echo paths that spread over several lags.

**Estimation.** Every ``update_every_ms``, over the last ``window_ms``, for each lag ``d``
the ratio ``in(t + d) / out(t)`` is formed over the outbound bins that were active
(within ``active_range_db`` of the window's loudest bin) and whose echo falls inside the
window at every lag, so all lags share one set of bins. Where echo of gain ``g``
exists at lag ``d``, that ratio is at least ``g`` at every bin (echo plus noise plus any
caller speech), give or take how the echo path colours each phoneme. At any other lag it
drops low wherever the delayed envelope has a gap the real one does not. A low percentile
of the ratio (``percentile``; not the minimum, which colouring and bins straddling the
echo delay would drag down) therefore tracks the echo gain at each lag: in the tests it
lands between 2 dB under and 3 dB over the true gain, at the true delay. Line noise only
raises it, the conservative direction. Caller speech in double talk raises some ratios
too, but a low percentile ignores them unless the caller talked through most of the
window. The bound is the estimate times a safety factor ``margin_db``, with the gains
capped at 0 dB first.

**Before the first estimate** the guard is conservative: ERL ``prior_erl_db`` (10 dB)
at the worst-case delay, that is, ``0.1 × max(out)`` over the whole 0..max_delay_ms
range, with the same ``margin_db`` on top. The first estimate needs ``min_active_ms`` of
active outbound audio whose echo has arrived at every lag, so it lands 0.8-1.0 s after
the AI first speaks in a call (retried every 100 ms until then). ``bench.vad`` measured
no false onset from echo in that phase; a caller who starts talking during it triggers
the onset only by being louder than the prior bound.

**Failure modes.** Echo delayed by more than ``max_delay_ms`` is not modelled. An echo
path that gets much stronger mid-call (a switch to speakerphone) is under-estimated until
the next update with outbound activity, which is at most ``update_every_ms`` after
``min_active_ms`` of outbound audio has been played. If the caller talks through most of
a window, the bound rises and hides the caller's voice from the fast path (the gate and
the server's own VAD are unaffected). Outbound audio scheduled more than about 40 s ahead
of the inbound stream does not fit the ring and is ignored.

Cost: nothing per inbound frame while no outbound audio lies within ``max_delay_ms``;
otherwise a ring write, a ring read and a (blocks × 42) product and max, about 8 µs per
20 ms frame including :meth:`EchoGuard.note_outbound`. The estimate (a partition of
41 × up to 160 ratios, about 35 µs) runs once per ``update_every_ms`` (1 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.audio import level, mulaw

Float64Array = npt.NDArray[np.float64]

BIN_MS: Final = level.BLOCK_MS
"""Envelope resolution, ms: the same 10 ms grid as the detector's blocks."""
_BIN_SAMPLES: Final = BIN_MS * mulaw.BYTES_PER_MS
_RING_BINS: Final = 4096
"""41 s of history and look-ahead per direction (32 KiB of float64 each)."""
_RING_MASK: Final = _RING_BINS - 1
_RETRY_MS: Final = 100
_RETIRE_BATCH_BINS: Final = 50
_BIN_SHARE_TABLE: Final = level.POWER_TABLE / _BIN_SAMPLES
"""Each μ-law code's share of a 10 ms bin's mean power: a bin's power is one sum of these."""
_MIN_ACTIVE_POWER: Final = level.dbfs_to_power(-60.0)
"""Outbound bins quieter than -60 dBFS cannot produce echo above any line's noise."""


def _banded(gains: Float64Array, n_blocks: int) -> Float64Array:
    """``band[j, j + c] = gains[c]``, zero elsewhere: row ``j`` weighs the envelope bins
    that can echo into block ``j``, so one broadcast product and one max give the bound."""
    n_lags = len(gains)
    band = np.zeros((n_blocks, n_lags + n_blocks - 1))
    for j in range(n_blocks):
        band[j, j : j + n_lags] = gains
    return band


@lru_cache(maxsize=256)
def _bin_starts(offset: int, n_samples: int) -> npt.NDArray[np.intp]:
    """Where each 10 ms bin starts in a payload of ``n_samples`` whose first sample sits
    ``offset`` samples into its bin (playout times are rarely on the bin grid). One entry
    per offset for the usual frame size: at most 80."""
    return np.arange(-offset, n_samples, _BIN_SAMPLES).clip(0)


def time_to_bin(t_ms: float) -> int:
    """Index of the 10 ms bin nearest to ``t_ms`` (Twilio stamps are multiples of 20 ms)."""
    return math.floor(t_ms / BIN_MS + 0.5)


@dataclass(slots=True)
class Envelope:
    """Mean power per 10 ms bin on an absolute bin axis, in a ring of 4096 bins.

    The ring holds the *live* bins ``low .. low + 4095``; :meth:`advance` retires older
    bins by resetting their slots to ``fill``, so a slot never shows another bin's data.
    Reads and writes outside the live range are clipped (writes dropped, reads ``fill``).
    Contiguous ranges map to one or two slices of the ring: no index arrays per frame.
    """

    fill: float
    power: Float64Array = field(default_factory=lambda: np.zeros(0))
    low: int = 0

    def __post_init__(self) -> None:
        self.power = np.full(_RING_BINS, self.fill)

    def advance(self, low: int) -> None:
        """Retire every bin below ``low`` (no-op if ``low`` is not ahead)."""
        if low <= self.low:
            return
        if low - self.low >= _RING_BINS:
            self.power.fill(self.fill)
        else:
            self._assign(self.low, low - self.low, self.fill)
        self.low = low

    def _clip(self, first_bin: int, n_bins: int) -> tuple[int, int]:
        """The live part of ``first_bin .. first_bin + n_bins - 1``, as (first, count)."""
        start = max(first_bin, self.low)
        stop = min(first_bin + n_bins, self.low + _RING_BINS)
        return start, max(stop - start, 0)

    def _assign(self, first_bin: int, n_bins: int, value: float | Float64Array) -> None:
        slot = first_bin & _RING_MASK
        head = min(n_bins, _RING_BINS - slot)
        if isinstance(value, float):
            self.power[slot : slot + head] = value
            self.power[: n_bins - head] = value
        else:
            self.power[slot : slot + head] = value[:head]
            self.power[: n_bins - head] = value[head:n_bins]

    def put(self, first_bin: int, values: Float64Array | list[float], *, accumulate: bool) -> None:
        """Store ``values`` at bins ``first_bin...``; add to what is there if ``accumulate``."""
        n_bins = len(values)
        slot = first_bin & _RING_MASK
        if (
            first_bin >= self.low
            and first_bin + n_bins <= self.low + _RING_BINS
            and slot + n_bins <= _RING_BINS
        ):
            # The per-frame case: one slice of the ring, updated in place.
            if accumulate:
                self.power[slot : slot + n_bins] += values
            else:
                self.power[slot : slot + n_bins] = values
            return
        start, count = self._clip(first_bin, n_bins)
        if count == 0:
            return
        clipped = np.asarray(values[start - first_bin : start - first_bin + count])
        if accumulate:
            clipped = clipped + self.read(start, count)
        self._assign(start, count, clipped)

    def reset(self, first_bin: int, last_bin: int) -> None:
        """Set bins ``first_bin..last_bin`` (inclusive) back to ``fill``."""
        start, count = self._clip(first_bin, last_bin - first_bin + 1)
        if count:
            self._assign(start, count, self.fill)

    def read(self, first_bin: int, n_bins: int) -> Float64Array:
        """Powers of bins ``first_bin .. first_bin + n_bins - 1`` (``fill`` outside the live
        range). May be a view into the ring: use it before the next write."""
        slot = first_bin & _RING_MASK
        inside = first_bin >= self.low and first_bin + n_bins <= self.low + _RING_BINS
        if inside and slot + n_bins <= _RING_BINS:
            return self.power[slot : slot + n_bins]
        out = np.full(n_bins, self.fill)
        start, count = self._clip(first_bin, n_bins)
        if count:
            slot = start & _RING_MASK
            head = min(count, _RING_BINS - slot)
            offset = start - first_bin
            out[offset : offset + head] = self.power[slot : slot + head]
            out[offset + head : offset + count] = self.power[: count - head]
        return out


@dataclass(slots=True)
class EchoGuard:
    """Online bound of the echo power that outbound audio puts on the inbound line.

    Call :meth:`note_outbound` for every μ-law frame played to the caller and
    :meth:`note_cleared` when playback is cut; pass every inbound frame to
    :meth:`record`, then ask :meth:`bound` for the echo bound to judge it by. All times are on the
    caller's axis (ms).
    """

    max_delay_ms: int = 400
    """Longest echo delay modelled, ms (a multiple of 10)."""
    window_ms: int = 2000
    """History each estimate looks at, ms."""
    update_every_ms: int = 1000
    """Re-estimation period once an estimate exists, ms (adaptation to a changed path)."""
    percentile: float = 0.2
    """Rank of the ratio taken as each lag's gain. Measured with ``bench.vad``'s echo and
    double-talk conditions: 0.1 gave a 20 ms shorter p95 onset delay in double talk but,
    at 3 dB of margin, three times the false onsets of 0.2; 0.3 let caller speech inflate
    the bound (double-talk p95 delay 945 ms) and 0.5 missed 7 of 40 caller onsets."""
    min_active_ms: int = 300
    """Active outbound audio needed for an estimate, ms (30 bins: a stable percentile)."""
    active_range_db: float = 20.0
    """Outbound bins within this many dB of the window's loudest count as active."""
    margin_db: float = 6.0
    """Safety factor applied to the estimated gains (and to the prior), dB."""
    prior_erl_db: float = 10.0
    """Echo return loss assumed before the first estimate, dB."""
    outbound: Envelope = field(default_factory=lambda: Envelope(0.0))
    inbound: Envelope = field(default_factory=lambda: Envelope(math.nan))
    """NaN where unknown: a missing inbound bin must not pass for a quiet one."""
    estimated: bool = False
    """True once an estimate replaced the conservative prior."""
    bound_gains: Float64Array = field(default_factory=lambda: np.zeros(0))
    """Echo gain bound per lag in *reverse* order (index 0 = the largest lag), margin included."""
    out_first_bin: int = 0
    out_last_bin: int = -1
    """Range of bins holding outbound audio; empty while ``out_last_bin < out_first_bin``."""
    now_bin: int = 0
    """The latest inbound bin seen: the ring keeps the history the estimate needs before it."""
    next_update_bin: int = 0
    n_lags: int = field(init=False, default=0)
    """Number of 10 ms lags modelled, including lag 0."""
    history_bins: int = field(init=False, default=0)
    """Bins of history the estimate reads behind the latest inbound bin."""
    bands: dict[int, tuple[Float64Array, Float64Array]] = field(default_factory=dict)
    """Per frame size (blocks per frame): ``bound_gains`` laid out for it, and a work array
    of the same shape for the bound's product; rebuilt on each estimate."""

    def __post_init__(self) -> None:
        self.n_lags = self.max_delay_ms // BIN_MS + 1
        self.history_bins = self.window_ms // BIN_MS + self.n_lags + 1
        # The prior gets the same safety margin as an estimate: at 10 dB ERL exactly, a
        # coloured echo still exceeds a margin-less bound on some phonemes.
        prior_db = self.margin_db - self.prior_erl_db
        self.bound_gains = np.full(self.n_lags, 10.0 ** (prior_db / 10.0))

    def _retire_old_bins(self) -> None:
        low = self.now_bin - self.history_bins
        # Retire in batches: resetting two slots per frame costs more than the ring's
        # look-ahead lost by keeping up to half a second of extra history.
        if low - self.outbound.low >= _RETIRE_BATCH_BINS:
            self.outbound.advance(low)
            self.inbound.advance(low)

    def note_outbound(self, payload: bytes, play_start_ms: float) -> None:
        """μ-law ``payload`` starts playing to the caller at ``play_start_ms``."""
        if not payload:
            return
        start_sample = round(play_start_ms * mulaw.BYTES_PER_MS)
        first_bin, offset = divmod(start_sample, _BIN_SAMPLES)
        # numpy here, unlike the inbound side: TX messages are up to 100 ms (800 bytes),
        # ten a second, where a per-byte Python loop would cost more than numpy's calls.
        starts = _bin_starts(offset, len(payload))
        codes = np.frombuffer(payload, dtype=np.uint8)
        powers = np.add.reduceat(_BIN_SHARE_TABLE.take(codes), starts)
        last_bin = first_bin + len(powers) - 1
        if last_bin >= self.outbound.low + _RING_BINS - _RETIRE_BATCH_BINS:
            # The ring has not moved since the line went quiet; catch up before writing.
            self._retire_old_bins()
        self.outbound.put(first_bin, powers, accumulate=True)
        if self.out_last_bin < self.out_first_bin or first_bin < self.out_first_bin:
            self.out_first_bin = first_bin
        self.out_last_bin = max(self.out_last_bin, last_bin)

    def note_cleared(self, at_ms: float) -> None:
        """Playback stopped at ``at_ms``: outbound audio after it is never played.

        The bin in which playback stops is kept whole (a little extra echo bound rather
        than too little).
        """
        first_silent = math.ceil(at_ms / BIN_MS)
        self.outbound.reset(first_silent, self.out_last_bin)
        self.out_last_bin = min(self.out_last_bin, first_silent - 1)

    def record(self, t_ms: float, block_powers: list[float]) -> bool:
        """Take an inbound frame starting at ``t_ms`` (its 10 ms block powers); return
        whether our outbound audio can have put echo on it (then :meth:`bound` says how
        much).

        Returns False, and records nothing, when no outbound audio lies within
        ``max_delay_ms`` before the frame: no echo is possible, and the estimate only
        pairs inbound bins with outbound audio in that range. This is the cheap common
        case. Otherwise the frame joins the inbound envelope, and the estimate is
        refreshed when one is due.
        """
        first = time_to_bin(t_ms)
        self.now_bin = first
        n_blocks = len(block_powers)
        lags = self.n_lags
        if not self._outbound_within(first - lags + 1, first + n_blocks - 1):
            return False
        self._retire_old_bins()
        self.inbound.put(first, block_powers, accumulate=False)
        end = first + n_blocks
        if end >= self.next_update_bin:
            # Until the first estimate lands, retry every 100 ms: the conservative prior
            # hides the caller from the fast path, so it should not last longer than needed.
            period = self.update_every_ms if self.estimated else _RETRY_MS
            self.next_update_bin = end + period // BIN_MS
            window = self.window_ms // BIN_MS
            if self._outbound_within(end - window, end - lags):
                self._estimate(end, window)
        return True

    def bound(self, n_blocks: int) -> list[float]:
        """Upper bound of the echo power in each of the ``n_blocks`` 10 ms blocks of the
        frame last given to :meth:`record`, from the estimate as it stands (zeros where no
        outbound audio lies within ``max_delay_ms`` before a block). Costs a ring read and
        a (blocks × 42) product and max: asked only where the answer can change a
        decision."""
        lags = self.n_lags
        envelope = self.outbound.read(self.now_bin - lags + 1, lags - 1 + n_blocks)
        laid_out = self.bands.get(n_blocks)
        if laid_out is None:
            band = _banded(self.bound_gains, n_blocks)
            laid_out = self.bands[n_blocks] = (band, np.empty_like(band))
        band, work = laid_out
        # ufuncs straight, with no temporaries: ndarray.max goes through a Python wrapper.
        bound: list[float] = np.maximum.reduce(
            np.multiply(envelope, band, out=work), axis=1
        ).tolist()
        return bound

    def _outbound_within(self, first_bin: int, last_bin: int) -> bool:
        """Whether any outbound audio was noted for bins ``first_bin..last_bin``."""
        return (
            self.out_first_bin <= self.out_last_bin
            and self.out_last_bin >= first_bin
            and self.out_first_bin <= last_bin
        )

    def _estimate(self, end: int, window: int) -> None:
        """Per-lag gain bounds from the inbound bins ``end - window .. end - 1``.

        Only outbound bins whose echo lands inside the window at *every* lag are used, so
        all lags see the same set of active bins and one ``np.partition`` rank serves all.
        """
        lags = self.n_lags
        span = window - lags + 1
        outbound = self.outbound.read(end - window, span)
        peak = float(outbound.max())
        if peak < _MIN_ACTIVE_POWER:
            return
        threshold = max(peak * 10.0 ** (-self.active_range_db / 10.0), _MIN_ACTIVE_POWER)
        active = np.flatnonzero(outbound >= threshold)
        if len(active) < self.min_active_ms // BIN_MS:
            return
        inbound = self.inbound.read(end - window, window)
        # ratios[d, a] = in(j_a + d) / out(j_a); unknown inbound bins are NaN, which
        # np.partition sorts last: they never lower the percentile. If the rank lands on
        # one, fmin makes that lag's gain the 0 dB cap.
        echoed = inbound[active[None, :] + np.arange(lags)[:, None]]
        ratios = echoed / outbound[active][None, :]
        rank = int(len(active) * self.percentile)
        gains = np.partition(ratios, rank, axis=1)[:, rank]
        margin = 10.0 ** (self.margin_db / 10.0)
        self.bound_gains = np.ascontiguousarray((np.fmin(gains, 1.0) * margin)[::-1])
        self.bands.clear()
        self.estimated = True
