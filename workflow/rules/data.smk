rule prepare_data:
    output:
        data=f"{DATA}/prepared/{{study}}.pt",
        meta=f"{DATA}/prepared/{{study}}.json",
    params:
        # the settings that determine the output: a change reruns the rule
        settings=lambda wc: data_digest(config, wc.study),
    log:
        "results/logs/prepare_data/{study}.log",
    benchmark:
        "results/benchmarks/prepare_data/{study}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_data.py"
