import _bootstrap  # noqa: F401  (puts this checkout's sanode on sys.path)

from sanode.pipeline import evaluate_stage, run_stage, setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
eps = snakemake.wildcards.eps
run_stage(
    evaluate_stage,
    snakemake.config,
    snakemake.wildcards.study,
    eps,
    checkpoint=f"{snakemake.input.models}/eps_train={eps}.pt",
    data=snakemake.input.data,
    best_json=snakemake.input.best,
    accuracy_out=snakemake.output.accuracy,
    mse_out=snakemake.output.mse,
    states_out=snakemake.output.states,
    threads=snakemake.threads,
)
