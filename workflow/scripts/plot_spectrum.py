"""Rule plot_spectrum: amplitude spectrum of one channel with the calibration line fit."""
import numpy as np

from cryopipe.calibrate.lines import find_line
from cryopipe.io.stores import load_store
from cryopipe.plots import plot_amplitude_spectrum
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_spectrum", sm.log[0], threads=sm.threads):
    ch = sm.wildcards.channel
    feats = load_store(sm.input.features, "features")
    particle = np.array([str(k) for k in feats["record_kind"].values]) == "particle"
    line = kev = None
    name = "of_amplitude_shifted" if "of_amplitude_shifted" in feats else "pulse_height"
    if sm.input.calibration:
        cal = load_store(sm.input.calibration, "calibration")
        name = cal.attrs["amplitude"]
        kev = float(cal["kev_per_volt"].sel(channel=ch))
    amps = feats[name].sel(channel=ch).values[particle]
    if sm.input.calibration:
        cfg = sm.params.calibrate  # the same fit as the calibration's
        line = find_line(amps, None, min_events=cfg["min_line_events"], min_significance=cfg["min_significance"],
                         fit_range=5.0)
    plot_amplitude_spectrum(amps, sm.output[0], line=line, kev_per_volt=kev, label=f"{sm.wildcards.run} / {ch}")
