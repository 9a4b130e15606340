# sanode study pipeline: prepare_data -> tune (Ray Tune) -> evaluate -> aggregate -> figures.
# Configurations: workflow/config/{smoke,default,paper}.yaml, chosen with --configfile
# (the workflow profile sets replace-workflow-config, so the chosen file is the whole config).
from snakemake.utils import min_version

min_version("9.0")


configfile: "workflow/config/default.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        rules.aggregate.output,
        rules.figures.output,
    default_target: True
