import _bootstrap  # noqa: F401  (puts this checkout's sanode on sys.path)

from sanode.pipeline.stages import evaluate_stage, run_stage, setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
run_stage(
    evaluate_stage,
    snakemake.config,
    snakemake.wildcards.study,
    snakemake.wildcards.eps,
    models=snakemake.input.models,
    data=snakemake.input.data,
    best_json=snakemake.input.best,
    outputs=dict(snakemake.output.items()),
    threads=snakemake.threads,
)
