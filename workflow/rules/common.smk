# Config validation (schema, then the package's own checks) and input functions.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir).resolve()))  # import sanode from this checkout

from sanode import analyses, layout
from sanode.config import ConfigError
from sanode.pipeline.study import (
    data_digest,
    eps_train_grid,
    evaluation_digest,
    study_digest,
    study_settings,
    winner_of,
)
from sanode.pipeline.validate import analysis_digest, validate_config

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
# one validation pass first: one line per problem (file, key path, fix), never a schema dump
try:
    validate_config(
        config, schema=SCHEMA, source=", ".join(map(str, workflow.configfiles)) or "config"
    )
except ConfigError as err:
    raise WorkflowError(f"invalid config:\n{err}") from None
validate(config, "../schemas/config.schema.yaml")  # fills in the schema's defaults

# A config may run in its own folder (project.workdir; the smoke config does, so it never
# mixes its outputs with the default run's). Mirror and data set paths are made absolute
# before the move.
from sanode.config import MIRROR_ENV

if os.environ.get(MIRROR_ENV):
    os.environ[MIRROR_ENV] = str(Path(os.environ[MIRROR_ENV]).expanduser().resolve())
if config["project"].get("mirror"):
    config["project"]["mirror"] = str(Path(config["project"]["mirror"]).expanduser().resolve())
# a data set given as a path (an .npz, an image folder) is read from the jobs' folder too
from sanode.config import dataset_kind

for _spec in config["studies"].values():
    _dataset = str(_spec["train"].get("dataset", ""))
    if dataset_kind(_dataset) in ("npz", "folder"):
        _spec["train"]["dataset"] = str(Path(_dataset).expanduser().resolve())


workdir: config["project"]["workdir"]


STUDIES = list(config["studies"])
DATA = config["project"]["data_root"]
CONDA_ENV = "../../envs/sanode.yaml"


wildcard_constraints:
    study="|".join(STUDIES),
    eps=layout.EPS_LABEL,  # "0", "0.3", not "0.0": a target no tune rule writes finds no rule


def eps_labels(study):
    return [layout.eps_label(e) for e in eps_train_grid(config, study)]


def winner_input(wildcards):
    """A retrain (``winner_of``) waits for the searched study's selection."""
    source = winner_of(config, wildcards.study)
    return {"winner": layout.best_json(source)} if source else {}


def evaluation_outputs(kind):
    return [
        layout.evaluation(study, eps, kind) for study in STUDIES for eps in eps_labels(study)
    ]


ANALYSES = {name: analyses.outputs(config, name) for name in analyses.configured(config)}


def analysis_outputs():
    return [
        path
        for files in ANALYSES.values()
        for path in [*files["tables"].values(), *files["figures"].values()]
    ]
