rule tune:
    input:
        unpack(winner_input),
        data=rules.prepare_data.output.data,
    output:
        trials=layout.trials_table("{study}"),
        best=layout.best_json("{study}"),
        models=directory(layout.models_dir("{study}")),
    params:
        # Ray's experiment folder is not an output: Snakemake must not delete it on a rerun,
        # Tuner.restore resumes from it.
        storage=lambda wc: layout.ray_storage(wc.study),
        out_dir=lambda wc: layout.tune_dir(wc.study),
        # digest of the settings that determine the models: a change reruns the rule (a new Ray
        # experiment and MLflow tune run, see sanode.pipeline.tune.run_study)
        digest=lambda wc: study_digest(config, wc.study),
    log:
        layout.log("tune", "{study}"),
    benchmark:
        layout.benchmark("tune", "{study}")
    threads: workflow.cores
    resources:
        gpu=lambda wc: int(config["ray"].get("gpus", 0)),
    conda:
        CONDA_ENV
    script:
        "../scripts/tune.py"
