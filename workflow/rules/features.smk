# Per-event features of the final records: one job per channel (scatter), then one gather job per
# run. Every feature family of cryopipe.features runs (those needing the characterization only with
# it), then the user's plug-ins (features.plugins); the gather adds the energy with a calibration.


rule features_channel:
    input:
        records=f"{RESULTS}/{{run}}/records.zarr",
        characterization=characterization_input,
        plugins=feature_plugins,
    output:
        directory(f"{RESULTS}/{{run}}/features/{{channel}}.zarr"),
    params:
        features=subconfig("features"),
        plugin_hashes=feature_plugin_hashes,
        code=script_code("features_channel.py"),
    log:
        f"{RESULTS}/{{run}}/logs/features_{{channel}}.log",
    benchmark:
        f"{RESULTS}/{{run}}/benchmarks/features_{{channel}}.tsv",
    threads: channel_threads
    resources:
        mem_mb=1000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/features_channel.py"


rule features:
    input:
        parts=lambda w: expand(f"{RESULTS}/{w.run}/features/{{channel}}.zarr", channel=channel_names(w.run)),
        calibration=calibration_input,
    output:
        directory(f"{RESULTS}/{{run}}/features.zarr"),
    params:
        roles=lambda w: RUNS[w.run]["roles"],
        code=script_code("gather_features.py"),
    log:
        f"{RESULTS}/{{run}}/logs/features.log",
    benchmark:
        f"{RESULTS}/{{run}}/benchmarks/features.tsv",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/gather_features.py"
