rule prepare_data:
    output:
        data=f"{DATA}/prepared/{{study}}.pt",
        meta=f"{DATA}/prepared/{{study}}.json",
    log:
        "results/logs/prepare_data/{study}.log",
    benchmark:
        "results/benchmarks/prepare_data/{study}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_data.py"
