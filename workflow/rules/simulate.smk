# Simulated detector streams (the embedded default data source).


rule simulate_stream:
    output:
        stream=directory(f"{RESULTS}/{{run}}/stream"),
        truth=directory(f"{RESULTS}/{{run}}/truth.zarr"),
    params:
        simulation=lambda w: canonical(RUNS[w.run]["simulate"]),
        stream=lambda w: stream_params(w.run),
        code=script_code("simulate_stream.py"),
    log:
        f"{RESULTS}/{{run}}/logs/simulate_stream.log",
    threads: 1
    resources:
        mem_mb=1500,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/simulate_stream.py"
