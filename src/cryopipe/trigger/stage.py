"""Trigger stage: open a run's stream, trigger one channel or time segment, gather segments,
merge channels and cut records in batches; read a run of hardware-triggered records.

The rules' entries `run_trigger_segment`, `run_gather_triggers`, `run_records` and
`run_read_records` read their inputs, call the functions below (Datasets in and out, used by the
tests and the CLI too) and write their stores through `cryopipe.io.stores`: paths, plain config
dicts and wildcard values in; no Snakemake here.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import xarray as xr

from cryopipe.io.base import Stream, TestPulses
from cryopipe.io.sources import open_stream, stream_files
from cryopipe.io.stores import EVENT_CHUNK, load_store, provenance, write_store, write_store_batches
from cryopipe.trigger.segments import merge_intervals, scanned_stretches

# The filter and trigger kernels (scipy.fft, numba) are imported by the functions that use them:
# the workflow's DAG start (segment_bounds) and the gather job (gather_segments) do not pay for them.


def holdoff_samples(stream_cfg: dict, trigger_cfg: dict) -> int:
    """Hold-off after a trigger in samples (default: half a record)."""
    return int(trigger_cfg.get("holdoff") or stream_cfg["record_length"] // 2)


def pulser_exclusion_samples(stream_cfg: dict, trigger_cfg: dict) -> int:
    """Samples around each test/control pulse in which particle triggers are dropped (default: one
    record length; a pulse thousands of times above threshold leaves filter side lobes that far)."""
    value = trigger_cfg.get("pulser_exclusion")
    return int(value) if value is not None else int(stream_cfg["record_length"])


def local_segment_duration(n_samples: int, sample_frequency: float, n_channels: int, *, cpus: int | None = None,
                           job_threads: int = 2) -> float:
    """Seconds of stream per trigger job when the run is triggered on this machine
    (``trigger.segment_duration: auto``).

    Each channel's stream is split into ``max(1, cpus // (job_threads * n_channels))`` equal
    segments, so one pass's trigger jobs (``job_threads`` cores each) fill the machine's cores
    once: a job start costs ~1-2 s of imports, the trigger itself ~0.7 s per channel-hour, so
    more, shorter jobs only add start-ups. `cpus` defaults to the cores this process may use (the
    machine, not ``--cores``: a rerun with other ``--cores`` keeps the jobs and their outputs).
    The triggers equal those of any other split (:func:`trigger_one_channel`).
    """
    if cpus is None:
        import os

        cpus = len(os.sched_getaffinity(0))
    per_channel = max(1, int(cpus) // (int(job_threads) * max(int(n_channels), 1)))
    return -(-max(int(n_samples), 1) // per_channel) / float(sample_frequency)


def segment_bounds(n_samples: int, sample_frequency: float, segment_duration: float | None) -> list[tuple[int, int]]:
    """Split [0, n_samples) into time segments of `segment_duration` s (None: one segment)."""
    if not segment_duration:
        return [(0, n_samples)]
    step = max(int(round(segment_duration * sample_frequency)), 1)
    return [(a, min(a + step, n_samples)) for a in range(0, n_samples, step)]


def trigger_one_channel(stream: Stream, channel: int, stream_cfg: dict, trigger_cfg: dict,
                        *, kernel: tuple[np.ndarray, int] | None = None, threshold: float | None = None,
                        segment: tuple[int, int] | None = None, inputs=(), progress=None,
                        sampling: dict | None = None, template: tuple | None = None) -> xr.Dataset:
    """Trigger one channel (or one time segment of it); returns a "triggers" Dataset.

    The kernel defaults to the detector-agnostic generic pulse kernel; the threshold defaults to
    `threshold_sigma` times the filtered stream's robust noise sigma, estimated from chunks spread
    over the WHOLE stream, so every segment job of a channel uses the same threshold.
    `template` (shape, onset sample[, shape for the saturated responses]) is the pulse the kernel
    is made for (default: the generic template, with the default kernel); side lobes of its
    filter response (and of its clipped versions) never trigger (`cryopipe.trigger.scan.side_lobe_envelope`).

    A segment [a, b) is scanned over [a - 5 R, b + 5 R), R the larger of the hold-off and the
    side-lobe reach, and keeps the triggers in [a, b): the selection near `a` and `b` then sees the
    candidates an unsplit scan sees whenever 5 R of stream around the edges hold no chain of ever
    larger pulses, so segments gathered equal the unsplit run.

    `sampling` (the first pass, which only feeds the characterization): {"min_triggers": T,
    "min_samples": S, "stretch_samples": L} scans the segment in stretches of L samples, in an order
    that spreads every prefix over the whole segment (`cryopipe.trigger.segments.spread_order`), and stops once at least
    T triggers and S scanned samples are found; the stretches scanned are the attr ``scanned``
    ([[start, stop], ...], sorted). A scan of every stretch equals the unsplit scan.
    """
    from cryopipe.signal.pulses import generic_template
    from cryopipe.trigger.filters import generic_kernel, noise_estimate
    from cryopipe.trigger.scan import scan_segment, side_lobe_envelopes

    k, anchor = kernel if kernel is not None else generic_kernel(stream_cfg["record_length"])
    if template is None and kernel is None:
        n_rec = int(stream_cfg["record_length"])
        template = (generic_template(n_rec), int(n_rec * 0.25))
    # side lobes of a plain and of a saturated (clipped) pulse
    envelope = side_lobe_envelopes(k, anchor=anchor, template=template) if template is not None else None
    noise = noise_estimate(stream, channel, k, anchor, polarity=1)   # logs implausible situations
    sigma = noise.sigma
    if threshold is None:
        threshold = float(trigger_cfg["threshold_sigma"]) * sigma
    holdoff = holdoff_samples(stream_cfg, trigger_cfg)
    a, b = segment if segment is not None else (0, stream.n_samples)
    samples, amplitudes, rejected, scanned = scan_segment(
        stream, channel=channel, kernel=k, anchor=anchor, threshold=threshold, holdoff=holdoff,
        chunk_size=int(trigger_cfg["chunk_size"]), segment=(a, b), sampling=sampling, envelope=envelope)
    params = {"trigger": trigger_cfg, "stream": stream_cfg, "kernel_length": len(k), "kernel_anchor": anchor,
              "sampling": sampling}
    attrs = provenance("triggers", parameters=params, inputs=list(inputs), sample_frequency=stream.sample_frequency,
                       n_samples=stream.n_samples, channel=stream_cfg["channels"][channel],
                       threshold=float(threshold), noise_sigma=sigma, holdoff=holdoff, segment=[a, b],
                       scanned=scanned, **noise.attrs())
    return xr.Dataset({"trigger_sample": ("trigger", np.asarray(samples, dtype=np.int64)),
                       "trigger_amplitude": ("trigger", np.asarray(amplitudes, dtype=np.float32)),
                       "rejected_sample": ("rejected", np.asarray(rejected, dtype=np.int64))},
                      attrs=attrs)


def gather_segments(parts: list[xr.Dataset], *, inputs=()) -> xr.Dataset:
    """Join the segment trigger lists of one channel (in time order) into one "triggers" Dataset."""
    parts = sorted(parts, key=lambda p: p.attrs["segment"][0])
    ds = xr.concat([p[["trigger_sample", "trigger_amplitude"]] for p in parts], dim="trigger")
    if all("rejected_sample" in p for p in parts):
        ds["rejected_sample"] = ("rejected", np.concatenate([p["rejected_sample"].values for p in parts]))
    ds.attrs = {k: v for k, v in parts[0].attrs.items() if k != "segment"}
    ds.attrs["scanned"] = merge_intervals([iv for p in parts for iv in p.attrs.get("scanned", [p.attrs["segment"]])])
    ds.attrs["inputs"] = [str(i) for i in inputs]
    return ds


def record_batches(stream: Stream, triggers: list[xr.Dataset], stream_cfg: dict, trigger_cfg: dict,
                   *, inputs=(), batch: int = EVENT_CHUNK) -> tuple[xr.Dataset, Iterator[xr.Dataset], str]:
    """Merge per-channel triggers, draw noise triggers, add the DAQ's test and control pulses, and
    cut records in batches of `batch` events.

    A particle trigger closer than `trigger.pulser_exclusion` (default one record length) to a test
    or control pulse is that pulse or its filter's side lobe, not a particle (Cait's exclude_tp);
    that time counts as dead time. Returns the first "records" Dataset, an iterator over the following batches
    (append along event), and a one-line summary. Memory is bounded by one batch of records.

    For the first pass, which only feeds the characterization, `trigger_cfg` may hold
    ``max_particle_records`` (cut at most this many particle triggers, drawn at random over the
    whole run after the noise triggers were placed away from all of them) and
    ``pulser_records: false`` (no test/control-pulse records). The live time and the noise records
    are those of the full trigger list either way.
    """
    from cryopipe.trigger.scan import (fired_amplitudes, live_time, merge_triggers, near_any, noise_trigger_samples,
                                       records_dataset, sample_particles, valid_windows)

    n_rec = stream_cfg["record_length"]
    holdoff = holdoff_samples(stream_cfg, trigger_cfg)
    per_channel = [t["trigger_sample"].values for t in triggers]
    significance = [t["trigger_amplitude"].values / float(t.attrs["threshold"]) for t in triggers]
    samples, fired = merge_triggers(per_channel, holdoff, significance=significance)
    pulser = stream.test_pulses
    reach = pulser_exclusion_samples(stream_cfg, trigger_cfg)
    live = live_time(samples, holdoff, stream.n_samples, stream.sample_frequency,
                     excluded=(pulser.samples - reach, pulser.samples + reach) if len(pulser) else None)
    keep = valid_windows(samples, stream.n_samples, n_rec)
    samples, fired = samples[keep], fired[keep]
    amps = fired_amplitudes(triggers, samples, fired)
    on_pulser = near_any(samples, pulser.samples, reach)
    samples, fired, amps = samples[~on_pulser], fired[~on_pulser], amps[:, ~on_pulser]
    rng = np.random.default_rng(int(trigger_cfg["seed"]))
    scanned = scanned_stretches(triggers, stream.n_samples)
    # noise records hold no trigger, no test pulse and no excursion above threshold that was not
    # taken as a trigger (a side lobe, or a small pulse beside a large one)
    rejected = [t["rejected_sample"].values for t in triggers if "rejected_sample" in t]
    occupied = np.sort(np.concatenate([samples, pulser.samples, *rejected]))
    noise = np.sort(noise_trigger_samples(int(trigger_cfg["noise_records"]), occupied,
                                          stream.n_samples, n_rec, rng, scanned=scanned))
    n_triggered = len(samples)
    samples, fired, amps = sample_particles(samples, fired, amps, limit=trigger_cfg.get("max_particle_records"),
                                            seed=int(trigger_cfg["seed"]))
    n_pulser = len(pulser)
    if not trigger_cfg.get("pulser_records", True):
        pulser = TestPulses(pulser.samples[:0], pulser.tpa[:0])
    thresholds = [float(t.attrs["threshold"]) for t in triggers]
    params = {"trigger": trigger_cfg, "stream": stream_cfg}
    all_samples = np.sort(np.concatenate([samples, noise, pulser.samples]))
    bounds = list(range(0, max(len(all_samples), 1), batch)) or [0]

    def part(i0: int) -> xr.Dataset:
        window = all_samples[i0 : i0 + batch]
        lo, hi = (window[0], window[-1]) if len(window) else (0, -1)
        sel = (samples >= lo) & (samples <= hi)
        nsel = (noise >= lo) & (noise <= hi)
        psel = (pulser.samples >= lo) & (pulser.samples <= hi)
        ds = records_dataset(stream, samples[sel], fired[sel], noise[nsel], n_rec, stream_cfg["channels"],
                             amps[:, sel], params, list(inputs), live, thresholds,
                             pulser=TestPulses(pulser.samples[psel], pulser.tpa[psel]))
        ds.attrs["n_particle_on_pulser"] = int(on_pulser.sum())   # dropped as test/control pulses
        return ds.assign_coords(event=np.arange(i0, i0 + ds.sizes["event"]))

    summary = (f"{len(samples)} particle and {len(noise)} noise records of {len(stream_cfg['channels'])} channels; "
               f"live time {live:.1f} s of {stream.duration:.1f} s")
    if scanned is not None:
        summary += (f"; first-pass sample: {sum(b - a for a, b in scanned) / stream.sample_frequency:.0f} s of the "
                    f"stream scanned by every channel, the noise records drawn there")
    if len(samples) < n_triggered:
        summary += f"; {len(samples)} of {n_triggered} particle triggers drawn at random (max_particle_records)"
    if len(noise) < int(trigger_cfg["noise_records"]):
        summary += (f"; only {len(noise)} of the {int(trigger_cfg['noise_records'])} noise records asked for fit "
                    f"between the pulses without overlapping")
    if n_pulser:
        summary += (f"; {len(pulser)} of {n_pulser} test/control pulses recorded, {int(on_pulser.sum())} particle "
                    f"triggers on them dropped")
    return part(bounds[0]), (part(i0) for i0 in bounds[1:]), summary


def run_trigger_segment(*, stream: dict, trigger: dict, sampling: dict | None, characterization, output: str,
                        channel: str, segment: int, log) -> None:
    """Rules trigger_segment(_pass1): trigger time segment number `segment` of `channel` of the run's
    stream and write its "triggers" store `output`.

    `characterization` (the final pass: a characterization store's path; empty or None in the first
    pass) gives the channel's optimum filter, threshold and pulse (`cryopipe.trigger.filters.characterized_kernel`);
    without it the generic kernel at ``threshold_sigma`` robust sigmas triggers.
    """
    source = open_stream(stream)
    bounds = segment_bounds(source.n_samples, source.sample_frequency, trigger["segment_duration"])
    a, b = bounds[int(segment)]
    kernel = threshold = template = None
    if characterization:
        from cryopipe.trigger.filters import characterized_kernel

        char = load_store(characterization, "characterization")
        kernel, threshold, template = characterized_kernel(char, channel=channel)
    ds = trigger_one_channel(source, stream["channels"].index(channel), stream, trigger, kernel=kernel,
                             threshold=threshold, segment=(a, b), inputs=stream_files(stream), sampling=sampling,
                             template=template)
    scanned = sum(hi - lo for lo, hi in ds.attrs["scanned"])
    log.info("channel %s, samples [%d, %d) (%.0f %% scanned): %d triggers above %.3g V (%s kernel)", channel, a, b,
             100.0 * scanned / max(b - a, 1), ds.sizes["trigger"], ds.attrs["threshold"],
             "optimum-filter" if kernel else "generic")
    write_store(ds, output, "triggers")


def run_gather_triggers(*, parts: list, output: str, channel: str, log) -> None:
    """Rules gather_triggers(_pass1): join the segment trigger stores `parts` of `channel` into `output`."""
    ds = gather_segments([load_store(p, "triggers") for p in parts], inputs=list(parts))
    log.info("channel %s: %d triggers from %d segments", channel, ds.sizes["trigger"], len(parts))
    write_store(ds, output, "triggers")


def run_records(*, stream: dict, trigger: dict, triggers: list, output: str, log) -> None:
    """Rules records(_pass1): merge the channels' trigger stores `triggers`, add noise triggers and
    the DAQ's test/control pulses, cut the records of all channels into the records store `output`."""
    first, more, summary = record_batches(open_stream(stream), [load_store(p, "triggers") for p in triggers],
                                          stream, trigger, inputs=list(triggers))
    log.info("%s", summary)
    write_store_batches(first, more, output, "records")


def run_read_records(*, stream: dict, inputs: list, output: str, log) -> None:
    """Rule read_records: a run's hardware-triggered records (CRESST rdt, NIST LJH: the source spec
    `stream`, files `inputs`) as its records store `output`."""
    from cryopipe.io.records import record_batches as file_record_batches

    first, more, summary = file_record_batches(stream, inputs=list(inputs))
    log.info("%s", summary)
    write_store_batches(first, more, output, "records")
