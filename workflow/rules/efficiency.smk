# Trigger and cut efficiency from SEV pulses injected onto the run's noise records (one job per
# channel, gathered per run), featured by the features stage's families (user plug-ins included).


rule efficiency_channel:
    input:
        records=f"{RESULTS}/{{run}}/records.zarr",
        characterization=f"{RESULTS}/{{run}}/characterization.zarr",
        features=f"{RESULTS}/{{run}}/features/{{channel}}.zarr",   # pulse heights: the curve's range
        calibration=calibration_input,
        plugins=feature_plugins,
    output:
        directory(f"{RESULTS}/{{run}}/efficiency/{{channel}}.zarr"),
    params:
        efficiency=subconfig("efficiency"),
        cuts=lambda w: cut_set(w.run),
        plugins=feature_plugins,
        plugin_hashes=feature_plugin_hashes,
        code=script_code("efficiency_channel.py"),
    log:
        f"{RESULTS}/{{run}}/logs/efficiency_{{channel}}.log",
    threads: channel_threads
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/efficiency_channel.py"


rule efficiency:
    input:
        lambda w: expand(f"{RESULTS}/{w.run}/efficiency/{{channel}}.zarr", channel=channel_names(w.run)),
    output:
        directory(f"{RESULTS}/{{run}}/efficiency.zarr"),
    params:
        code=script_code("gather_efficiency.py"),
    log:
        f"{RESULTS}/{{run}}/logs/efficiency.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/gather_efficiency.py"
