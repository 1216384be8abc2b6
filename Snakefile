# medssl: self-supervised pretraining for label-efficient medical image segmentation.
#   snakemake --cores 2 all                      embedded synthetic demo (config/config.yaml)
#   snakemake all --configfile config/paper.yaml  the papers' datasets and hyper-parameters
#   snakemake --rulegraph | dot -Tpng > workflow/report/rulegraph.png
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/reports.smk"


rule all:
    input:
        all_targets(),
    default_target: True
