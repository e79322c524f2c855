"""Rule characterize_channel: NPS, SEV, fit, optimum filter and resolution of one channel."""
from cryopipe.io.stores import open_store, write_store
from cryopipe.characterize.stage import characterize_channel
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("characterize_channel", sm.log[0], threads=sm.threads) as log:
    channel = sm.wildcards.channel
    records = open_store(sm.input[0], "records").sel(channel=[channel])
    ds = characterize_channel(records, dict(sm.params.characterize), what=f"run {sm.wildcards.run}, channel {channel}")
    ds.attrs["inputs"] = [str(sm.input[0])]
    c = ds.isel(channel=0)
    log.info("channel %s: %d noise records, %d clean pulses; resolution %.3g V (expected %.3g V), threshold %.3g V",
             channel, c.n_noise_records, c.n_pulses, c.resolution, c.expected_resolution, c.threshold)
    write_store(ds, sm.output[0], "characterization")
