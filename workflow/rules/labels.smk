# Labels from cuts: the config's cut set (cryopipe.cuts.language) applied to a run's features.


rule labels:
    input:
        f"{RESULTS}/{{run}}/features.zarr",
        testpulse=testpulse_input,
    output:
        directory(f"{RESULTS}/{{run}}/labels.zarr"),
    params:
        cuts=lambda w: cut_set(w.run),
        code=script_code("labels.py"),
    log:
        f"{RESULTS}/{{run}}/logs/labels.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/labels.py"
