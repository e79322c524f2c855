# Detector characterization from the first-pass records (a records file's own records): one job per channel (NPS, SEV and its
# pulse-model fit, optimum filter, resolution, second-pass threshold), gathered per run.


rule characterize_channel:
    input:
        first_pass_records,
    output:
        directory(f"{RESULTS}/{{run}}/characterization/{{channel}}.zarr"),
    params:
        characterize=subconfig("characterize", "threshold_resolution", "max_pulses", "max_noise_records",
                               "min_pulses", "min_noise_records", "min_pulse_snr"),
        code=script_code("characterize_channel.py"),
    log:
        f"{RESULTS}/{{run}}/logs/characterize_{{channel}}.log",
    benchmark:
        f"{RESULTS}/{{run}}/benchmarks/characterize_{{channel}}.tsv",
    threads: channel_threads
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/characterize_channel.py"


rule characterize:
    input:
        lambda w: expand(f"{RESULTS}/{w.run}/characterization/{{channel}}.zarr", channel=channel_names(w.run)),
    output:
        directory(f"{RESULTS}/{{run}}/characterization.zarr"),
    params:
        code=script_code("gather_characterization.py"),
    log:
        f"{RESULTS}/{{run}}/logs/characterize.log",
    benchmark:
        f"{RESULTS}/{{run}}/benchmarks/characterize.tsv",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/gather_characterization.py"
