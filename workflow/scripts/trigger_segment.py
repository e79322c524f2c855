"""Rule trigger_segment: trigger one time segment of one channel of a run's stream."""
from cryopipe.io.stores import write_store
from cryopipe.pipeline import open_run_stream, segment_bounds, trigger_one_channel
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("trigger_segment", sm.log[0]) as log:
    stream_cfg = sm.params.stream
    trigger_cfg = dict(sm.params.trigger)
    stream = open_run_stream(stream_cfg)
    channel = stream_cfg["channels"].index(sm.wildcards.channel)
    bounds = segment_bounds(stream.n_samples, stream.sample_frequency, trigger_cfg["segment_duration"])
    segment = bounds[int(sm.wildcards.segment)]
    ds = trigger_one_channel(stream, channel, stream_cfg, trigger_cfg, segment=segment, inputs=stream_cfg["csmpl"])
    log.info("channel %s, samples [%d, %d): %d triggers above %.3g V", sm.wildcards.channel, *segment,
             ds.sizes["trigger"], ds.attrs["threshold"])
    write_store(ds, sm.output[0], "triggers")
