"""Rule trigger_channel: trigger one channel of a run's stream; write its trigger list."""
from cryopipe.pipeline import open_run_stream, trigger_one_channel
from cryopipe.io.stores import write_store
from cryopipe.runner import Progress, step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("trigger_channel", sm.log[0]) as log:
    stream_cfg = sm.params.stream
    stream = open_run_stream(stream_cfg)
    channel = stream_cfg["channels"].index(sm.wildcards.channel)
    ds = trigger_one_channel(stream, channel, stream_cfg, dict(sm.params.trigger),
                             inputs=stream_cfg["csmpl"], progress=Progress(log, "triggering"))
    log.info("channel %s: %d triggers above %.3g V (%.1f sigma)", sm.wildcards.channel,
             ds.sizes["trigger"], ds.attrs["threshold"], sm.params.trigger["threshold_sigma"])
    write_store(ds, sm.output[0], "triggers")
