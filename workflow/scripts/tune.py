import _bootstrap  # noqa: F401  (puts this checkout's sanode on sys.path)

from sanode.pipeline.stages import run_stage, setup_logging, tune_stage

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
run_stage(
    tune_stage,
    snakemake.config,
    snakemake.wildcards.study,
    snakemake.input.data,
    out_dir=snakemake.params.out_dir,
    storage_dir=snakemake.params.storage,
    threads=snakemake.threads,
    winner=snakemake.input.get("winner"),
)
