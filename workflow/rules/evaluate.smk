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
        settings=lambda wc: evaluation_digest(config, wc.study),
    log:
        layout.log("evaluate", "{study}", "eps_train={eps}"),
    benchmark:
        layout.benchmark("evaluate", "{study}", "eps_train={eps}")
    threads: 1
    resources:
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"
