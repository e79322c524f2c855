"""Characterization stage: what the rules characterize_channel, characterize, plot_characterization
and plot_noise read, call and write.

The maths lives in `cryopipe.characterize.channel` (one channel from its records) and
`cryopipe.characterize.sev_nps` (NPS, SEV, pulse-model fit); `characterize_channel` packs one
channel's result as a "characterization" Dataset. No Snakemake here: paths, plain config dicts and
wildcard values in.
"""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from cryopipe.characterize.channel import FIT_PARAMETERS, characterize_records
from cryopipe.io.stores import gather_channel_stores, load_store, open_store, provenance, write_store


def characterize_channel(records: xr.Dataset, cfg: dict, what: str) -> xr.Dataset:
    """The "characterization" Dataset of one channel from its (first-pass) records: the results of
    `cryopipe.characterize.channel.characterize_records` (same arguments) packed as the store."""
    c = characterize_records(records, cfg=cfg, what=what)
    fs, n, pre, of, fit = c["sample_frequency"], c["record_length"], c["pretrigger"], c["of"], c["fit"]
    return xr.Dataset(
        {
            "sev": (("channel", "sample"), c["sev"][None].astype(np.float32)),
            "sev_fit": (("channel", "sample"), np.asarray(fit["model"], np.float32)[None]),
            "fit_parameters": (("channel", "parameter"), np.array([[fit[p] for p in FIT_PARAMETERS]])),
            "nps": (("channel", "frequency"), c["nps"][None]),
            "filter_real": (("channel", "frequency"), of.transfer.real[None]),
            "filter_imag": (("channel", "frequency"), of.transfer.imag[None]),
            "resolution": ("channel", [c["resolution"]]),
            "expected_resolution": ("channel", [c["expected_resolution"]]),
            "threshold": ("channel", [c["threshold"]]),
            "n_noise_records": ("channel", [c["n_noise_records"]]),
            "n_pulses": ("channel", [c["n_pulses"]]),
        },
        coords={"channel": records["channel"].values, "frequency": np.fft.rfftfreq(n, 1.0 / fs),
                "time": ("sample", (np.arange(n) - pre) / fs), "parameter": list(FIT_PARAMETERS)},
        attrs=provenance("characterization", parameters=cfg, inputs=[], sample_frequency=fs, record_length=n,
                         pretrigger=pre,
                         units=json.dumps({"sev": "1", "nps": "V^2/Hz", "resolution": "V", "threshold": "V",
                                           "fit_parameters": "s (t0, tau_*), 1 (An, At)",
                                           "filter_real": "1", "frequency": "Hz", "time": "s"})),
    )


def run_characterize_channel(*, records: str, output: str, channel: str, run: str, params: dict, log) -> None:
    """Rule characterize_channel: characterize `channel` of the records store `records`, write the
    one-channel characterization store `output`."""
    ds = characterize_channel(open_store(records, "records").sel(channel=[channel]), params,
                              what=f"run {run}, channel {channel}")
    ds.attrs["inputs"] = [str(records)]
    c = ds.isel(channel=0)
    log.info("channel %s: %d noise records, %d clean pulses; resolution %.3g V (expected %.3g V), threshold %.3g V",
             channel, c.n_noise_records, c.n_pulses, c.resolution, c.expected_resolution, c.threshold)
    write_store(ds, output, "characterization")


def run_characterize(*, parts: list, output: str, log) -> None:
    """Rule characterize: gather a run's per-channel characterization stores into one."""
    ds = gather_channel_stores(parts, output, "characterization")
    log.info("characterization of %d channels", ds.sizes["channel"])


def run_plot_characterization(*, characterization: str, output: str, channel: str, run: str) -> None:
    """Rule plot_characterization: the SEV of `channel` with its pulse-model fit (figure `output`)."""
    from cryopipe.io.stores import record_pretrigger
    from cryopipe.plots import plot_sev

    char = load_store(characterization, "characterization").sel(channel=channel)
    plot_sev(char["sev"].values, char.attrs["sample_frequency"], output, model=char["sev_fit"].values,
             label=f"{run} / {channel}", pretrigger=record_pretrigger(char))


def run_plot_noise(*, characterization: str, nps: str, transfer: str, run: str) -> None:
    """Rule plot_noise: the run's noise power spectra (figure `nps`) and optimum-filter transfer
    functions (figure `transfer`)."""
    from cryopipe.characterize.channel import optimum_filter_from
    from cryopipe.plots import plot_filter_transfer, plot_nps

    char = load_store(characterization, "characterization")
    names = [str(c) for c in char["channel"].values]
    plot_nps(char["nps"].values, char.attrs["sample_frequency"], nps, channels=names, label=run)
    plot_filter_transfer({ch: optimum_filter_from(char, ch) for ch in names}, transfer, label=run)
