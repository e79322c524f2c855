# Stream trigger, scattered over channels and time segments (one job each), gathered per channel;
# then one job per run merges the channels' triggers, draws noise triggers and cuts the records.
# Two passes (Cait's workflow): pass 1 with the generic pulse kernel at threshold_sigma robust sigmas
# (results/<run>/pass1/; it cuts only what the characterization reads: the noise records and at
# most characterize.max_pulses particle records drawn over the whole run), the final pass with each
# channel's optimum filter at characterize.threshold_resolution times its resolution (results/<run>/). With characterize.enabled
# false, the final pass uses the pass-1 trigger. Runs of hardware-triggered records (CRESST rdt) are
# read, not triggered (rule read_records).

for PASS, PREFIX in PASS_PREFIX.items():
    SUFFIX = "" if PASS == "final" else f"_{PASS}"

    rule:
        name:
            f"trigger_segment{SUFFIX}"
        input:
            stream=stream_inputs,
            characterization=characterization_input if PASS == "final" else [],
        output:
            directory(f"{RESULTS}/{{run}}/{PREFIX}triggers/{{channel}}/segment_{{segment}}.zarr"),
        params:
            stream=lambda w: stream_params(w.run),
            trigger=lambda w: {**run_section(RUNS, w.run, "trigger", "threshold_sigma", "holdoff", "chunk_size"),
                               "segment_duration": segment_duration(w.run)},
            sampling=lambda w, PASS=PASS: first_pass_scan(w.run, PASS),
            code=script_code("trigger_segment.py"),
        log:
            f"{RESULTS}/{{run}}/logs/{PREFIX}trigger_{{channel}}_segment_{{segment}}.log",
        benchmark:
            f"{RESULTS}/{{run}}/benchmarks/{PREFIX}trigger_{{channel}}_segment_{{segment}}.tsv",
        threads: channel_threads
        resources:
            mem_mb=1000,
            runtime=120,
        conda:
            CONDA_ENV
        script:
            "../scripts/trigger_segment.py"

    rule:
        name:
            f"gather_triggers{SUFFIX}"
        input:
            lambda w, PREFIX=PREFIX: expand(
                f"{RESULTS}/{w.run}/{PREFIX}triggers/{w.channel}/segment_{{segment}}.zarr",
                segment=range(n_segments(w.run)),
            ),
        output:
            directory(f"{RESULTS}/{{run}}/{PREFIX}triggers/{{channel}}.zarr"),
        params:
            code=script_code("gather_triggers.py"),
        log:
            f"{RESULTS}/{{run}}/logs/{PREFIX}trigger_{{channel}}.log",
        benchmark:
            f"{RESULTS}/{{run}}/benchmarks/{PREFIX}trigger_{{channel}}.tsv",
        threads: 1
        resources:
            mem_mb=500,
            runtime=10,
        conda:
            CONDA_ENV
        script:
            "../scripts/gather_triggers.py"

    rule:
        name:
            f"records{SUFFIX}"
        input:
            stream=stream_inputs,
            triggers=lambda w, PREFIX=PREFIX: expand(
                f"{RESULTS}/{w.run}/{PREFIX}triggers/{{channel}}.zarr", channel=channel_names(w.run)
            ),
        output:
            directory(f"{RESULTS}/{{run}}/{PREFIX}records.zarr"),
        wildcard_constraints:
            run=run_pattern(stream_runs()),
        params:
            stream=lambda w: stream_params(w.run),
            trigger=lambda w, PASS=PASS: {
                **run_section(RUNS, w.run, "trigger", "holdoff", "noise_records", "seed", "pulser_exclusion"),
                **first_pass_sampling(w.run, PASS)},
            code=script_code("records.py"),
        log:
            f"{RESULTS}/{{run}}/logs/{PREFIX}records.log",
        benchmark:
            f"{RESULTS}/{{run}}/benchmarks/{PREFIX}records.tsv",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=60,
        conda:
            CONDA_ENV
        script:
            "../scripts/records.py"


rule read_records:
    input:
        stream_inputs,
    output:
        directory(f"{RESULTS}/{{run}}/records.zarr"),
    wildcard_constraints:
        run=run_pattern(record_file_runs()),
    params:
        stream=lambda w: stream_params(w.run),
        code=script_code("read_records.py"),
    log:
        f"{RESULTS}/{{run}}/logs/read_records.log",
    benchmark:
        f"{RESULTS}/{{run}}/benchmarks/read_records.tsv",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/read_records.py"
