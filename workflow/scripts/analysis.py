import _bootstrap  # noqa: F401  (puts this checkout's sanode on sys.path)

from sanode.pipeline.stages import analysis_stage, run_stage, setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
run_stage(
    analysis_stage,
    snakemake.config,
    snakemake.params.analysis,
    {key: snakemake.input[key] for key in snakemake.input.keys()},
    dict(snakemake.output.items()),
    threads=snakemake.threads,
)
