rule figures:
    input:
        **rules.aggregate.output,
    output:
        fig3=report(
            expand("results/figures/fig3_mf_vs_eps_test_{study}.png", study=STUDIES),
            caption="../report/fig3.rst",
            category="Robustness",
        ),
        fig4=report(
            expand("results/figures/fig4a_mse_over_time_{study}.png", study=STUDIES),
            caption="../report/fig4.rst",
            category="Robustness",
        ),
        tuning=report(
            expand("results/figures/tuning_{study}.png", study=STUDIES),
            caption="../report/tuning.rst",
            category="Tuning",
        ),
        buckets=report(
            "results/figures/secV_accuracy_buckets.png",
            caption="../report/buckets.rst",
            category="Accuracy",
        ),
    params:
        studies=STUDIES,
    log:
        "results/logs/figures.log",
    benchmark:
        "results/benchmarks/figures.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/figures.py"
