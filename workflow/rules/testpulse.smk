# Test-pulse analysis (runs with test pulses): response vs time and TPA, stability cut, pulser-model
# calibration (cryopipe.testpulse.response), and its figures.


rule testpulse:
    input:
        records=f"{RESULTS}/{{run}}/records.zarr",
        characterization=f"{RESULTS}/{{run}}/characterization.zarr",
    output:
        directory(f"{RESULTS}/{{run}}/testpulse.zarr"),
    params:
        testpulse=subconfig("testpulse"),
        calibrate=subconfig("calibrate", "line_energy", "min_line_events", "min_significance"),
        code=script_code("testpulse.py"),
    log:
        f"{RESULTS}/{{run}}/logs/testpulse.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/testpulse.py"


rule plot_testpulse:
    input:
        f"{RESULTS}/{{run}}/testpulse.zarr",
    output:
        response=report(f"{RESULTS}/report/{{run}}/testpulse_response_{{channel}}.png",
                        caption="../report/testpulse_response.rst", category="Test pulses", subcategory="{run}"),
        curve=report(f"{RESULTS}/report/{{run}}/testpulse_calibration_{{channel}}.png",
                     caption="../report/testpulse_calibration.rst", category="Test pulses", subcategory="{run}"),
    params:
        code=script_code("plot_testpulse.py"),
    log:
        f"{RESULTS}/{{run}}/logs/plot_testpulse_{{channel}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_testpulse.py"
