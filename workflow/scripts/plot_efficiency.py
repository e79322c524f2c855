"""Rule plot_efficiency: trigger, cut and total efficiency of one channel."""
from cryopipe.io.stores import load_store
from cryopipe.plots import plot_efficiency
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_efficiency", sm.log[0], threads=sm.threads):
    eff = load_store(sm.input[0], "efficiency").sel(channel=sm.wildcards.channel)
    curve = eff.swap_dims(point="amplitude").set_coords([c for c in ("amplitude", "energy") if c in eff])
    for k in ("threshold", "resolution", "trigger_x50", "trigger_x50_err", "trigger_width", "trigger_width_err",
              "trigger_plateau", "cut_x50", "cut_x50_err", "cut_width", "cut_width_err", "cut_plateau",
              "total_x50", "total_x50_err", "total_width", "total_width_err", "total_plateau"):
        if k in curve:
            curve.attrs[k] = float(curve[k])
    plot_efficiency(curve, sm.output[0], energy="energy" in curve.coords, label=f"{sm.wildcards.run} / {sm.wildcards.channel}")
