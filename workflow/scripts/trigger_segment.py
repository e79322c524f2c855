"""Rule trigger_segment(_pass1): trigger one time segment of one channel of a run's stream."""
from cryopipe.io.stores import load_store, write_store
from cryopipe.signal.optimum_filter import of_kernel
from cryopipe.characterize.stage import optimum_filter_from
from cryopipe.io.sources import open_stream, stream_files
from cryopipe.trigger.stage import segment_bounds, trigger_one_channel
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step(sm.rule, sm.log[0], threads=sm.threads) as log:
    stream_cfg = sm.params.stream
    trigger_cfg = dict(sm.params.trigger)
    stream = open_stream(stream_cfg)
    name = sm.wildcards.channel
    channel = stream_cfg["channels"].index(name)
    bounds = segment_bounds(stream.n_samples, stream.sample_frequency, trigger_cfg["segment_duration"])
    segment = bounds[int(sm.wildcards.segment)]
    kernel = threshold = template = None
    if sm.input.characterization:  # final pass: the channel's optimum filter at k x its resolution
        char = load_store(sm.input.characterization, "characterization")
        of = optimum_filter_from(char, name)
        kernel = of_kernel(of)
        threshold = float(char["threshold"].sel(channel=name))
        # the pulse the filter is made for: its side lobes (and a saturated pulse's) never trigger
        template = (char["sev"].sel(channel=name).values, of.onset, char["sev_fit"].sel(channel=name).values)
    ds = trigger_one_channel(stream, channel, stream_cfg, trigger_cfg, kernel=kernel, threshold=threshold,
                             segment=segment, inputs=stream_files(stream_cfg), sampling=sm.params.sampling,
                             template=template)
    scanned = sum(b - a for a, b in ds.attrs["scanned"])
    log.info("channel %s, samples [%d, %d) (%.0f %% scanned): %d triggers above %.3g V (%s kernel)", name, *segment,
             100.0 * scanned / max(segment[1] - segment[0], 1), ds.sizes["trigger"], ds.attrs["threshold"],
             "optimum-filter" if kernel else "generic")
    write_store(ds, sm.output[0], "triggers")
