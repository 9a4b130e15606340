rule evaluate:
    input:
        models=rules.tune.output.models,
        best=rules.tune.output.best,
        data=rules.prepare_data.output.data,
    output:
        accuracy="results/eval/{study}/eps_train={eps}/accuracy.parquet",
        mse="results/eval/{study}/eps_train={eps}/mse_curves.parquet",
        states="results/eval/{study}/eps_train={eps}/states.pt",
    params:
        settings=lambda wc: evaluation_digest(config, wc.study),
    log:
        "results/logs/evaluate/{study}/eps_train={eps}.log",
    benchmark:
        "results/benchmarks/evaluate/{study}/eps_train={eps}.tsv"
    threads: 1
    resources:
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"
