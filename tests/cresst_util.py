"""CRESST test runs for the tests and the README check (tests/test_workflow_docs.py): streams (csmpl + par
+ test and dig stamps) and hardware-triggered runs (rdt + con + par) with known truth, written with
the format writers of `cryopipe.io.cresst` and `cryopipe.io.csmpl`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cryopipe.io.cresst import (CLOCK_FREQUENCY, DEFAULT_BANK_SAMPLES, record_kind_from_tpa, write_con,
                                write_dig_stamps, write_par, write_rdt, write_test_stamps)
from cryopipe.io.csmpl import write_csmpl


def dig_stamps_for_stream(n_samples: int, sample_frequency: float, start_ticks: int,
                          bank_samples: int = DEFAULT_BANK_SAMPLES,
                          clock_frequency: float = CLOCK_FREQUENCY) -> np.ndarray:
    """Clock ticks of the bank switches of a stream that starts at DAQ tick `start_ticks`.

    Bank ``b`` (0-based) is stamped when it is full: ``start + (b + 1) * bank_samples * clock /
    fs``. At least two stamps are returned (the alignment needs two), more while banks fit
    into `n_samples`.
    """
    n_banks = max(2, int(n_samples) // int(bank_samples))
    ticks_per_sample = clock_frequency / sample_frequency
    b = np.arange(1, n_banks + 1, dtype=np.float64)
    return (int(start_ticks) + np.floor(b * bank_samples * ticks_per_sample)).astype(np.int64)



def _pulse_shape(length: int, fs: float, tau_rise: float, tau_decay: float) -> np.ndarray:
    t = np.arange(length) / fs
    v = np.exp(-t / tau_decay) - np.exp(-t / tau_rise)
    return (v / v.max()).astype(np.float64)


def write_cresst_stream_run(out_dir, name: str = "mock_001", *, channels: Sequence[int] = (0, 1),
                            duration: float = 20.0, sample_frequency: float = 25_000.0,
                            record_length: int = 4096, pulser_interval: float = 0.5,
                            tpas: Sequence[float] = (0.1, 0.5, 1.0, 3.0), control_tpa: float = 20.0,
                            control_every: int = 5, volts_per_tpa: Sequence[float] = (0.3, 0.2),
                            particle_rate: float = 0.5, particle_amplitude: tuple = (0.05, 2.0),
                            noise_sigma: Sequence[float] = (0.002, 0.003), drift: float = 0.2,
                            saturation: float | None = None, start_time: float = 1_602_879_720.25,
                            start_ticks: int = 123_456_789, bank_samples: int | None = None,
                            clock_frequency: float = CLOCK_FREQUENCY, tau_rise: float = 0.5e-3,
                            tau_decay: float = 10e-3, stamps_before_start: int = 0,
                            block: int = 1 << 18, seed: int = 0, line_amplitude: float | None = None,
                            line_fraction: float = 0.0, response_jumps: Sequence[tuple] = ()) -> dict:
    """Write a CRESST stream run: ``<name>_Ch<i>.csmpl`` per channel, ``.par``, ``.test_stamps``,
    ``.dig_stamps``; return its truth.

    A share `line_fraction` of the particles has the fixed amplitude `line_amplitude` (V before
    the drift: a calibration line). `response_jumps` ((t_start, t_stop, factor), ...) multiplies
    the response of every pulse with onset in [t_start, t_stop) s by factor (an injected
    instability).

    The pulser fires every `pulser_interval` s, cycling through `tpas`, every `control_every`-th
    pulse a control pulse of `control_tpa` (stamped like test pulses, as in the DAQ). Particle
    pulses arrive as a Poisson process between them. The detector response drifts linearly:
    a pulse at time t (s from the stream start) has the amplitude ``volts_per_tpa[c] * tpa *
    (1 + drift * t / duration)`` (particles: their drawn amplitude times the same factor);
    `saturation` (V), if given, clips pulses with a tanh. Noise is white, `noise_sigma` V.

    Returns
    -------
    dict with ``paths`` (csmpl list, par, test_stamps, dig_stamps), ``samples`` int64 pulse
    onsets (stream samples), ``tpa`` float32 (0 for particles), ``kind`` str, ``amplitude``
    float64 (channel, pulse) V before saturation, ``response`` (pulse,) drift factor,
    ``drift``, ``n_samples``, ``sample_frequency``, ``start_ticks``, ``stream_start_time``,
    ``clock_frequency``, ``channels``, ``stamp_pulse`` (index into the pulse arrays of each
    written test stamp, -1 for stamps before the stream start).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_ch = len(channels)
    fs = float(sample_frequency)
    n_samples = int(round(duration * fs))
    shape = _pulse_shape(min(record_length, n_samples), fs, tau_rise, tau_decay)
    # pulser
    period = int(round(pulser_interval * fs))
    tp_pos = np.arange(period, n_samples - len(shape) // 2, period, dtype=np.int64)
    k = np.arange(len(tp_pos))
    if control_every:
        is_cp = (k % control_every) == control_every - 1
        tp_number = k - k // control_every  # test pulses before this one
    else:
        is_cp, tp_number = np.zeros(len(k), dtype=bool), k
    tp_tpa = np.where(is_cp, control_tpa, np.asarray(tpas, dtype=np.float64)[tp_number % len(tpas)])
    # particles, away from the pulser
    n_part = rng.poisson(particle_rate * duration)
    part = np.sort(rng.integers(0, n_samples - len(shape) // 2, n_part))
    near = np.abs(((part + period // 2) % period) - period // 2) < len(shape) // 2
    part = part[~near]
    part_amp = np.exp(rng.uniform(np.log(particle_amplitude[0]), np.log(particle_amplitude[1]), len(part)))
    if line_amplitude is not None and line_fraction > 0:
        part_amp[rng.random(len(part)) < line_fraction] = float(line_amplitude)
    pos = np.concatenate([tp_pos, part])
    tpa_all = np.concatenate([tp_tpa, np.zeros(len(part))])
    order = np.argsort(pos, kind="stable")
    pos, tpa_all = pos[order], tpa_all[order]
    is_stamp = np.concatenate([np.ones(len(tp_pos), bool), np.zeros(len(part), bool)])[order]
    kind = record_kind_from_tpa(np.where(is_stamp, tpa_all, 0.0))
    response = 1.0 + drift * pos / n_samples
    for t_start, t_stop, factor in response_jumps:
        response[(pos >= t_start * fs) & (pos < t_stop * fs)] *= factor
    vpt = np.broadcast_to(np.asarray(volts_per_tpa, dtype=np.float64), (n_ch,))
    base = np.where(is_stamp, tpa_all, np.concatenate([np.zeros(len(tp_pos)), part_amp])[order])
    amplitude = np.where(is_stamp[None, :], vpt[:, None] * base[None, :], base[None, :]) * response[None, :]
    sigma = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (n_ch,))
    paths = []
    for c in range(n_ch):
        path = out / f"{name}_Ch{channels[c]}.csmpl"
        paths.append(path)
        for a in range(0, n_samples, block):
            b = min(a + block, n_samples)
            v = np.zeros(b - a)
            first = np.searchsorted(pos, a - len(shape))
            last = np.searchsorted(pos, b)
            for j in range(first, last):
                lo, hi = max(pos[j], a), min(pos[j] + len(shape), b)
                if hi > lo:
                    v[lo - a:hi - a] += amplitude[c, j] * shape[lo - pos[j]:hi - pos[j]]
            if saturation:
                v = saturation * np.tanh(v / saturation)
            v += rng.normal(0.0, sigma[c], b - a)
            write_csmpl(path, v, append=a > 0)
    # stamps
    ratio = clock_frequency / fs
    stamp_pulse = np.nonzero(is_stamp)[0]
    stamps = int(start_ticks) + np.rint(pos[stamp_pulse] * ratio).astype(np.int64)
    stamp_tpa = tpa_all[stamp_pulse]
    if stamps_before_start:
        early = int(start_ticks) - np.rint(np.arange(stamps_before_start, 0, -1) * period * ratio).astype(np.int64)
        if early.min() < 0:
            raise ValueError("start_ticks too small for stamps before the stream start")
        stamps = np.concatenate([early, stamps])
        stamp_tpa = np.concatenate([np.full(stamps_before_start, tpas[0]), stamp_tpa])
        stamp_pulse = np.concatenate([np.full(stamps_before_start, -1), stamp_pulse])
    par_path, ts_path, dig_path = (out / f"{name}{ext}" for ext in (".par", ".test_stamps", ".dig_stamps"))
    write_test_stamps(ts_path, stamps, stamp_tpa, channel=0)
    bank = bank_samples or max(n_samples // 4, 1)
    dig = dig_stamps_for_stream(n_samples, fs, start_ticks, bank, clock_frequency)
    if dig.min() < 0:
        raise ValueError("start_ticks too negative: the first bank switch would be before clock tick 0")
    write_dig_stamps(dig_path, dig)
    stream_t0 = start_time        # the par's start is the stream's first sample (Cait's file_start)
    write_par(par_path, start_time=start_time, stop_time=stream_t0 + duration, record_length=record_length,
              sample_frequency=fs, records_written=0,
              channel_names={i + 1: f"ch{c}" for i, c in enumerate(channels)})
    return {
        "paths": {"csmpl": paths, "par": par_path, "test_stamps": ts_path, "dig_stamps": dig_path},
        "samples": pos, "tpa": tpa_all.astype(np.float32), "kind": kind, "amplitude": amplitude,
        "response": response, "drift": float(drift), "n_samples": n_samples, "sample_frequency": fs,
        "start_ticks": int(start_ticks), "stream_start_time": stream_t0, "clock_frequency": clock_frequency,
        "channels": list(channels), "stamp_pulse": stamp_pulse, "volts_per_tpa": vpt,
        "pulse_shape": shape,
    }


def write_cresst_rdt_run(out_dir, name: str = "mock_001", *, channels: Sequence[int] = (1, 2),
                         n_particle: int = 20, n_noise: int = 10, n_testpulse: int = 20, n_control: int = 5,
                         tpas: Sequence[float] = (0.1, 0.5, 1.0, 3.0), control_tpa: float = 20.0,
                         volts_per_tpa: Sequence[float] = (0.3, 0.2), particle_amplitude: tuple = (0.05, 2.0),
                         noise_sigma: Sequence[float] = (0.002, 0.003), drift: float = 0.2,
                         record_length: int = 1024, sample_frequency: float = 25_000.0,
                         trigger_interval: float = 1.0, start_time: float = 1_602_879_720.5,
                         dvm_channels: int = 0, ints_in_header: int = 7,
                         clock_frequency: float = CLOCK_FREQUENCY, tau_rise: float = 0.5e-3,
                         tau_decay: float = 10e-3, onset_offset: int = 0, seed: int = 0) -> dict:
    """Write a hardware-triggered run: ``.rdt`` (particle, noise and test pulse records),
    ``.con`` (control pulse heights, which the DAQ keeps out of the rdt) and ``.par``.

    Triggers come every `trigger_interval` s in a shuffled order of kinds; pulse onsets sit at
    record_length / 4 + `onset_offset` samples (Cait's mock rdt: tens of samples before N/4). Amplitudes drift like those of :func:`write_cresst_stream_run`:
    ``volts_per_tpa[c] * tpa * (1 + drift * t / T)`` with t the trigger time and T the run.

    Returns
    -------
    dict: ``paths`` (rdt, con, par), and per rdt event ``tpa``, ``kind``, ``timestamp`` (s since
    the epoch), ``amplitude`` (channel, event) V, ``response``; per control pulse
    ``control_time`` (s since the run start), ``control_height`` (channel, pulse) V;
    ``drift``, ``channels``, ``record_length``, ``sample_frequency``, ``start_time``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_ch = len(channels)
    fs = float(sample_frequency)
    kinds = np.array(["particle"] * n_particle + ["noise"] * n_noise + ["testpulse"] * n_testpulse
                     + ["controlpulse"] * n_control)
    rng.shuffle(kinds)
    n_trig = len(kinds)
    t_rel = (np.arange(n_trig) + 1) * trigger_interval + rng.uniform(0, 0.1, n_trig)
    total = (n_trig + 1) * trigger_interval
    response = 1.0 + drift * t_rel / total
    tpa = np.zeros(n_trig)
    tp = kinds == "testpulse"
    tpa[tp] = np.asarray(tpas, dtype=np.float64)[np.arange(tp.sum()) % len(tpas)]
    tpa[kinds == "noise"] = -1.0
    tpa[kinds == "controlpulse"] = control_tpa
    vpt = np.broadcast_to(np.asarray(volts_per_tpa, dtype=np.float64), (n_ch,))
    part_amp = np.exp(rng.uniform(np.log(particle_amplitude[0]), np.log(particle_amplitude[1]), n_trig))
    amp = np.zeros((n_ch, n_trig))
    amp[:, tp] = vpt[:, None] * tpa[tp]
    amp[:, kinds == "controlpulse"] = vpt[:, None] * control_tpa
    amp[:, kinds == "particle"] = part_amp[kinds == "particle"]
    amp *= response[None, :]
    onset = record_length // 4 + int(onset_offset)
    shape = np.zeros(record_length)
    shape[onset:] = _pulse_shape(record_length - onset, fs, tau_rise, tau_decay)
    sigma = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (n_ch,))
    in_rdt = kinds != "controlpulse"
    trace = amp[:, in_rdt, None] * shape[None, None, :]
    trace = trace + rng.normal(0.0, 1.0, trace.shape) * sigma[:, None, None]
    dvm = None if not dvm_channels else rng.normal(0, 1, (n_ch, int(in_rdt.sum()), dvm_channels)).astype(np.float32)
    paths = {ext: out / f"{name}.{ext}" for ext in ("rdt", "con", "par")}
    write_rdt(paths["rdt"], channels, trace, start_time + t_rel[in_rdt], tpa[in_rdt], start_time=start_time,
              clock_frequency=clock_frequency, ints_in_header=ints_in_header, dvm=dvm,
              trig_count=np.nonzero(in_rdt)[0])
    cp = np.nonzero(~in_rdt)[0]
    cp_ticks = np.rint(t_rel[cp] * clock_frequency).astype(np.uint64)
    write_con(paths["con"], np.tile(np.asarray(channels), len(cp)), amp[:, cp].T.reshape(-1),
              np.repeat(cp_ticks, n_ch), ints_in_header=ints_in_header)
    write_par(paths["par"], start_time=start_time, stop_time=start_time + total, record_length=record_length,
              sample_frequency=fs, records_written=int(in_rdt.sum()) * n_ch, dvm_channels=dvm_channels,
              ints_in_header=ints_in_header)
    return {
        "paths": paths, "tpa": tpa[in_rdt].astype(np.float32), "kind": kinds[in_rdt],
        "timestamp": start_time + t_rel[in_rdt], "amplitude": amp[:, in_rdt], "response": response[in_rdt],
        "control_time": t_rel[cp], "control_height": amp[:, cp], "drift": float(drift),
        "channels": list(channels), "record_length": record_length, "sample_frequency": fs,
        "start_time": start_time, "onset": onset, "dvm": dvm,
    }
