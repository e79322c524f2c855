# Stream trigger: per-channel trigger search (parallel jobs), then one gather job that merges
# triggers across channels, draws noise triggers and cuts the records of all channels.


rule trigger_channel:
    input:
        stream_inputs,
    output:
        directory(f"{RESULTS}/{{run}}/triggers/{{channel}}.zarr"),
    params:
        stream=lambda w: stream_params(w.run),
        trigger=subconfig("trigger", "threshold_sigma", "holdoff", "chunk_size"),
        code=code_version("cryopipe.trigger", "cryopipe.filters", "cryopipe.io.csmpl", "cryopipe.io.stores"),
    log:
        f"{RESULTS}/{{run}}/logs/trigger_{{channel}}.log",
    threads: 2
    resources:
        mem_mb=1000,
        runtime=120,
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
        code=code_version("cryopipe.trigger", "cryopipe.io.csmpl", "cryopipe.io.stores"),
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
