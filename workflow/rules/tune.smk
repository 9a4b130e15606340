rule tune:
    input:
        data=rules.prepare_data.output.data,
    output:
        trials="results/tune/{study}/trials.parquet",
        best="results/tune/{study}/best.json",
        models=directory("results/tune/{study}/best"),
    params:
        # Ray's experiment folder is not an output: Snakemake must not delete it on a rerun,
        # Tuner.restore resumes from it.
        storage=lambda wc: f"results/ray/{wc.study}",
        out_dir=lambda wc: f"results/tune/{wc.study}",
        # the settings that determine the models: a change reruns the rule (a new Ray
        # experiment and MLflow study run, see sanode.tune.run_study)
        settings=lambda wc: study_digest(config, wc.study),
    log:
        "results/logs/tune/{study}.log",
    benchmark:
        "results/benchmarks/tune/{study}.tsv"
    threads: workflow.cores
    resources:
        gpu=lambda wc: int(config["ray"].get("gpus", 0)),
    conda:
        CONDA_ENV
    script:
        "../scripts/tune.py"
