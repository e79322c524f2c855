# Stream trigger, scattered over channels and time segments (one job each), gathered per channel;
# then one job per run merges the channels' triggers, draws noise triggers and cuts the records.


rule trigger_segment:
    input:
        stream_inputs,
    output:
        directory(f"{RESULTS}/{{run}}/triggers/{{channel}}/segment_{{segment}}.zarr"),
    params:
        stream=lambda w: stream_params(w.run),
        trigger=subconfig("trigger", "threshold_sigma", "holdoff", "chunk_size", "segment_duration"),
        code=code_version("cryopipe.trigger", "cryopipe.filters", "cryopipe.pipeline", "cryopipe.io.csmpl"),
    log:
        f"{RESULTS}/{{run}}/logs/trigger_{{channel}}_segment_{{segment}}.log",
    threads: 2
    resources:
        mem_mb=1000,
        runtime=120,
    conda:
        CONDA_ENV
    script:
        "../scripts/trigger_segment.py"


rule trigger_channel:
    input:
        lambda w: expand(f"{RESULTS}/{w.run}/triggers/{w.channel}/segment_{{segment}}.zarr",
                         segment=range(n_segments(w.run))),
    output:
        directory(f"{RESULTS}/{{run}}/triggers/{{channel}}.zarr"),
    params:
        code=code_version("cryopipe.pipeline", "cryopipe.io.stores"),
    log:
        f"{RESULTS}/{{run}}/logs/trigger_{{channel}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/trigger_channel.py"


rule records:
    input:
        stream=stream_inputs,
        triggers=lambda w: expand(f"{RESULTS}/{w.run}/triggers/{{channel}}.zarr", channel=channel_names(w.run)),
    output:
        directory(f"{RESULTS}/{{run}}/records.zarr"),
    params:
        stream=lambda w: stream_params(w.run),
        trigger=subconfig("trigger", "holdoff", "noise_records", "seed"),
        code=code_version("cryopipe.trigger", "cryopipe.pipeline", "cryopipe.io.csmpl", "cryopipe.io.stores"),
    log:
        f"{RESULTS}/{{run}}/logs/records.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/records.py"
