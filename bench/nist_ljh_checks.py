"""Figures of the chain on measured NIST TES data (LJH files), printed for the report.

    python bench/nist_ljh_checks.py [--data DIR] [--out DIR]

* regress_chan1.ljh + regress_noise_chan1.ljh: x-ray line FWHM of the optimum filter (fixed lag,
  lag-searched, and after a quadratic correction for the sub-sample arrival time), of the pulse
  height and of the SEV fit, against the OF baseline resolution (expected from the NPS, and the
  spread of the OF amplitude on the noise records); plots of OF amplitude linearity (against the
  SEV-fit height and the pulse height) and of chi2 against amplitude.
* 20230626_run0000_chan4102/4109.ljh (back to back): the two-channel stream's trigger rate at
  3.5, 4 and 5 sigma against Rice's prediction from the filtered noise itself; NPS of the two halves.

regress_chan3.ljh is evaluation data and is never read.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "nist_mass"  # beside the checkout
CHAR_CFG = {"max_noise_records": 2000, "max_pulses": 2000, "min_noise_records": 20, "min_pulses": 10,
            "min_pulse_snr": 10.0, "threshold_resolution": 5.0}


def regress_chan1(data: Path, out: Path) -> None:
    import xarray as xr

    from cryopipe.features.dataset import features_dataset
    from cryopipe.calibrate.line_stats import FWHM_PER_SIGMA, line_fwhm
    from cryopipe.characterize.stage import characterize_channel
    from cryopipe.io.records import record_batches

    spec = {"ljh": [str(data / "regress_chan1.ljh")], "noise_ljh": [str(data / "regress_noise_chan1.ljh")],
            "ljh_mode": "records", "channels": ["ch0"], "polarity": 1, "adc_bits": 16, "adc_range": 20.0}
    first, more, summary = record_batches(spec)
    records = xr.concat([first, *more], "event")
    char = characterize_channel(records, CHAR_CFG, "regress_chan1")
    f = features_dataset(records, characterization=char)
    kind = records["record_kind"].values
    p = kind == "particle"
    fs = float(records.attrs["sample_frequency"])
    print(summary)
    sigma_exp = float(char["expected_resolution"].values[0])
    noise_amp = f["of_amplitude"].values[0][kind == "noise"]
    sigma_noise = 1.4826 * np.median(np.abs(noise_amp - np.median(noise_amp)))
    print(f"OF baseline resolution: FWHM {FWHM_PER_SIGMA * sigma_exp * 1e3:.2f} mV expected from the NPS, "
          f"{FWHM_PER_SIGMA * sigma_noise * 1e3:.2f} mV measured on {int((kind == 'noise').sum())} noise records")
    amp = f["of_amplitude"].values[0][p]
    rows = []
    for name, label in (("of_amplitude", "OF, fixed lag"), ("of_amplitude_shifted", "OF, lag searched (whole samples)"),
                        ("of_amplitude_interpolated", "OF, lag searched, sub-sample (parabola)"),
                        ("fit_height", "SEV fit (fractional shift + linear baseline)"),
                        ("pulse_height", "pulse height (50-sample moving average)")):
        centre, fwhm, n = line_fwhm(f[name].values[0][p])
        rows.append((label, centre, fwhm, n))
    centre, fwhm_of, _ = line_fwhm(amp)
    phase = f["fit_onset"].values[0][p] * fs
    in_line = np.abs(amp - centre) <= 3 * fwhm_of / FWHM_PER_SIGMA
    basis = np.vander(phase[in_line] - phase[in_line].mean(), 3)
    resid = amp[in_line] - basis @ np.linalg.lstsq(basis, amp[in_line], rcond=None)[0]
    r = np.corrcoef(amp[in_line], phase[in_line])[0, 1]
    rows.append(("OF, fixed lag, arrival-phase corrected", centre, FWHM_PER_SIGMA * np.std(resid), int(in_line.sum())))
    print("x-ray line (strongest peak, Gaussian by clipped moments):")
    for label, c, w, n in rows:
        print(f"  {label:48s} centre {c:.4f} V  FWHM {w * 1e3:6.2f} mV ({100 * w / c:.3f} %)  "
              f"{w / (FWHM_PER_SIGMA * sigma_exp):.2f} x OF baseline  (n={n})")
    print(f"  corr(OF amplitude, arrival phase) in the line: {r:+.2f} (n={int(in_line.sum())}); phase spread "
          f"(5-95 %) {np.percentile(phase[in_line], 5):.2f} .. {np.percentile(phase[in_line], 95):.2f} samples")
    chi2 = f["of_chi2"].values[0]
    n = records.sizes["sample"]
    print(f"  OF chi2 (E = N - 2 = {n - 2} for noise): noise records median {np.median(chi2[kind == 'noise']):.0f}, "
          f"line pulses median {np.median(chi2[p][np.abs(amp - centre) < 0.02 * centre]):.0f}")
    _plots(out, f, kind, n)


def _plots(out: Path, f, kind, n) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    p = kind == "particle"
    amp, fit, ph, chi2 = (f[v].values[0] for v in ("of_amplitude", "fit_height", "pulse_height", "of_chi2"))
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    ax[0].plot(fit[p], amp[p] / fit[p], ".", ms=4, label="OF amplitude / SEV-fit height")
    ax[0].plot(fit[p], ph[p] / fit[p] * (np.median(amp[p] / fit[p]) / np.median(ph[p] / fit[p])), ".", ms=4,
               label="pulse height / SEV-fit height (scaled)")
    ax[0].set_xlabel("SEV-fit height (V)")
    ax[0].set_ylabel("ratio")
    ax[0].set_title("regress_chan1: OF amplitude linearity")
    ax[0].legend(fontsize=8)
    ax[1].semilogy(amp[p], chi2[p], ".", ms=4, label="pulses")
    ax[1].semilogy(amp[kind == "noise"], chi2[kind == "noise"], ".", ms=4, label="noise records")
    ax[1].axhline(n - 2, color="k", lw=0.8, ls="--", label="N - 2")
    ax[1].set_xlabel("OF amplitude (V)")
    ax[1].set_ylabel("OF chi2")
    ax[1].set_title("regress_chan1: chi2 against amplitude")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    path = out / "nist_regress_chan1_energy_dependence.png"
    fig.savefig(path, dpi=110)
    print(f"plots: {path}")


def noise_streams(data: Path) -> None:
    from cryopipe.characterize.sev_nps import noise_power_spectrum
    from cryopipe.trigger.filters import filter_stream, generic_kernel, noise_estimate
    from cryopipe.io.ljh import open_ljh_run
    from cryopipe.io.sources import open_stream
    from cryopipe.calibrate.line_stats import rice_rate
    from cryopipe.trigger.stage import trigger_one_channel

    files = [str(data / "20230626_run0000_chan4102.ljh"), str(data / "20230626_run0000_chan4109.ljh")]
    run = open_ljh_run(files)
    print(f"noise files: {run.n_records} records x {run.n_samples} samples, {run.describe_gaps()}: a stream")
    spec = {"ljh": files, "ljh_mode": "stream", "sample_frequency": run.sample_frequency,
            "record_length": run.n_samples, "channels": ["chan4102", "chan4109"], "polarity": 1,
            "adc_bits": 16, "adc_range": 20.0}
    stream = open_stream(spec)
    k, anchor = generic_kernel(run.n_samples)
    for c, name in enumerate(spec["channels"]):
        sigma = noise_estimate(stream, c, k, anchor).sigma
        y = np.concatenate([v for _, v in filter_stream(stream, c, k, anchor)])[len(k):-len(k)]
        for ks in (3.5, 4.0, 5.0):
            pred = rice_rate(y, ks * sigma, stream.sample_frequency)
            fired = trigger_one_channel(stream, c, spec, {"threshold_sigma": ks, "holdoff": None,
                                                          "chunk_size": 2**20}).sizes["trigger"]
            print(f"  {name} {ks:.1f} sigma: fired {fired} in {stream.duration:.2f} s ({fired / stream.duration:.3g} Hz);"
                  f" Rice predicts {pred:.3g} Hz ({pred * stream.duration:.3g} triggers)")
        x = stream.read(0, stream.n_samples, [c])[0].reshape(-1, run.n_samples)
        half = x.shape[0] // 2
        p1 = noise_power_spectrum(x[:half], stream.sample_frequency, clean=False)
        p2 = noise_power_spectrum(x[half:], stream.sample_frequency, clean=False)
        edges = np.unique(np.geomspace(1, run.n_samples // 2 + 1, 13).astype(int))
        ratios = [p1[a:b].mean() / p2[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]
        print(f"  {name} NPS first/second half in 12 log bands: {min(ratios):.3f} .. {max(ratios):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REAL), help="folder with the NIST LJH files")
    ap.add_argument("--out", default="results/report/nist", help="folder for the plots")
    args = ap.parse_args()
    regress_chan1(Path(args.data), Path(args.out))
    noise_streams(Path(args.data))


if __name__ == "__main__":
    main()
