import _bootstrap  # noqa: F401  (puts this checkout's sanode on sys.path)
import torch

from sanode.analyses import STAGES
from sanode.pipeline import run_stage, setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
torch.set_num_threads(max(1, snakemake.threads))
studies = snakemake.params.studies
extra = {"states": snakemake.input.states} if "states" in snakemake.input.keys() else {}
run_stage(
    STAGES[snakemake.params.analysis],
    snakemake.config,
    dict(zip(studies, snakemake.input.models, strict=True)),
    dict(zip(studies, snakemake.input.data, strict=True)),
    dict(snakemake.output.items()),
    **extra,
)
