# Figures for people to look at (also collected by `snakemake --report report.html`).


rule plot_characterization:
    input:
        f"{RESULTS}/{{run}}/characterization.zarr",
    output:
        sev=report(f"{RESULTS}/report/{{run}}/sev_{{channel}}.png", caption="../report/sev.rst",
                   category="Characterization", subcategory="{run}"),
    params:
        code=script_code("plot_sev.py"),
    log:
        f"{RESULTS}/{{run}}/logs/plot_sev_{{channel}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_sev.py"


rule plot_noise:
    input:
        f"{RESULTS}/{{run}}/characterization.zarr",
    output:
        nps=report(f"{RESULTS}/report/{{run}}/nps.png", caption="../report/nps.rst",
                   category="Characterization", subcategory="{run}"),
        transfer=report(f"{RESULTS}/report/{{run}}/filter_transfer.png", caption="../report/filter.rst",
                        category="Characterization", subcategory="{run}"),
    params:
        code=script_code("plot_noise.py"),
    log:
        f"{RESULTS}/{{run}}/logs/plot_noise.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_noise.py"


rule plot_spectrum:
    input:
        features=f"{RESULTS}/{{run}}/features.zarr",
        calibration=calibration_input,
    output:
        report(f"{RESULTS}/report/{{run}}/spectrum_{{channel}}.png", caption="../report/spectrum.rst",
               category="Calibration", subcategory="{run}"),
    params:
        calibrate=subconfig("calibrate"),
        code=script_code("plot_spectrum.py"),
    log:
        f"{RESULTS}/{{run}}/logs/plot_spectrum_{{channel}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_spectrum.py"


rule plot_efficiency:
    input:
        f"{RESULTS}/{{run}}/efficiency.zarr",
    output:
        report(f"{RESULTS}/report/{{run}}/efficiency_{{channel}}.png", caption="../report/efficiency.rst",
               category="Efficiency", subcategory="{run}"),
    params:
        code=script_code("plot_efficiency.py"),
    log:
        f"{RESULTS}/{{run}}/logs/plot_efficiency_{{channel}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_efficiency.py"


rule plot_light_yield:
    input:
        features=f"{RESULTS}/{{run}}/features.zarr",
        labels=f"{RESULTS}/{{run}}/labels.zarr",
    output:
        report(f"{RESULTS}/report/{{run}}/light_yield.png", caption="../report/light_yield.rst",
               category="Calibration", subcategory="{run}"),
    params:
        roles=lambda w: RUNS[w.run]["roles"],
        code=script_code("plot_light_yield.py"),
    log:
        f"{RESULTS}/{{run}}/logs/plot_light_yield.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_light_yield.py"


rule plot_energy_dependence:
    input:
        features=f"{RESULTS}/{{run}}/features.zarr",
    output:
        report(f"{RESULTS}/report/{{run}}/energy_dependence_{{channel}}.png", caption="../report/energy_dependence.rst",
               category="Calibration", subcategory="{run}"),
    params:
        code=script_code("plot_energy_dependence.py"),
    log:
        f"{RESULTS}/{{run}}/logs/plot_energy_dependence_{{channel}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_energy_dependence.py"
