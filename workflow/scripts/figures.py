import _bootstrap  # noqa: F401  (puts this checkout's sanode on sys.path)

from sanode.pipeline.stages import figures_stage, run_stage, setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
studies = snakemake.params.studies
out = snakemake.output
run_stage(
    figures_stage,
    snakemake.config,
    {
        "trials": snakemake.input.trials,
        "accuracy": snakemake.input.accuracy,
        "mse_curves": snakemake.input.mse_curves,
        "secV": snakemake.input.secV,
    },
    {
        "fig3": dict(zip(studies, out.fig3, strict=True)),
        "fig4": dict(zip(studies, out.fig4, strict=True)),
        "tuning": dict(zip(studies, out.tuning, strict=True)),
        "buckets": out.buckets,
    },
)
