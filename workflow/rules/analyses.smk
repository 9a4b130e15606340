# The analyses of the trained models (sanode.pipeline.analyses: paper Figs. 4-12 and three beyond the
# paper): one rule per configured analysis writes its tables, one more draws its figures.
# Inputs, outputs, captions and digests all come from the analysis' own file.
for _name, _files in ANALYSES.items():

    rule:
        name:
            f"analysis_{_name}"
        input:
            **analyses.inputs(config, _name),
        output:
            **_files["tables"],
        params:
            analysis=_name,
            digest=analysis_digest(config, _name),
        log:
            layout.log("analysis", _name),
        benchmark:
            layout.benchmark("analysis", _name)
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
                    category=analyses.get(_name).category,
                )
                for key, path in _files["figures"].items()
            },
        params:
            analysis=_name,
            tables=list(_files["tables"]),
        log:
            layout.log("figures", _name),
        conda:
            CONDA_ENV
        script:
            "../scripts/analysis_figures.py"
