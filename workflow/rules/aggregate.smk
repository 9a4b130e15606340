rule aggregate:
    input:
        trials=expand("results/tune/{study}/trials.parquet", study=STUDIES),
        accuracy=evaluation_outputs("accuracy.parquet"),
        mse=evaluation_outputs("mse_curves.parquet"),
    output:
        trials="results/tables/trials.parquet",
        accuracy="results/tables/accuracy.parquet",
        mse_curves="results/tables/mse_curves.parquet",
        secV="results/tables/secV_accuracy.parquet",
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/aggregate.py"
