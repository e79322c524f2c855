# Energy calibration from a line of known energy (one job per channel, gathered per run).


rule calibrate_channel:
    input:
        features=f"{RESULTS}/{{run}}/features/{{channel}}.zarr",
        characterization=f"{RESULTS}/{{run}}/characterization.zarr",
    output:
        directory(f"{RESULTS}/{{run}}/calibration/{{channel}}.zarr"),
    params:
        calibrate=subconfig("calibrate"),
        code=script_code("calibrate_channel.py"),
    log:
        f"{RESULTS}/{{run}}/logs/calibrate_{{channel}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/calibrate_channel.py"


rule calibrate:
    input:
        lambda w: expand(f"{RESULTS}/{w.run}/calibration/{{channel}}.zarr", channel=channel_names(w.run)),
    output:
        directory(f"{RESULTS}/{{run}}/calibration.zarr"),
    params:
        code=script_code("gather_calibration.py"),
    log:
        f"{RESULTS}/{{run}}/logs/calibrate.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/gather_calibration.py"
