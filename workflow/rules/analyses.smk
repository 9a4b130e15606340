# The paper's analyses (Figs. 4-12) and two beyond it (baselines, attractor census): one rule
# per configured analysis writes its tables, one more draws its figures from them.
for _name, _files in ANALYSES.items():

    rule:
        name:
            f"analysis_{_name}"
        input:
            **analysis_inputs(_name),
        output:
            **_files["tables"],
        params:
            analysis=_name,
            studies=analysis_studies(config, _name),
            settings=analysis_digest(config, _name),
        log:
            f"results/logs/analysis/{_name}.log",
        benchmark:
            f"results/benchmarks/analysis/{_name}.tsv"
        threads: 2
        conda:
            CONDA_ENV
        script:
            "../scripts/analysis.py"

    rule:
        name:
            f"figures_{_name}"
        input:
            **_files["tables"],
            accuracy=rules.aggregate.output.accuracy,
        output:
            **{
                key: report(
                    path,
                    caption=f"../report/{_files['captions'][key]}.rst",
                    category="Paper studies" if _name not in ("baselines", "census") else
                    "Beyond the paper",
                )
                for key, path in _files["figures"].items()
            },
        params:
            analysis=_name,
            tables=list(_files["tables"]),
        log:
            f"results/logs/figures/{_name}.log",
        conda:
            CONDA_ENV
        script:
            "../scripts/analysis_figures.py"
