"""Rule plot_testpulse: test-pulse response vs time (unstable intervals shaded) and the pulser-model
calibration curve of one channel."""
import json

import numpy as np

from cryopipe.io.stores import load_store
from cryopipe.plots import plot_testpulse_calibration, plot_testpulse_response
from cryopipe.runner import step
from cryopipe.testpulse.response import response_curves, unstable_intervals

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_testpulse", sm.log[0], threads=sm.threads):
    ch = sm.wildcards.channel
    ds = load_store(sm.input[0], "testpulse")
    c = ds.sel(channel=ch)
    k_sigma = json.loads(ds.attrs["parameters"])["testpulse"]["k_sigma"]
    t0 = float(ds["timestamp"].min())
    pe = ds["pulse_event"].values
    t = ds["timestamp"].values[pe]
    tpa = ds["tpa"].values[pe]
    clean = c["pulse_clean"].values
    hours = (t - t0) / 3600.0
    plot_testpulse_response(hours, tpa, c["response"].values, c["band_centre"].values, c["band_sigma"].values,
                            clean, c["pulse_stable"].values,
                            unstable_intervals(hours[clean], c["interval_stable"].values[clean]),
                            sm.output.response, k_sigma=k_sigma, label=f"{sm.wildcards.run} / {ch}")
    cal = c["calibration_tpa"].values
    cal = cal[np.isfinite(cal)]
    use = clean & c["pulse_stable"].values & np.isin(np.round(tpa, 4), np.round(cal, 4))
    at = np.quantile(t[use], [0.02, 0.5, 0.98]) if use.any() else np.array([t0])
    tpas, curves = response_curves(t, tpa, c["band_centre"].values, at, use=use)
    kind = ds["record_kind"].values.astype(str)
    tpe = c["tpa_equivalent"].values[(kind == "particle") & c["stable"].values]
    plot_testpulse_calibration(tpas, curves.T, (at - t0) / 3600.0, sm.output.curve, tpe=tpe,
                               line_position=float(c["line_position"]), kev_per_tpa=float(c["kev_per_tpa"]),
                               label=f"{sm.wildcards.run} / {ch}")
