rule prepare_data:
    output:
        data=layout.prepared(DATA, "{study}"),
        meta=layout.prepared(DATA, "{study}", ".json"),
    params:
        # digest of the settings that determine the output: a change reruns the rule
        digest=lambda wc: data_digest(config, wc.study),
    log:
        layout.log("prepare_data", "{study}"),
    benchmark:
        layout.benchmark("prepare_data", "{study}")
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_data.py"
