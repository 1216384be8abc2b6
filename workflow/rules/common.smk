# Shared wiring: the config validated and resolved once, paths, settings records, and the input functions that
# expand the experiment grid. All logic lives in the medssl package; this file only maps it to rules.
import dataclasses
import os

import yaml
from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import ExecMode
from snakemake.logging import logger

from medssl import config as mcfg
from medssl import cost as medssl_cost
from medssl import jobs as medssl_jobs
from medssl import settings as medssl_settings
from medssl.data.sources import pending_manual_datasets, pending_manual_instructions
from medssl.data.weights import VGG19, weights_path
from medssl.io import write_text
from medssl.layout import Layout
from medssl.plan import Plan
from medssl.reports import summary as report_summary
from medssl.reports import targets as report_targets
from medssl.reports.headline import closing_summary


def _resolved(config):
    """The plan: --config values typed by the schema, validated (one line naming each bad key), every default
    written out (medssl.config.resolve). Parsing writes nothing: each job's settings travel in its params.
    """
    mcfg.parse_overrides(config)
    try:
        resolved = mcfg.resolve(mcfg.validate(config))
        report_targets.check_reports(resolved)
    except mcfg.ConfigError as err:
        raise WorkflowError(str(err)) from None
    return resolved


PLAN_CONFIG = _resolved(config)
# every path, called with wildcards where a rule has them
LAYOUT = Layout.of(PLAN_CONFIG)
# the grid, expanded once (medssl.plan)
PLAN = Plan.of(PLAN_CONFIG)
# the wildcards of a finetuning job
JOB = ("{study}", "{run}", "{dataset}", "{ratio}", "{seed}")
ENV = "../../envs/medssl.yaml"

# Datasets to download by hand before their jobs can run: said first, by every run and dry run of this folder
# (not by the jobs of a cluster, which parse the workflow again).
PENDING = (
    pending_manual_datasets(PLAN_CONFIG)
    if workflow.exec_mode == ExecMode.DEFAULT
    else []
)
if PENDING:
    logger.warning(
        f"medssl: {len(PENDING)} of the {len(PLAN_CONFIG['datasets'])} datasets need a manual download "
        "before their jobs can run (the fetch_dataset job then stops with the full instructions):\n  "
        + "\n  ".join(PENDING)
    )

# envs/medssl.post-deploy.sh installs medssl from here into a conda env (--software-deployment-method conda)
os.environ.setdefault("MEDSSL_WORKFLOW_DIR", workflow.basedir)


def record(kind, **wildcards):
    """The settings record of one job (medssl.jobs), from the plan."""
    return medssl_jobs.record(PLAN_CONFIG, kind, **wildcards)


def settings(kind):
    """params of a rule: its job's settings record as JSON, the one thing the job reads. Snakemake's params
    trigger reruns the job exactly when the record changes."""
    names = medssl_jobs.JOBS[kind].wildcards()
    return lambda wildcards: record(
        kind, **{k: getattr(wildcards, k) for k in names}
    ).to_json()


def runtime(stage=None):
    """params of a training rule: where its job runs (device, threads, loader workers, checkpoint interval).
    A params function that takes `threads` is derived from the job's threads, and Snakemake does not count
    derived params as a change: editing these reruns nothing."""

    def args(wildcards, threads):
        rt = medssl_settings.runtime(
            PLAN_CONFIG, wildcards.study, stage, wildcards.run if stage else None
        )
        return dataclasses.replace(rt, threads=threads).args(stage)

    return args


onsuccess:
    # The configuration of the last successful run and its plan, for people to read (no job reads them), then
    # where the tables and figures are, with one headline table.
    write_text(LAYOUT.recorded_config(), yaml.safe_dump(config, sort_keys=False))
    write_text(LAYOUT.recorded_plan(), yaml.safe_dump(PLAN_CONFIG, sort_keys=False))
    logger.info(
        closing_summary(
            report_files(), [LAYOUT.metrics(*k) for k in PLAN.evaluations]
        )
    )


onerror:
    # A fetch job's message goes to its log; the placement instructions of every manual dataset that is
    # not in place yet are printed here, on the console.
    instructions = pending_manual_instructions(PLAN_CONFIG)
    if instructions:
        logger.error(instructions)


def _placeholder_resources():
    """Resources still set to the profile's CHANGE_ME placeholders ('rule: name' or 'name')."""
    rs = workflow.resource_settings
    found = [
        name
        for name, res in getattr(rs.default_resources, "_data", {}).items()
        if "CHANGE_ME" in str(res.raw)
    ]
    for rule_name, resources in (rs.overwrite_resources or {}).items():
        found += [
            f"{rule_name}: {name}"
            for name, res in resources.items()
            if "CHANGE_ME" in str(res.raw)
        ]
    return found


PLACEHOLDERS = _placeholder_resources()
if PLACEHOLDERS:
    logger.warning(
        "slurm/config.yaml still holds CHANGE_ME for "
        + ", ".join(PLACEHOLDERS)
        + ": edit the lines marked '<- EDIT' before submitting (sbatch will reject the account)."
    )

DATASETS = list(PLAN.datasets)
SUMMARY_OUTPUTS = report_summary.summary_outputs("{study}")  # csv, md, html, png


wildcard_constraints:
    dataset="|".join(DATASETS) or "NONE",
    study="[A-Za-z0-9_]+",
    run="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    pool="[A-Za-z0-9_]+",
    ratio="[A-Za-z0-9.]+",
    seed=r"\d+",
    digest="[0-9a-f]{16}",
    target="|".join(report_targets.TARGETS),


# ---------------------------------------------------------------------------------------------
# Data stage


def source_of(wildcards):
    """Slicing's source: the synthetic twin, or the ready file of the fetched/checked real source, each named
    by the digest of the settings record of the job that writes it."""
    kind = "synthesize" if PLAN_CONFIG["synthetic"] else "fetch"
    digest = record(kind, dataset=wildcards.dataset).digest()
    if PLAN_CONFIG["synthetic"]:
        return str(LAYOUT.synthetic(wildcards.dataset, digest))
    return str(LAYOUT.ready(wildcards.dataset, digest))


def shared_settings(kind):
    """params of the job writing a shared source: its record as JSON, refused when the path's digest is
    another record's (that source belongs to other settings)."""

    def settings_json(wildcards):
        job = record(kind, dataset=wildcards.dataset)
        if job.digest() != wildcards.digest:
            raise WorkflowError(
                f"{kind} {wildcards.dataset}: the folder named {wildcards.digest} holds another settings "
                f"record's source; this config's is {job.digest()}"
            )
        return job.to_json()

    return settings_json


def store_dir(dataset):
    return str(LAYOUT.store(dataset))


def split_file(dataset):
    return str(LAYOUT.split(dataset))


# ---------------------------------------------------------------------------------------------
# Training stage


def pretrain_inputs(wildcards):
    names = mcfg.pool_datasets(PLAN_CONFIG, wildcards.study, wildcards.pool)
    return {
        "stores": [store_dir(d) for d in names],
        "splits": [split_file(d) for d in names],
    }


def _pretrained(wildcards, epoch=None):
    """The pretrained model file a finetuning job starts from (None for runs trained from scratch)."""
    source = mcfg.pretraining_of(PLAN_CONFIG, wildcards.study, wildcards.run)
    if source is None:
        return None
    pool = mcfg.pretrain_pool(PLAN_CONFIG, *source, wildcards.dataset)
    return str(LAYOUT.pretrained_model(*source, pool, epoch))


def pretrained_model(wildcards):
    """The final pretrained model a finetuning job depends on ([] for runs trained from scratch)."""
    return _pretrained(wildcards) or []


def pretrained_arg(wildcards, input):
    """--pretrained: the final model (the job's input), or the checkpoint kept at `pretrain_epoch` beside it
    (Figure 7), which the pretraining writes with it; [] for runs trained from scratch (a list, so that the
    shell command quotes each argument)."""
    if not input.pretrained:
        return []
    epoch = PLAN_CONFIG["studies"][wildcards.study]["runs"][wildcards.run].get(
        "pretrain_epoch"
    )
    return ["--pretrained", _pretrained(wildcards, epoch)]


def features_inputs(wildcards):
    """Figure 3b's features: the pretrained model (its pool as medssl.config.features_pool says) and that
    pool's stores, in the pool's order."""
    pool = mcfg.features_pool(PLAN_CONFIG, wildcards.study, wildcards.run)
    names = mcfg.pool_datasets(PLAN_CONFIG, wildcards.study, pool)
    model = LAYOUT.pretrained_model(wildcards.study, wildcards.run, pool)
    inputs = {"pretrained": str(model), "stores": [store_dir(d) for d in names]}
    if record("features", study=wildcards.study, run=wildcards.run).generic == "vgg19":
        inputs["vgg19"] = str(weights_path(PLAN_CONFIG["resources"], VGG19))
    return inputs


def vgg19_arg(wildcards, input):
    """--vgg19 and the weight file, or nothing (generic: pixels)."""
    return ["--vgg19", input.vgg19] if "vgg19" in input.keys() else []


def finetune_outputs():
    """A finetuning job's outputs: the test metrics and predictions, and the finetuned model.pt only when
    keep_finetuned_models is set (otherwise the job never writes it)."""
    metrics = LAYOUT.metrics(*JOB)
    outputs = {
        "metrics": str(metrics),
        "pred": str(LAYOUT.predictions(metrics)),
        "progress": report(
            str(LAYOUT.progress(LAYOUT.finetune_dir(*JOB))),
            caption="../report/progress.rst",
            category="Training",
            subcategory="{study}: finetuning",
            labels={
                "run": "{run}",
                "dataset": "{dataset}",
                "labels": "{ratio}",
                "seed": "{seed}",
            },
        ),
    }
    if PLAN_CONFIG["keep_finetuned_models"]:
        outputs["model"] = str(LAYOUT.finetune_dir(*JOB) / "model.pt")
    return outputs


def finetune_dir(wildcards):
    """--out of a finetuning job: its log.csv (and checkpoint.pt while it runs)."""
    w = wildcards
    return str(LAYOUT.finetune_dir(w.study, w.run, w.dataset, w.ratio, w.seed))


def keep_model_arg(wildcards, output):
    return ["--model", output.model] if "model" in output.keys() else []


def pretrain_gpus(wildcards):
    """GPUs of a pretraining job (its stage's `gpus`; one process each)."""
    return medssl_settings.runtime(
        PLAN_CONFIG, wildcards.study, "pretrain", wildcards.run
    ).gpus


def pretrain_threads(wildcards):
    """CPU threads of a pretraining job: `threads` for each of its processes."""
    return PLAN_CONFIG["threads"] * pretrain_gpus(wildcards)


def pretrain_mem_mb(wildcards):
    """Host memory of a pretraining job: 16 GB for each of its processes."""
    return 16000 * pretrain_gpus(wildcards)


def stage_resources(rule):
    """Walltime (minutes) of a training job: its estimated GPU time (medssl.cost, from the config's epochs,
    the job's slice counts and images/s) x 2 safety x attempt, so a retried job asks for more.
    """

    def runtime_minutes(wildcards, attempt):
        return medssl_cost.runtime_minutes(PLAN_CONFIG, rule, wildcards, attempt)

    return runtime_minutes


# ---------------------------------------------------------------------------------------------
# Reports


def report_inputs(wildcards):
    """The files a report target reads (medssl.plan)."""
    return [str(p) for p in PLAN.inputs[wildcards.target]]


def summary_inputs(wildcards):
    """The metrics files of a study's generic summary (medssl.reports.summary)."""
    return [str(p) for p in PLAN.inputs.get(f"summary_{wildcards.study}", ())]


def report_files():
    """Every table and figure: those the config's `reports` block names, and the generic summary of every
    study that no report names (so `all` always ends in something to read)."""
    return [str(p) for p in PLAN.report_files()]


def all_targets():
    """Every split, table and figure."""
    return [str(p) for p in PLAN.targets()]


TABLE_TARGETS = [t for t in PLAN.reports if report_targets.target_info(t).is_table]
FIGURE_TARGETS = [t for t in PLAN.reports if t not in TABLE_TARGETS]


def report_category(wildcards):
    return (
        "Paper A (HSSL)" if wildcards.target.startswith("hssl") else "Paper B (SSMTL)"
    )


def report_labels(wildcards):
    """What the report lists an item by: its title (medssl.reports.targets)."""
    return {
        "title": report_targets.target_info(wildcards.target).title or wildcards.target
    }
