"""One small simulated workflow run per test session, and the simulation's truth in analysis terms.

Used by test_workflow_stage_truth.py and test_workflow_modes.py. Everything here is computed from the
configuration (the simulator's documented pulse and noise models) and from `truth.zarr`, never from
the stores under test, so the tests that use it check the pipeline against the simulation itself.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from workflow_util import REPO, snakemake, tiny_config, write_config

RUN = "sim"
# The run: 3 minutes of a busy module (2 events/s, half of them in the 5.9 keV line) with many
# artifacts, so that the stages see enough of every kind in a run of about a minute on 2 cores;
# the trigger is split into three one-minute segments (a mode the default 15-minute run never uses).
DURATION = 180.0
SEGMENT = 60.0
SIMULATION = dict(duration=DURATION, seed=5, event_rate=2.0, line_fraction=0.5, high_energy_rate=0.01,
                  artifacts={"spike": 0.3, "squid_jump": 0.15, "reset": 0.08, "temperature_rise": 0.0})
STORES = ("records", "features", "labels", "efficiency", "calibration", "characterization")

_CACHE: dict = {}


def truth_run_config(results: Path) -> dict:
    cfg = tiny_config(results, duration=DURATION, seed=SIMULATION["seed"])
    cfg["runs"][RUN]["simulate"].update(SIMULATION)
    cfg["trigger"].update(noise_records=300, segment_duration=SEGMENT)
    cfg["efficiency"]["n_per_amplitude"] = 300   # test_workflow_stage_truth's efficiency test needs it to see a 10 % threshold error
    cfg["cleaning"] = {"models": ["universal"], "evaluate": False}
    return cfg


def run_targets(results: Path, run: str, stores=STORES, models=("universal",)) -> list[str]:
    out = [str(results / run / f"{s}.zarr") for s in stores]
    return out + [str(results / run / "predictions" / f"{m}.zarr") for m in models]


def truth_run(tmp_path_factory) -> Path:
    """Run the workflow once per test session (cached here, so every module shares it); returns
    the run's results folder results/sim/."""
    if "run" not in _CACHE:
        # CRYOPIPE_TRUTH_WORKDIR: keep the run in that folder (Snakemake then reruns nothing while
        # iterating on the tests); default a fresh temporary folder
        keep = os.environ.get("CRYOPIPE_TRUTH_WORKDIR")
        work = Path(keep) if keep else tmp_path_factory.mktemp("truth_run")
        work.mkdir(parents=True, exist_ok=True)
        results = work / "results"
        cfg = write_config(work / "truth.yaml", truth_run_config(results))
        snakemake(work, cfg, *run_targets(results, RUN))
        _CACHE["run"] = results / RUN
    return _CACHE["run"]


def simulation(truth) -> dict:
    """The simulation config the truth store was made from."""
    return json.loads(truth.attrs["parameters"])


def adc_lsb(cfg_run: dict | None = None) -> float:
    """Volts per ADC count of the run (README: adc_range / 2**adc_bits, defaults 20 V, 16 bit)."""
    cfg_run = cfg_run or {}
    return float(cfg_run.get("adc_range", 20.0)) / 2 ** int(cfg_run.get("adc_bits", 16))


# ------------------------------------------------------------------------------------------------
# the simulator's pulse and noise models, written out from its documentation (simulate/stream.py)

def true_template(channel: dict, sample_frequency: float, record_length: int, onset: int) -> np.ndarray:
    """The simulated pulse of a channel in a record: Proebst et al. (1995),
    An (e^{-t/tau_n} - e^{-t/tau_in}) + At (e^{-t/tau_t} - e^{-t/tau_n}) for t > 0, At/An = at_over_an,
    scaled so that its maximum on the sample grid (onset at a sample) is 1, placed at `onset`."""
    t = np.arange(int(math.ceil(40 * max(channel["tau_n"], channel["tau_in"], channel["tau_t"]) * sample_frequency)) + 1)
    t = t / sample_frequency
    v = (np.exp(-t / channel["tau_n"]) - np.exp(-t / channel["tau_in"])
         + channel["at_over_an"] * (np.exp(-t / channel["tau_t"]) - np.exp(-t / channel["tau_n"])))
    v[0] = 0.0
    v /= v.max()
    out = np.zeros(record_length)
    m = record_length - onset
    out[onset:] = v[:m] if v.size >= m else np.pad(v, (0, m - v.size))
    return out


def true_psd(noise: dict, freqs) -> np.ndarray:
    """One-sided noise PSD (V^2/Hz) of the simulator: white + one_over_f (f_ref/f)^exponent + Lorentzian
    lines (frequency, full width, peak)."""
    f = np.asarray(freqs, dtype=np.float64)
    psd = np.full_like(f, float(noise["white"]))
    with np.errstate(divide="ignore"):
        psd += noise.get("one_over_f", 0.0) * (noise.get("f_ref", 1.0) / np.where(f > 0, f, np.inf)) ** noise.get("exponent", 1.0)
    for f0, width, peak in noise.get("lines", []) or []:
        psd += peak / (1.0 + ((f - f0) / (0.5 * width)) ** 2)
    psd[f == 0] = 0.0
    return psd


def record_noise_spectrum(noise: dict, sample_frequency: float, record_length: int, lsb: float,
                          fine: int = 2**21) -> np.ndarray:
    """Two-sided PSD J_k (V^2/Hz) that an N-sample record of the true noise shows at the rfft bins:
    E|X_k|^2 / (N fs), from the autocovariance R (PSD on a fine grid of `fine` samples, plus the ADC's
    rounding noise lsb^2/12), E|X_k|^2 = sum_{|tau|<N} (N - |tau|) R(tau) e^{-2 pi i k tau / N}.
    (Sampling the PSD at the bins instead misses the leakage of the 1/f noise and of the lines.)"""
    n, fs = record_length, sample_frequency
    j = 0.5 * true_psd(noise, np.fft.rfftfreq(fine, 1.0 / fs))
    j[0] *= 2.0
    j[-1] *= 2.0
    r = fs * np.fft.irfft(j, n=fine)[:n]
    r[0] += lsb ** 2 / 12.0
    ex2 = 2.0 * np.real(np.fft.rfft((n - np.arange(n)) * r)) - n * r[0]
    return ex2 / (n * fs)


def of_resolution(template: np.ndarray, psd_two_sided: np.ndarray, sample_frequency: float) -> float:
    """Optimum-filter amplitude resolution 1/sqrt(W), W = sum_k w_k |S_k|^2 / (N fs J_k), w_k = 0 at DC,
    2 inside, 1 at Nyquist (NOTES "Optimum filter conventions")."""
    n = template.size
    s = np.fft.rfft(template)
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 0.0
    if n % 2 == 0:
        w[-1] = 1.0
    return float(1.0 / np.sqrt(np.sum(w[1:] * np.abs(s[1:]) ** 2 / (n * sample_frequency * psd_two_sided[1:]))))


def true_resolution(truth, record_length: int, lsb: float) -> np.ndarray:
    """Per channel: the OF resolution (V) of the true template in the true noise of N-sample records."""
    sim, fs = simulation(truth), float(truth.attrs["sample_frequency"])
    out = []
    for ch in sim["channels"]:
        tmpl = true_template(ch, fs, record_length, record_length // 4)
        out.append(of_resolution(tmpl, record_noise_spectrum(ch["noise"], fs, record_length, lsb), fs))
    return np.array(out)


# ------------------------------------------------------------------------------------------------
# truth <-> records

class Truth:
    """The truth store as arrays, with the records it is matched against (trigger at N/4)."""

    def __init__(self, truth, records):
        self.onset = truth["onset_sample"].values.astype(np.int64)
        self.cls = np.array([str(c) for c in truth["pulse_class"].values])
        self.amplitude = truth["amplitude"].values.astype(np.float64)       # (channel, pulse) V
        self.energy = truth["energy"].values.astype(np.float64)
        self.fs = float(truth.attrs["sample_frequency"])
        self.n_samples = int(truth.attrs["n_samples"])
        self.n = int(records.attrs["record_length"])
        self.trigger = records["trigger_sample"].values.astype(np.int64)
        self.kind = np.array([str(k) for k in records["record_kind"].values])
        self.start = self.trigger - self.n // 4

    def isolated(self, i: int, before_high_energy: float = 3.0) -> bool:
        """No other truth entry within one record length on either side of entry i, no saturating
        (high-energy) event in the `before_high_energy` seconds before it (its tail decays slowly)."""
        o = self.onset[i]
        near = np.abs(self.onset - o) < self.n
        near[i] = False
        he = (self.cls == "high_energy") & (self.onset < o) & (self.onset > o - before_high_energy * self.fs)
        return not near.any() and not he.any()

    def inside(self, i: int) -> bool:
        """A whole record around entry i fits into the stream."""
        return self.n < self.onset[i] < self.n_samples - self.n

    def record_of(self, i: int, max_distance: int = 20) -> int:
        """The particle record whose trigger is nearest to entry i's onset (within max_distance
        samples), or -1."""
        d = np.where(self.kind == "particle", np.abs(self.trigger - self.onset[i]), np.iinfo(np.int64).max)
        k = int(np.argmin(d))
        return k if d[k] <= max_distance else -1

    def records_holding(self, i: int) -> np.ndarray:
        """Records whose window [trigger - N/4, trigger + 3N/4) holds entry i's onset."""
        return np.flatnonzero((self.start <= self.onset[i]) & (self.onset[i] < self.start + self.n))


__all__ = ["REPO", "RUN", "DURATION", "SEGMENT", "Truth", "truth_run", "truth_run_config", "run_targets",
           "true_template", "true_psd", "record_noise_spectrum", "of_resolution", "true_resolution",
           "simulation", "adc_lsb", "write_config", "snakemake"]
