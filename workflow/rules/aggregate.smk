rule aggregate:
    input:
        trials=[layout.trials_table(study) for study in STUDIES],
        accuracy=evaluation_outputs("accuracy.parquet"),
        mse=evaluation_outputs("mse_curves.parquet"),
    output:
        trials=layout.table("trials"),
        accuracy=layout.table("accuracy"),
        mse_curves=layout.table("mse_curves"),
        secV=layout.table("secV_accuracy"),
    log:
        layout.log("aggregate"),
    benchmark:
        layout.benchmark("aggregate")
    conda:
        CONDA_ENV
    script:
        "../scripts/aggregate.py"
