rule evaluate:
    input:
        models=rules.tune.output.models,
        best=rules.tune.output.best,
        data=rules.prepare_data.output.data,
    output:
        accuracy=layout.evaluation("{study}", "{eps}", "accuracy.parquet"),
        mse=layout.evaluation("{study}", "{eps}", "mse_curves.parquet"),
        states=layout.evaluation("{study}", "{eps}", "states.pt"),
    params:
        digest=lambda wc: evaluation_digest(config, wc.study),
    log:
        layout.log("evaluate", "{study}", "eps_train={eps}"),
    benchmark:
        layout.benchmark("evaluate", "{study}", "eps_train={eps}")
    # as many cores as one of the study's trials trains on (resources.cpus_per_trial: 2 for
    # the images in default.yaml, whose evaluation runs 10,000 test images at T = 120; 1 for
    # the letters, whose jobs then run two at a time); Snakemake caps it at --cores
    threads: lambda wc: study_settings(config, wc.study).trial_threads
    resources:
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"
