# sanode study pipeline: prepare_data -> tune (Ray Tune) -> evaluate -> aggregate -> figures,
# and the analyses of the trained models (paper Figs. 4-12, baselines, census) -> their figures.
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
include: "workflow/rules/analyses.smk"


rule all:
    input:
        rules.aggregate.output,
        rules.figures.output,
        analysis_outputs(),
    default_target: True
