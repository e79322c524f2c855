# Labels from cuts: the config's cut set (cryopipe.cuts language) applied to a run's features.


rule labels:
    input:
        f"{RESULTS}/{{run}}/features.zarr",
    output:
        directory(f"{RESULTS}/{{run}}/labels.zarr"),
    params:
        cuts=lambda w: cut_set(),
        code=code_version("cryopipe.cuts", "cryopipe.io.stores"),
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
