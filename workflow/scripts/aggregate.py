import _bootstrap  # noqa: F401  (puts this checkout's sanode on sys.path)

from sanode.pipeline.stages import aggregate_stage, run_stage, setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
run_stage(
    aggregate_stage,
    list(snakemake.input.trials),
    list(snakemake.input.accuracy),
    list(snakemake.input.mse),
    dict(snakemake.output.items()),
)
