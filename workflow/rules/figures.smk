rule figures:
    input:
        **rules.aggregate.output,
    output:
        fig3=report(
            [layout.figure(f"fig3_mf_vs_eps_test_{s}") for s in STUDIES],
            caption="../report/fig3.rst",
            category="Robustness",
        ),
        fig4=report(
            [layout.figure(f"fig4a_mse_over_time_{s}") for s in STUDIES],
            caption="../report/fig4.rst",
            category="Robustness",
        ),
        tuning=report(
            [layout.figure(f"tuning_{s}") for s in STUDIES],
            caption="../report/tuning.rst",
            category="Tuning",
        ),
        buckets=report(
            layout.figure("secV_accuracy_buckets"),
            caption="../report/buckets.rst",
            category="Accuracy",
        ),
    params:
        studies=STUDIES,
    log:
        layout.log("figures"),
    benchmark:
        layout.benchmark("figures")
    conda:
        CONDA_ENV
    script:
        "../scripts/figures.py"
