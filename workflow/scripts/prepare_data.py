import _bootstrap  # noqa: F401  (puts this checkout's sanode on sys.path)

from sanode.pipeline.stages import prepare_stage, run_stage, setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
run_stage(prepare_stage, snakemake.config, snakemake.wildcards.study, snakemake.output.data)
