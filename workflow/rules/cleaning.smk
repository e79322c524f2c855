# Deep-learning data cleaning: labelled records simulated from each run's own characterization
# (every event class), a small network trained on them, predictions of every configured model on
# the run's records, and an evaluation on a held-out simulated set. "universal" is the model
# shipped with cryopipe (trained on cryopipe's universal simulation only).


rule simulate_records:
    input:
        f"{RESULTS}/{{run}}/characterization.zarr",
    output:
        directory(f"{RESULTS}/{{run}}/simset/{{split}}.zarr"),
    params:
        simulate=canonical(config["cleaning"]["simulate"]),
        code=script_code("simulate_records.py"),
    wildcard_constraints:
        split="train|test",
    log:
        f"{RESULTS}/{{run}}/logs/simulate_records_{{split}}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/simulate_records.py"


rule train:
    input:
        f"{RESULTS}/{{run}}/simset/train.zarr",
    output:
        model=f"{RESULTS}/models/{{run}}/{{architecture}}.pt",
        meta=f"{RESULTS}/models/{{run}}/{{architecture}}.json",
        curve=report(f"{RESULTS}/report/{{run}}/loss_{{architecture}}.png", caption="../report/loss.rst",
                     category="Cleaning", subcategory="{run}"),
    params:
        # no cleaning.cutoff: the checkpoint is chosen at the model's own cutoff (0.5); the run's cutoff
        # applies where decisions are made (predict, evaluate), so changing it never retrains
        train=canonical(config["cleaning"]["train"]),
        code=script_code("train.py"),
    wildcard_constraints:
        architecture="|".join(architectures.ARCHITECTURES),
    log:
        f"{RESULTS}/{{run}}/logs/train_{{architecture}}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    script:
        "../scripts/train.py"


rule predict:
    input:
        records=f"{RESULTS}/{{run}}/records.zarr",
        model=model_checkpoint,
    output:
        directory(f"{RESULTS}/{{run}}/predictions/{{model}}.zarr"),
    params:
        cutoff=config["cleaning"]["cutoff"],
        code=script_code("predict.py"),
    log:
        f"{RESULTS}/{{run}}/logs/predict_{{model}}.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/predict.py"


rule evaluate:
    input:
        test=f"{RESULTS}/{{run}}/simset/test.zarr",
        model=model_checkpoint,
    output:
        report(directory(f"{RESULTS}/report/{{run}}/evaluation_{{model}}"), patterns=["{name}.png"],
               caption="../report/evaluation.rst", category="Cleaning", subcategory="{run}"),
    params:
        cutoff=config["cleaning"]["cutoff"],
        code=script_code("evaluate.py"),
    log:
        f"{RESULTS}/{{run}}/logs/evaluate_{{model}}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"


rule cleaning_report:
    input:
        records=f"{RESULTS}/{{run}}/records.zarr",
        features=f"{RESULTS}/{{run}}/features.zarr",
        labels=f"{RESULTS}/{{run}}/labels.zarr",
        predictions=f"{RESULTS}/{{run}}/predictions/{{model}}.zarr",
    output:
        report(directory(f"{RESULTS}/report/{{run}}/cleaning_{{model}}"), patterns=["{name}.png"],
               caption="../report/cleaning.rst", category="Cleaning", subcategory="{run}"),
    params:
        max_pca_events=20000,
        code=script_code("cleaning_report.py"),
    log:
        f"{RESULTS}/{{run}}/logs/cleaning_report_{{model}}.log",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/cleaning_report.py"
