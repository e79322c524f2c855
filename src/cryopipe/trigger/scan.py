"""Stream trigger: threshold search on the filtered stream, merging, noise triggers, records, live time.

Trigger rule (per channel, on p = polarity x filtered stream, threshold u in V):
- candidates: every excursion (maximal run of samples with p > u) gives one candidate, its first
  maximum (sample and value); the threshold acts on the signed value, never on |y|, so negative
  lobes of large pulses never fire;
- selection: candidates are taken in descending order of value (ties: the earlier first); one is
  accepted unless an accepted trigger lies closer than ``holdoff`` samples (either side), or, with
  a side-lobe envelope r (:func:`side_lobe_envelope`), a larger candidate j (accepted or not: a
  pulse that lost its trigger to a larger one nearby still has side lobes) explains it as a side
  lobe of j's pulse: v_i - u <= margin x v_j x r(t_i - t_j).
So a pulse gets its trigger at the filter's maximum, wherever its filter output first crosses the
threshold; noise dips inside a large excursion, the shoulders of the main lobe and the far side
lobes of the optimum filter (seen up to the kernel's look-ahead before a pulse, ~0.5 s for 16384
samples at 25 kHz) never take a pulse's trigger nor block it. (The earlier rule -- first upcrossing
arms a hold-off window, dead time from the upcrossing -- fired on side lobes and then, with the
dead time or the merge of the channels, lost the pulse behind them.)
The scan visits only samples above threshold (numba) and carries an open excursion across chunks,
and the selection sees all candidates, so the result does not depend on the chunk size.

Channels are merged earliest first (:func:`merge_triggers`), after dropping every trigger less
significant (value over its channel's threshold) than a tenth of one within ``holdoff``.

Live time: stream duration minus the union of [t, t + holdoff) over accepted (merged) trigger
samples t, clipped to the stream.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from numba import njit

from cryopipe.errors import CryopipeError, InputError
from cryopipe.trigger.filters import filtered_segments, has_flat_run
from cryopipe.io.stores import provenance

# scan state: integer slots
_OPEN, _BEST_INDEX, _LAST_ABOVE = range(3)

SIDE_LOBE_MARGIN = 2.0
"""Side lobes up to this many times the template's response envelope are taken for lobes (a
measured SEV and a pulse's noise make real lobes differ from the template's)."""

SATURATION_LEVELS = (1.0, 2.0, 5.0, 20.0, 100.0)
"""Heights (in units of the clip level) of the clipped templates whose responses make the side-lobe
envelope: a saturated pulse has other side lobes than the template."""


@njit(cache=True)
def _excursion_maxima(idx, vals, chunk_end, state, best, out_t, out_v):
    """Maximum of each excursion above threshold among the above-threshold samples ``idx`` of one
    chunk (absolute indices, sorted). ``state`` (int64[3]) and ``best`` (float64[1]) carry an
    excursion still open at the chunk's end; finished ones go to ``out_t``/``out_v``. Returns
    their number."""
    n_out = 0
    for j in range(idx.size):
        i = idx[j]
        v = vals[j]
        if state[_OPEN] == 1 and i == state[_LAST_ABOVE] + 1:
            if v > best[0]:
                best[0] = v
                state[_BEST_INDEX] = i
            state[_LAST_ABOVE] = i
            continue
        if state[_OPEN] == 1:
            out_t[n_out] = state[_BEST_INDEX]
            out_v[n_out] = best[0]
            n_out += 1
        state[_OPEN] = 1
        state[_BEST_INDEX] = i
        state[_LAST_ABOVE] = i
        best[0] = v
    if state[_OPEN] == 1 and state[_LAST_ABOVE] < chunk_end - 1:   # ended inside this chunk
        out_t[n_out] = state[_BEST_INDEX]
        out_v[n_out] = best[0]
        n_out += 1
        state[_OPEN] = 0
    return n_out


@njit(cache=True)
def _select(samples, values, order, holdoff, threshold, env, env_sat, saturated, env_first, margin, reach_before,
            reach_after):
    """Greedy selection (module docstring): ``order`` visits the candidates by descending value;
    ``samples`` sorted. env[k] / env_sat[k] is the envelope of a plain / saturated pulse at lag
    env_first + k (t_i - t_j); empty: none. The hold-off test sees the accepted triggers, the
    side-lobe test every larger candidate (a pulse that lost its trigger to a larger one nearby
    still has its side lobes)."""
    n = samples.size
    accepted = np.zeros(n, dtype=np.bool_)
    visited = np.zeros(n, dtype=np.bool_)
    n_env = env.size
    for i in order:
        t = samples[i]
        lo = np.searchsorted(samples, t - max(holdoff, reach_after) + 1)
        hi = np.searchsorted(samples, t + max(holdoff, reach_before))
        ok = True
        for j in range(lo, hi):
            if not visited[j]:
                continue
            lag = t - samples[j]
            if accepted[j] and abs(lag) < holdoff:
                ok = False
                break
            k = lag - env_first
            if n_env > 0 and 0 <= k < n_env:
                r = env_sat[k] if saturated[j] else env[k]
                if values[i] - threshold <= margin * values[j] * r:
                    ok = False
                    break
        accepted[i] = ok
        visited[i] = True
    return accepted


def select_triggers(samples, values, holdoff: int, *, threshold: float = 0.0, envelope=None,
                    margin: float = SIDE_LOBE_MARGIN, saturated=None, saturated_envelope=None) -> np.ndarray:
    """Mask of the accepted candidates (module docstring: by descending value, none closer than
    ``holdoff`` samples to a larger one, none a side lobe of a larger one).

    Parameters
    ----------
    samples : candidate samples (sorted)
    values : their filtered values (V; or significances, unitless)
    holdoff : samples
    threshold : V, subtracted from a candidate's value in the side-lobe test
    envelope : (first_lag, env) from :func:`side_lobe_envelope`, or None (hold-off only)
    margin : side lobes up to margin x the envelope count as lobes
    saturated : bool per candidate: a saturated pulse, whose side lobes follow `saturated_envelope`
        (same first lag and length as `envelope`) instead
    """
    samples = np.asarray(samples, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if samples.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((samples, -values)).astype(np.int64)
    if envelope is None:
        first, env = 0, np.zeros(0)
    else:
        first, env = int(envelope[0]), np.asarray(envelope[1], dtype=np.float64)
    env_sat = env
    if saturated_envelope is not None:
        if int(saturated_envelope[0]) != first or len(saturated_envelope[1]) != env.size:
            raise InputError("select_triggers: the saturated envelope must cover the lags of the envelope")
        env_sat = np.asarray(saturated_envelope[1], dtype=np.float64)
    sat = np.zeros(samples.size, np.bool_) if saturated is None else np.asarray(saturated, dtype=np.bool_)
    before = max(-first, 0)
    after = max(first + env.size, 0)
    return _select(samples, values, order, int(holdoff), float(threshold), env, env_sat, sat, first, float(margin),
                   before, after)


def saturated_candidates(stream, channel: int, samples, values, threshold: float, window: int,
                         *, min_ratio: float = 20.0) -> np.ndarray:
    """Mask of the candidates whose pulse is saturated or clipped: a run of MIN_FLAT_RUN identical
    raw samples (:func:`cryopipe.trigger.filters.has_flat_run`) in [t - window, t + 4 window). Only
    candidates above `min_ratio` x `threshold` are read (a pulse that small is not saturated)."""
    samples = np.asarray(samples, dtype=np.int64)
    out = np.zeros(samples.size, dtype=bool)
    big = np.flatnonzero(np.asarray(values) > min_ratio * threshold)
    for i in big:
        lo = max(int(samples[i]) - window, 0)
        hi = min(int(samples[i]) + 4 * window, stream.n_samples)
        if hi > lo:
            out[i] = bool(has_flat_run(stream.read(lo, hi, [channel])[0]))
    return out


def side_lobe_envelope(kernel, anchor, template, onset: int, *, width: int | None = None,
                       levels=SATURATION_LEVELS, saturated_template=None) -> tuple[int, np.ndarray]:
    """Envelope of the filter's response to a pulse, relative to its maximum, against the lag of
    a sample from the pulse's trigger (the response maximum).

    The stream filter (kernel, anchor) is applied to the template and to the template clipped at
    1/L of its height for every L in `levels` (saturated pulses), each placed alone in a zero
    stream and scaled so that its response maximum is 1; the envelope is the largest |response| of
    any of them within +-`width` samples (trigger jitter), at lags from -(kernel look-ahead) to
    anchor + template length. Lags closer to the maximum than its main lobe are left to the hold-off.

    Parameters
    ----------
    kernel, anchor : stream filter (``cryopipe.trigger.filters``)
    template : pulse shape (max 1), onset at sample `onset`
    onset : samples
    width : samples (default max(8, len(kernel) // 64))
    saturated_template : noise-free shape (max 1, same onset) clipped for the saturated responses,
        e.g. a pulse-model fit of a measured template (default `template`, zero before its onset)

    Returns
    -------
    first_lag : int, lag of env[0] (samples, negative: before the trigger)
    env : float64 (n,), relative response envelope (1 at lag 0)
    """
    from scipy.ndimage import maximum_filter1d

    from cryopipe.trigger.filters import check_kernel, filter_block

    k, anchor = check_kernel(kernel, anchor)
    tpl = np.asarray(template, dtype=np.float64)
    if tpl.ndim != 1 or not np.all(np.isfinite(tpl)) or not tpl.max() > 0:
        raise InputError("side-lobe envelope: the template must be a finite 1-d pulse with a positive maximum")
    width = max(8, k.size // 64) if width is None else int(width)
    onset = int(onset)
    if not 0 <= onset < tpl.size:
        raise InputError(f"side-lobe envelope: onset {onset} is not a sample of the {tpl.size}-sample template")
    ahead = k.size - 1 - anchor                      # the kernel's look-ahead (samples)
    pad = max(ahead + width + 1, onset)
    x = np.zeros(pad - onset + tpl.size + anchor + width + 1)
    first = -(ahead + width)
    env = np.zeros(tpl.size - onset + anchor + 2 * width + ahead + 1)
    sat = np.asarray(tpl if saturated_template is None else saturated_template, dtype=np.float64).copy()
    if sat.shape != tpl.shape or not np.all(np.isfinite(sat)) or not sat.max() > 0:
        raise InputError("side-lobe envelope: the saturated template must be a finite pulse shaped like the template")
    sat[:onset] = 0.0
    sat /= sat.max()
    for level in (None, *levels):
        shape = tpl / tpl.max() if level is None else np.minimum(sat * level, 1.0)
        x[:] = 0.0
        x[pad - onset: pad - onset + tpl.size] = shape
        y = filter_block(x, k, anchor)
        peak = int(np.argmax(y))
        if not y[peak] > 0:
            continue
        idx = np.arange(y.size) - peak - first
        ok = (idx >= 0) & (idx < env.size)
        np.maximum.at(env, idx[ok], np.abs(y[ok]) / y[peak])
    return first, maximum_filter1d(env, 2 * width + 1)


def scan_channel(stream, channel, kernel, anchor, threshold, holdoff, *, polarity=1, chunk_size=2**20,
                 start=0, stop=None, workers: int | None = None, envelope=None,
                 margin: float = SIDE_LOBE_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """Trigger one channel of a stream on its filtered values (see module docstring).

    Parameters
    ----------
    stream : CsmplStream
    channel : channel index
    kernel, anchor : filter kernel (e.g. :func:`cryopipe.trigger.filters.matched_kernel`) and anchor
    threshold : V, on polarity x filtered value (e.g. k_sigma x filtered_noise_sigma)
    holdoff : samples; no two triggers closer (the larger wins)
    polarity : +1 for positive pulses, -1 for negative ones
    chunk_size : owned samples per filtered chunk (rounded up to whole FFT segments); the result
        does not depend on it
    start, stop : sample range to scan; the filter sees the stream beyond it, the scan does not
        (an excursion cut at ``stop`` keeps its maximum so far)
    workers : scipy.fft threads (default: all usable cores)
    envelope, margin : side-lobe envelope (:func:`side_lobe_envelope`) and its margin; None: no
        side-lobe test

    Returns
    -------
    samples : int64 trigger samples (sorted)
    amplitudes : float64 polarity x filtered value at them (V)
    """
    samples, amplitudes = scan_candidates(stream, channel, kernel, anchor, threshold, polarity=polarity,
                                          chunk_size=chunk_size,
                                          start=start, stop=stop, workers=workers)
    if int(holdoff) != holdoff or holdoff < 1:
        raise InputError(f"holdoff must be a positive integer number of samples, got {holdoff}")
    keep = select_triggers(samples, amplitudes, int(holdoff), threshold=float(threshold), envelope=envelope,
                           margin=margin)
    return samples[keep], amplitudes[keep]


def scan_candidates(stream, channel, kernel, anchor, threshold, *, polarity=1, chunk_size=2**20, start=0,
                    stop=None, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maximum (sample, polarity x filtered value in V) of every excursion above `threshold` in
    [start, stop) (see :func:`scan_channel`)."""
    if polarity not in (1, -1):
        raise InputError(f"polarity must be +1 or -1, got {polarity}")
    if not np.isfinite(threshold):
        raise InputError(f"threshold must be finite, got {threshold}")
    state = np.array([0, start, start - 2], dtype=np.int64)
    best = np.zeros(1)
    samples, amplitudes = [], []
    thr = np.float32(threshold * polarity)
    for a, n, rows in filtered_segments(stream, channel, kernel, anchor, chunk_size=chunk_size, start=start, stop=stop,
                                        workers=workers):
        mask = rows > thr if polarity == 1 else rows < thr
        above = np.flatnonzero(mask)
        above = above[above < n]            # the last row may run past the chunk
        vals = rows[above // rows.shape[1], above % rows.shape[1]]
        if polarity == -1:
            vals = -vals
        out_t = np.empty(above.size + 1, np.int64)
        out_v = np.empty(above.size + 1)
        k = _excursion_maxima(above + a, vals, a + n, state, best, out_t, out_v)
        samples.append(out_t[:k])
        amplitudes.append(out_v[:k])
    if state[_OPEN] == 1:  # an excursion cut by the end of the scanned range
        samples.append(state[_BEST_INDEX : _BEST_INDEX + 1].copy())
        amplitudes.append(best.copy())
    if not samples:
        return np.empty(0, np.int64), np.empty(0)
    return np.concatenate(samples), np.concatenate(amplitudes)


@njit(cache=True)
def _accept_sequential(samples, holdoff):
    keep = np.zeros(samples.size, dtype=np.bool_)
    last = 0
    for j in range(samples.size):
        if j == 0 or samples[j] - last >= holdoff:
            keep[j] = True
            last = samples[j]
    return keep


MERGE_WEAK_FRACTION = 0.1
"""In the channel merge, a trigger less significant than this fraction of one within the hold-off
is no trigger of its own (a shoulder, side lobe or noise next to a pulse)."""


@njit(cache=True)
def _strong_enough(samples, values, holdoff, fraction):
    """Mask: values[i] >= fraction x the largest value within holdoff samples (samples sorted)."""
    n = samples.size
    keep = np.ones(n, dtype=np.bool_)
    lo = 0
    hi = 0
    for i in range(n):
        while samples[lo] <= samples[i] - holdoff:
            lo += 1
        while hi < n and samples[hi] < samples[i] + holdoff:
            hi += 1
        big = values[lo]
        for j in range(lo + 1, hi):
            if values[j] > big:
                big = values[j]
        keep[i] = values[i] >= fraction * big
    return keep


def merge_triggers(per_channel: list[np.ndarray], holdoff: int, *, significance: list[np.ndarray] | None = None,
                   weak_fraction: float = MERGE_WEAK_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-channel trigger samples into module triggers (a trigger records all channels).

    Triggers are taken earliest first (ties: lowest channel); one within ``holdoff`` samples after
    an accepted trigger is dropped. With `significance` (per channel, one value per trigger, e.g.
    filtered value over the channel's threshold), a trigger less significant than `weak_fraction`
    of another one closer than ``holdoff`` samples (either side, any channel) is dropped first: a
    weak early trigger of one channel (a side lobe, a shoulder, noise) never takes the record of a
    pulse that another channel sees clearly, while an artifact of one channel (a SQUID jump, far
    more significant) does not take the trigger of a pulse that starts before it.

    Returns
    -------
    samples : int64 accepted trigger samples (sorted)
    channel : int64 index of the channel that fired each
    """
    if holdoff < 0:
        raise InputError(f"holdoff must be >= 0 samples, got {holdoff}")
    arrays = [np.asarray(p, dtype=np.int64).ravel() for p in per_channel]
    if not arrays:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    samples = np.concatenate(arrays)
    channel = np.repeat(np.arange(len(arrays), dtype=np.int64), [a.size for a in arrays])
    order = np.lexsort((channel, samples))
    samples, channel = samples[order], channel[order]
    if significance is not None:
        sig = [np.asarray(v, dtype=np.float64).ravel() for v in significance]
        if [v.size for v in sig] != [a.size for a in arrays]:
            raise InputError("merge_triggers: one significance per trigger and channel needed")
        values = np.concatenate(sig)[order]
        strong = _strong_enough(samples, values, max(int(holdoff), 1), float(weak_fraction))
        samples, channel = samples[strong], channel[strong]
    keep = _accept_sequential(samples, int(holdoff))
    return samples[keep], channel[keep]


def valid_windows(samples, n_samples, record_length) -> np.ndarray:
    """Mask of triggers whose record window [t - N//4, t - N//4 + N) lies inside the stream."""
    first = np.asarray(samples, dtype=np.int64) - record_length // 4
    return (first >= 0) & (first + record_length <= n_samples)


def _within(lo: np.ndarray, hi: np.ndarray, allowed) -> tuple[np.ndarray, np.ndarray]:
    """The parts of the sorted, disjoint intervals [lo, hi) inside the sorted `allowed` intervals."""
    out_lo, out_hi = [], []
    for a, b in allowed:
        i, j = np.searchsorted(hi, a, side="right"), np.searchsorted(lo, b, side="left")
        out_lo.append(np.maximum(lo[i:j], a))
        out_hi.append(np.minimum(hi[i:j], b))
    if not out_lo:
        return lo[:0], hi[:0]
    return np.concatenate(out_lo), np.concatenate(out_hi)


def live_time(samples: np.ndarray, holdoff: int, n_samples: int, sample_frequency: float,
              *, excluded: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Live time (s): stream duration minus the dead time after accepted triggers.

    Dead time is the union of [t, t + holdoff) over trigger samples t and of the `excluded`
    intervals [start, stop) (e.g. around test pulses), clipped to [0, n_samples); overlapping
    intervals count once.
    """
    t = np.asarray(samples, dtype=np.int64)
    lo, hi = t, t + holdoff
    if excluded is not None:
        lo = np.concatenate([lo, np.asarray(excluded[0], np.int64)])
        hi = np.concatenate([hi, np.asarray(excluded[1], np.int64)])
    order = np.argsort(lo, kind="stable")
    lo = np.clip(lo[order], 0, n_samples)
    hi = np.clip(hi[order], 0, n_samples)
    covered = np.maximum.accumulate(hi)
    prev_end = np.concatenate([[0], covered[:-1]])
    dead = np.clip(hi - np.maximum(lo, prev_end), 0, None).sum()
    return float((n_samples - dead) / sample_frequency)


def noise_trigger_samples(n: int, particle: np.ndarray, n_samples: int, record_length: int, rng,
                          *, scanned=None) -> np.ndarray:
    """Random (noise) trigger samples whose records hold no pulse and do not overlap each other.

    A noise record [t - N/4, t + 3N/4) must neither contain a particle trigger p, nor end less than
    N/32 before it (a trigger sits a little after its pulse's onset: the record would end inside
    the rise), nor start within one record length after it (its tail): t <= p - 3N/4 - N/32 or
    t >= p + 5N/4 for every p. The allowed
    stretches are cut into slots of N samples; ``n`` slots are drawn at random (each stretch's slot
    grid shifted by a random offset), so the records are distinct stretches of noise: overlapping
    noise records would make the noise power spectrum an average of one realisation. Where fewer
    than ``n`` slots fit, all of them are returned (the caller reports it). Reproducible for a seed.

    Parameters
    ----------
    n : number of noise triggers wanted
    particle : trigger samples of pulses (particle triggers, test pulses)
    n_samples : stream length (samples)
    record_length : N (samples)
    rng : numpy Generator or seed
    scanned : [[start, stop], ...] sorted stretches of the stream whose pulses are known (a sampled
        first pass); noise records lie wholly inside them. None: the whole stream.

    Returns
    -------
    int64 sorted trigger samples, at most ``n``.
    """
    if n < 0:
        raise InputError(f"number of noise triggers must be >= 0, got {n}")
    rng = np.random.default_rng(rng)
    N = int(record_length)
    lo_all = N // 4                                   # first valid trigger sample
    hi_all = n_samples - N + N // 4 + 1               # one past the last
    p = np.unique(np.asarray(particle, dtype=np.int64))
    # forbidden (p - 3N/4 - N/32, p + 5N/4), merged; allowed = gaps between them within [lo_all, hi_all)
    f_lo, f_hi = p - 3 * N // 4 - N // 32 + 1, p + 5 * N // 4
    edges_hi = np.concatenate([[lo_all], np.maximum.accumulate(f_hi)])
    edges_lo = np.concatenate([f_lo, [hi_all]])
    gap_lo = np.clip(edges_hi, lo_all, hi_all)
    gap_hi = np.clip(edges_lo, lo_all, hi_all)
    if scanned is not None:
        gap_lo, gap_hi = _within(gap_lo, gap_hi, [(lo + N // 4, hi - N + N // 4 + 1) for lo, hi in scanned])
    length = np.clip(gap_hi - gap_lo, 0, None)
    slots = np.where(length > 0, (length - 1) // N + 1, 0)
    total = int(slots.sum())
    if n == 0 or total == 0:
        return np.empty(0, np.int64)
    offset = (rng.random(len(length)) * (length - (slots - 1) * N)).astype(np.int64)  # per-stretch shift
    chosen = np.sort(rng.choice(total, size=min(n, total), replace=False))
    cum = np.cumsum(slots)
    gap = np.searchsorted(cum, chosen, side="right")
    within = chosen - (cum[gap] - slots[gap])
    return np.sort(gap_lo[gap] + offset[gap] + within * N).astype(np.int64)


def _event_amplitudes(trigger_amplitude, firing_channel, n_channels, n_particle):
    """(channel, particle event) amplitudes: a 2-D array as is, or per-event values at the firing channel."""
    amp = np.asarray(trigger_amplitude, dtype=np.float32)
    if amp.ndim == 2:
        if amp.shape != (n_channels, n_particle):
            raise InputError(f"trigger_amplitude has shape {amp.shape}, expected ({n_channels}, {n_particle})")
        return amp
    if amp.shape != (n_particle,):
        raise InputError(f"trigger_amplitude has {amp.size} values for {n_particle} particle triggers")
    out = np.full((n_channels, n_particle), np.nan, dtype=np.float32)
    out[np.asarray(firing_channel, dtype=np.int64), np.arange(n_particle)] = amp
    return out


def records_dataset(stream, particle_samples, firing_channel, noise_samples, record_length, channel_names,
                    trigger_amplitude, parameters: dict, inputs: list, live_time: float, threshold,
                    *, pulser=None) -> xr.Dataset:
    """Cut records of all channels at particle, noise and test-pulse triggers into a "records" Dataset.

    Particle triggers whose window leaves the stream are dropped; noise triggers must lie inside.
    Events are sorted by trigger sample; the trigger sits at sample N//4 of each record. A record
    with a saturated or stuck stretch in any channel (`cryopipe.trigger.filters.has_flat_run`: a run of
    MIN_FLAT_RUN identical samples) gets record_kind "saturated" instead of "particle"/"noise".

    Parameters
    ----------
    stream : CsmplStream
    particle_samples, firing_channel : merged triggers and the channel that fired each (the store's
        `trigger_channel`)
    noise_samples : noise trigger samples (trigger_channel -1 in the store)
    record_length : N (samples)
    channel_names : one name per stream channel
    trigger_amplitude : V; either (channel, particle) filter outputs, or one value per particle
        trigger (the firing channel's, from the trigger pass), in which case other channels get NaN.
        Noise events get NaN.
    parameters, inputs : provenance of the store
    live_time : s
    threshold : V, per channel (a scalar applies to all)
    pulser : `cryopipe.io.base.TestPulses` (stream samples and TPA) of DAQ test and control pulses
        to record, kinds "testpulse"/"controlpulse" by TPA (`cryopipe.io.cresst.record_kind_from_tpa`);
        windows leaving the stream are dropped. `tpa` is 0 for particle, -1 for noise records.
    """
    n_ch, N = stream.n_channels, int(record_length)
    if len(channel_names) != n_ch:
        raise InputError(f"{len(channel_names)} channel names for a stream of {n_ch} channels")
    if len(set(map(str, channel_names))) != n_ch:
        dup = sorted({str(c) for c in channel_names if list(map(str, channel_names)).count(str(c)) > 1})
        raise InputError(f"duplicate channel names {', '.join(dup)}: every channel needs its own name")
    part = np.asarray(particle_samples, dtype=np.int64)
    chan = np.asarray(firing_channel, dtype=np.int64)
    if chan.shape != part.shape:
        raise InputError(f"firing_channel has {chan.size} entries for {part.size} particle triggers")
    amp = _event_amplitudes(trigger_amplitude, chan, n_ch, part.size)
    ok = valid_windows(part, stream.n_samples, N)
    part, chan, amp = part[ok], chan[ok], amp[:, ok]
    noise = np.asarray(noise_samples, dtype=np.int64)
    if not valid_windows(noise, stream.n_samples, N).all():
        raise InputError("noise trigger windows must lie inside the stream")
    tp_samples, tp_tpa = _pulser_records(pulser, stream.n_samples, N)
    samples = np.concatenate([part, noise, tp_samples])
    order = np.argsort(samples, kind="stable")
    samples = samples[order]
    kind = np.concatenate([np.full(part.size, "particle", "U12"), np.full(noise.size, "noise", "U12"),
                           _pulser_kinds(tp_tpa)])[order]
    tpa = np.concatenate([np.zeros(part.size, np.float32), np.full(noise.size, -1, np.float32), tp_tpa])[order]
    firing = np.concatenate([chan, np.full(noise.size + tp_samples.size, -1, np.int64)])[order]
    amps = np.concatenate([amp, np.full((n_ch, noise.size + tp_samples.size), np.nan, np.float32)], axis=1)[:, order]
    blocks = [volts for _, volts in stream.read_records(samples - N // 4, N)]   # in event order
    if len(blocks) == 1:
        trace = blocks[0]                                   # one batch (the usual case): no copy
    else:
        trace = np.concatenate(blocks, axis=1) if blocks else np.empty((n_ch, 0, N), np.float32)
    # a saturated or stuck stretch (runs of identical samples) in any channel: never a particle
    # (test and control pulses keep their kind: control pulses saturate by design)
    kind[has_flat_run(trace).any(axis=0) & np.isin(kind, ("particle", "noise"))] = "saturated"
    fs = stream.sample_frequency
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n_ch,))
    attrs = provenance("records", parameters=parameters, inputs=inputs, sample_frequency=float(fs), record_length=N,
                       live_time=float(live_time), stream_duration=float(stream.n_samples / fs),
                       threshold=[float(v) for v in thr], pretrigger=N // 4)
    return xr.Dataset(
        {
            "trace": (("channel", "event", "sample"), trace, {"units": "V"}),
            "trigger_sample": (("event",), samples),
            "trigger_time": (("event",), samples / fs, {"units": "s"}),
            "timestamp": (("event",), float(getattr(stream, "start_time", 0.0)) + samples / fs, {"units": "s"}),
            "tpa": (("event",), tpa, {"units": "V"}),
            "record_kind": (("event",), kind),
            "trigger_channel": (("event",), firing),
            "trigger_amplitude": (("channel", "event"), amps, {"units": "V"}),
        },
        coords={
            "channel": list(channel_names),
            "event": np.arange(samples.size),
            "time": (("sample",), (np.arange(N) - N // 4) / fs, {"units": "s"}),
        },
        attrs=attrs,
    )


def _pulser_records(pulser, n_samples: int, record_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples and TPA of the test/control pulses whose record window lies inside the stream."""
    if pulser is None or len(pulser) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    samples = np.asarray(pulser.samples, np.int64)
    ok = valid_windows(samples, n_samples, record_length)
    return samples[ok], np.asarray(pulser.tpa, np.float32)[ok]


def _pulser_kinds(tpa: np.ndarray) -> np.ndarray:
    """"testpulse" or "controlpulse" by TPA (the CRESST convention)."""
    from cryopipe.io.cresst import record_kind_from_tpa

    return np.asarray(record_kind_from_tpa(tpa), dtype="U12") if tpa.size else np.zeros(0, "U12")


def side_lobe_envelopes(kernel, *, anchor: int, template: tuple) -> tuple:
    """Side-lobe envelopes (plain, saturated) of the filter response to `template` (shape, onset
    sample[, shape of the saturated responses]): :func:`side_lobe_envelope` of the plain pulse
    (no clipped levels) and of its clipped versions."""
    sat_template = template[2] if len(template) > 2 else None
    return (side_lobe_envelope(kernel, anchor, template[0], template[1], levels=()),
            side_lobe_envelope(kernel, anchor, template[0], template[1], saturated_template=sat_template))


def scan_segment(stream, *, channel: int, kernel, anchor: int, threshold: float, holdoff: int, chunk_size: int,
                 segment: tuple[int, int], sampling: dict | None = None, envelope=None):
    """Triggers of the samples [a, b) = `segment` of one channel.

    `sampling` ({"min_triggers": T, "min_samples": S, "stretch_samples": L}) scans the segment in
    stretches of L samples, in an order that spreads every prefix over the whole segment
    (`cryopipe.trigger.segments.spread_order`), and stops once at least T triggers and S scanned
    samples are found; None scans it all. `threshold` in V, `holdoff` in samples, `envelope` as
    :func:`side_lobe_envelopes` (None: no side-lobe rule).

    Returns trigger samples, amplitudes (V), rejected candidate samples (see :func:`scan_stretch`)
    and the stretches scanned ([[start, stop], ...], sorted).
    """
    from cryopipe.trigger.segments import merge_intervals, spread_order

    a, b = segment
    pieces = [(a, b)]
    if sampling:
        step = max(int(sampling["stretch_samples"]), 1)
        stretches = [(s, min(s + step, b)) for s in range(a, b, step)]
        pieces = [stretches[i] for i in spread_order(len(stretches))]
    found, scanned, n_found, n_scanned = [], [], 0, 0
    for piece in pieces:
        if sampling and n_found >= int(sampling["min_triggers"]) and n_scanned >= int(sampling["min_samples"]):
            break
        found.append(scan_stretch(stream, channel=channel, kernel=kernel, anchor=anchor, threshold=threshold,
                                  holdoff=holdoff, chunk_size=chunk_size, stretch=piece, envelope=envelope))
        scanned.append(list(piece))
        n_found += len(found[-1][0])
        n_scanned += piece[1] - piece[0]
    order = np.argsort([p[0] for p in scanned], kind="stable")
    samples = np.concatenate([found[i][0] for i in order]) if found else np.empty(0, np.int64)
    amplitudes = np.concatenate([found[i][1] for i in order]) if found else np.empty(0)
    rejected = np.concatenate([found[i][2] for i in order]) if found else np.empty(0, np.int64)
    return samples, amplitudes, rejected, merge_intervals([scanned[i] for i in order])


def scan_stretch(stream, *, channel: int, kernel, anchor: int, threshold: float, holdoff: int, chunk_size: int,
                 stretch: tuple[int, int], envelope=None):
    """Triggers (samples, amplitudes) in [a, b) = `stretch` and the candidates there not taken (rejected
    samples: side lobes, within a hold-off; noise records avoid them too), from the candidates of
    [a - 5 R, b + 5 R) (R: the larger of the hold-off and the side-lobe reach) on the unsplit run's
    chunk grid, so the float32 filter values are bit-identical to an unsplit scan. `envelope`:
    (plain, saturated) side-lobe envelopes; a candidate's raw stretch tells which applies
    (:func:`saturated_candidates`)."""
    from cryopipe.trigger.filters import OverlapSave

    a, b = stretch
    reach = holdoff
    if envelope is not None:
        reach = max(reach, -envelope[0][0], envelope[0][0] + len(envelope[0][1]))
    chunk = OverlapSave(kernel, anchor, int(chunk_size)).chunk
    start = max(a - 5 * reach, 0) // chunk * chunk
    stop = min(-(-(b + 5 * reach) // chunk) * chunk, stream.n_samples)
    samples, amplitudes = scan_candidates(stream, channel, kernel, anchor, threshold, polarity=1,
                                          chunk_size=int(chunk_size), start=start, stop=stop)
    if envelope is None:
        sel = select_triggers(samples, amplitudes, holdoff, threshold=threshold)
    else:
        sat = saturated_candidates(stream, channel, samples, amplitudes, threshold, max(64, len(kernel) // 16))
        sel = select_triggers(samples, amplitudes, holdoff, threshold=threshold, envelope=envelope[0], saturated=sat,
                              saturated_envelope=envelope[1])
    rejected = samples[~sel]
    rejected = rejected[(rejected >= a) & (rejected < b)]
    samples, amplitudes = samples[sel], amplitudes[sel]
    keep = (samples >= a) & (samples < b)
    return samples[keep], amplitudes[keep], rejected


def near_any(samples: np.ndarray, others: np.ndarray, distance: int) -> np.ndarray:
    """Mask of `samples` closer than `distance` samples to any of `others` (sorted or not)."""
    if len(others) == 0 or len(samples) == 0:
        return np.zeros(len(samples), dtype=bool)
    ref = np.sort(np.asarray(others, dtype=np.int64))
    idx = np.searchsorted(ref, samples)
    left = np.abs(samples - ref[np.clip(idx - 1, 0, len(ref) - 1)])
    right = np.abs(ref[np.clip(idx, 0, len(ref) - 1)] - samples)
    return np.minimum(left, right) < distance


def sample_particles(samples: np.ndarray, fired: np.ndarray, amps: np.ndarray, *, limit, seed: int):
    """At most `limit` of the particle triggers (samples, firing channel, (channel, trigger)
    amplitudes), drawn at random without replacement and kept in time order; all when `limit` is None."""
    if limit is None or len(samples) <= int(limit):
        return samples, fired, amps
    rng = np.random.default_rng([int(seed), 1])   # its own stream: the noise draws stay unchanged
    keep = np.sort(rng.choice(len(samples), int(limit), replace=False))
    return samples[keep], fired[keep], amps[:, keep]


def fired_amplitudes(triggers, samples: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """(channel, event) filter amplitude (V) of the channel that fired at each merged trigger
    (`triggers`: the channels' "triggers" Datasets); NaN elsewhere."""
    out = np.full((len(triggers), len(samples)), np.nan, dtype=np.float32)
    for c, t in enumerate(triggers):
        s = t["trigger_sample"].values
        a = t["trigger_amplitude"].values
        idx = np.searchsorted(s, samples)
        ok = (idx < len(s)) & (fired == c)
        ok[ok] &= s[idx[ok]] == samples[ok]
        out[c, ok] = a[idx[ok]]
    return out
