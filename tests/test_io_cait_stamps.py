"""Cait's CRESST stream files with particle and noise stamps, and the "0 clean pulses" error's
hints (issue 21, items 2 and 7).

The stamp, dig-stamp and csmpl files are written here byte for byte in the layout of Cait's mock
data generator (cait/data/_test_data.py, TestData: stamps as '<QfI' records of clock ticks
((e + 1) * interval - cdaq_offset) * clock / fs, TPA cycling through its default list
[20, 0.1, -1, 20, 0.3, 0, 20, 0.5, 1, 20, 3, -1, 20, 0, 10], test pulse channel 0; dig stamps as
'<QII' records of ((b + 1) * bank - cdaq_offset) * clock / fs; csmpl int16 with the pulse of stamp e
at sample (e + 1) * interval: TPA > 0 a pulser pulse, TPA 0 a particle pulse, TPA -1 nothing).
Cait treats a stamp as a pulser pulse only for TPA > 0.0001; cryopipe must too.
"""
from __future__ import annotations

import copy
import logging
import struct

import numpy as np
import pytest
import xarray as xr

from cryopipe.errors import CryopipeError
from cryopipe.io import cresst as cr
from cryopipe.io.sources import open_stream
from cryopipe.signal.pulses import pulse_template
from cryopipe.characterize.channel import no_pulses_hint
from cryopipe.characterize.stage import characterize_channel
from cryopipe.trigger.stage import record_batches, trigger_one_channel

FS = 25_000
CLOCK = 10_000_000
BANK = 2_081_024 // 2              # Cait's eventsize / samplesdiv
CDAQ_OFFSET = 30_000               # samples
INTERVAL = 3 * FS                  # Cait's pulser_interval of 3 s
CAIT_TPAS = [20, 0.1, -1.0, 20, 0.3, 0, 20, 0.5, 1, 20, 3, -1, 20, 0, 10]
DURATION = 300                     # s: 100 stamps (the last at the stream's end, dropped as Cait does),
                                   # 6 x 4 + 2 = 26 of them particle (TPA 0) or noise (TPA -1) stamps
N = 4096
CHAR = dict(max_pulses=2000, max_noise_records=2000, min_pulses=5, min_pulse_snr=5.0, min_noise_records=20,
            threshold_resolution=5.0)
PAR = """CRESST Version 1.x
Timeofday at start  [s]: 1602879720
Timeofday at start [us]: 0
Timeofday at stop   [s]: 1602880020
Timeofday at stop  [us]: 0
Measuring time    [h] : 0.08333333333333333

********************** Record Structure *********************
Integers in header             : 7
Unsigned longs in header       : 3
Reals in header                : 4
DVM channels                   : 0
Record length                  : {n}
Records written                : 0
First DVM channel              : 0
"""


def cait_files(folder):
    """Stamps, dig stamps, par and one csmpl channel as Cait's TestData lays them out; returns the
    paths, the TPA of each stamp and the stream sample of its pulse."""
    n_samples = DURATION * FS
    n_events = DURATION * FS // INTERVAL
    tpa = np.array([CAIT_TPAS[e % len(CAIT_TPAS)] for e in range(n_events)], dtype=np.float32)
    r = CLOCK // FS
    (folder / "mock_001.test_stamps").write_bytes(
        b"".join(struct.pack("<QfI", ((e + 1) * INTERVAL - CDAQ_OFFSET) * r, float(tpa[e]), 0)
                 for e in range(n_events)))
    (folder / "mock_001.dig_stamps").write_bytes(
        b"".join(struct.pack("<QII", ((b + 1) * BANK - CDAQ_OFFSET) * r, 0, 0) for b in range(n_samples // BANK)))
    (folder / "mock_001.par").write_text(PAR.format(n=N))
    rng = np.random.default_rng(21)
    x = rng.normal(0.0, 2e-3, n_samples)
    shape = pulse_template(N, float(FS), 0.004, 0.0003, 0.025, at_over_an=0.2)   # onset at N // 4, max 1
    pulse_at = (np.arange(n_events) + 1) * INTERVAL
    particle_height = rng.uniform(0.3, 0.6, n_events)
    for e, t0 in enumerate(pulse_at):
        height = particle_height[e] if tpa[e] == 0 else 0.1 * min(float(tpa[e]), 10.0) if tpa[e] > 0 else 0.0
        lo = t0 - N // 4
        x[lo: min(lo + N, n_samples)] += height * shape[: min(N, n_samples - lo)]
    adc = np.clip(np.rint(x / (20.0 / 2**16)), -32768, 32767).astype("<i2")
    adc.tofile(folder / "mock_001_Ch0.csmpl")
    spec = dict(csmpl=[str(folder / "mock_001_Ch0.csmpl")], sample_frequency=float(FS), record_length=N,
                channels=["ch0"], par=str(folder / "mock_001.par"), test_stamps=str(folder / "mock_001.test_stamps"),
                dig_stamps=str(folder / "mock_001.dig_stamps"))
    return spec, tpa, pulse_at


def test_only_stamps_above_0_0001_v_are_pulser_pulses(tmp_path):
    spec, tpa, pulse_at = cait_files(tmp_path)
    al = cr.test_pulse_samples(spec["test_stamps"], spec["dig_stamps"], par=spec["par"], n_samples=DURATION * FS,
                               sample_frequency=FS)
    pulser = (tpa > 1e-4) & (pulse_at < DURATION * FS)
    np.testing.assert_array_equal(al.samples, pulse_at[pulser])
    np.testing.assert_array_equal(al.tpa, tpa[pulser])
    assert set(cr.record_kind_from_tpa(al.tpa)) == {"testpulse", "controlpulse"}
    assert al.n_not_pulser == int(np.sum(tpa <= 1e-4)) == 26
    assert al.n_dropped == 1                                    # the stamp at the stream's end
    # the stream sees the same pulser pulses
    stream = open_stream(spec)
    np.testing.assert_array_equal(stream.test_pulses.samples, pulse_at[pulser])


def test_particle_pulses_at_particle_stamps_get_their_records_and_a_standard_event(tmp_path, caplog):
    """The TPA 0 stamps mark particle pulses: each gets a particle record at its onset, no particle
    trigger is dropped as a test pulse, the pulser records are exactly the TPA > 0.0001 stamps, and
    the characterization finds its clean pulses (before: every particle trigger was dropped next to
    a "test pulse" of TPA 0 and the run failed with "0 clean pulses")."""
    spec, tpa, pulse_at = cait_files(tmp_path)
    with caplog.at_level(logging.INFO, logger="cryopipe"):
        stream = open_stream(spec)
    stream_cfg = dict(record_length=N, channels=["ch0"])
    trigger_cfg = dict(threshold_sigma=5.0, holdoff=None, chunk_size=2**20, noise_records=100, seed=0)
    trig = [trigger_one_channel(stream, 0, stream_cfg, trigger_cfg)]
    first, rest, summary = record_batches(stream, trig, stream_cfg, trigger_cfg)
    rec = xr.concat([first, *rest], dim="event")
    kind = rec["record_kind"].values.astype(str)
    ts = rec["trigger_sample"].values
    particles = pulse_at[tpa == 0]
    part_ts = ts[kind == "particle"]
    for t0 in particles:
        assert np.sum(np.abs(part_ts - t0) <= 20) == 1, (t0, part_ts)
    pulser_kinds = np.isin(kind, ["testpulse", "controlpulse"])
    inside = (pulse_at >= N // 4) & (pulse_at + 3 * N // 4 <= DURATION * FS)
    np.testing.assert_array_equal(np.sort(ts[pulser_kinds]), pulse_at[(tpa > 1e-4) & inside])
    # particle triggers were dropped on the pulser pulses (their own, and their tails' within the
    # exclusion), never on a particle pulse (each has its record, above)
    assert rec.attrs["n_particle_on_pulser"] >= int(np.sum((tpa > 1e-4) & inside))
    # the workflow's first pass cuts no pulser records: its particle records must hold the pulses
    first, rest, _ = record_batches(stream, trig, stream_cfg, {**trigger_cfg, "pulser_records": False})
    pass1 = xr.concat([first, *rest], dim="event")
    assert np.sum(pass1["record_kind"].values.astype(str) == "particle") >= len(particles)
    char = characterize_channel(pass1, CHAR, "mock_001/ch0")
    assert int(char["n_pulses"].values[0]) >= len(particles) - 2
    assert "26 particle/noise stamps" in caplog.text            # said once, at INFO


def test_no_pulses_hint_names_the_pulser_exclusion_when_it_ate_every_particle_trigger():
    rec = xr.Dataset(attrs={"n_particle_on_pulser": 14})
    hint = no_pulses_hint(rec, np.empty((0, N), np.float32), N // 4)
    assert "14 particle triggers" in hint and "TPA" in hint and "pulser_exclusion" in hint
    assert "polarity" in no_pulses_hint(xr.Dataset(), np.empty((0, N), np.float32), N // 4)


def test_zero_clean_pulses_from_a_wrong_polarity_suggests_polarity(tmp_path):
    """Positive pulses read with polarity -1: the trigger fires on the filter's positive lobes of
    the now negative pulses, no record holds a clean pulse, and the error says to flip `polarity`
    (before: "0 clean pulses ... a longer stream, or a lower characterize.min_pulses")."""
    from cryopipe.simulate.stream import DEFAULT_SIMULATION, simulate_stream

    sim = copy.deepcopy(DEFAULT_SIMULATION)
    sim.update(duration=120.0, event_rate=1.0)
    paths, _ = simulate_stream(tmp_path, sim, 25_000.0, ["phonon", "light"])
    stream_cfg = dict(record_length=N, channels=["phonon", "light"])
    trigger_cfg = dict(threshold_sigma=5.0, holdoff=None, chunk_size=2**20, noise_records=200, seed=0)
    for polarity in (1, -1):
        stream = open_stream(dict(csmpl=[str(p) for p in paths], sample_frequency=25_000.0, record_length=N,
                                  channels=["phonon", "light"], polarity=polarity))
        trig = [trigger_one_channel(stream, c, stream_cfg, trigger_cfg) for c in range(2)]
        first, rest, _ = record_batches(stream, trig, stream_cfg, {**trigger_cfg, "pulser_records": False})
        rec = xr.concat([first, *rest], dim="event").sel(channel=["phonon"])
        if polarity == 1:
            characterize_channel(rec, CHAR, "sim/phonon")          # the right polarity works
            continue
        with pytest.raises(CryopipeError, match=r"0 clean pulses.*polarity to the opposite sign"):
            characterize_channel(rec, CHAR, "sim/phonon")
