# medssl: self-supervised pretraining for label-efficient medical image segmentation.
#   snakemake --cores 2 all                      embedded synthetic demo (config/config.yaml)
#   snakemake all --configfile config/paper.yaml  the papers' datasets and hyper-parameters
#   snakemake --rulegraph | dot -Tpng > workflow/report/rulegraph.png
from snakemake.utils import min_version

min_version("9.0")


# The demo config is the config only when the command line names none: with `--configfile`, exactly the
# files given (plus schema defaults and `--config` overrides) are the config, and nothing of the demo leaks in.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/reports.smk"


rule all:
    default_target: True
    input:
        all_targets(),
