# Shared wiring: config validation, paths, and the input functions that expand the experiment grid.
# All logic lives in the medssl package; this file only maps config entries to file names.
import os

import yaml
from snakemake.logging import logger
from snakemake.utils import validate

from medssl import config as mcfg
from medssl import cost as medssl_cost
from medssl import jobs as medssl_jobs
from medssl import server as medssl_server
from medssl.layout import Layout
from medssl.plan import Plan, resolved_config
from medssl.data.sources import pending_manual_instructions
from medssl.io import write_text
from medssl.reports import targets as report_targets
from medssl.reports import summary as report_summary
from medssl.reports.headline import closing_summary

# --config 'data={"image_size": 64}' arrives as strings: type them by the schema, then validate.
mcfg.parse_overrides(config)
validate(
    config, schema=str(mcfg.SCHEMA_PATH)
)  # the schema the library validates with (package data)
mcfg.check_references(config)
report_targets.check_reports(config)

# envs/medssl.post-deploy.sh installs medssl from here into a conda env (--software-deployment-method conda)
os.environ.setdefault("MEDSSL_WORKFLOW_DIR", workflow.basedir)

# Every path comes from the layout (medssl.layout), called with wildcards where a rule has them.
LAYOUT = Layout.of(config)
JOB = (
    "{study}",
    "{run}",
    "{dataset}",
    "{ratio}",
    "{seed}",
)  # the wildcards of a finetuning job
ENV = "../../envs/medssl.yaml"


PLAN_CONFIG = resolved_config(
    config
)  # the plan: the config with every default written out (medssl.plan)


def _plan_file():
    """The plan as the one file jobs read (``medssl <command> --config <it>``).

    It lives under .snakemake/medssl/<experiment>/, so parsing the workflow (-n, --lint, --rulegraph,
    --report) writes nothing under results/, and is rewritten (atomically) only when its content changes;
    after a successful run it is copied to results/<experiment>/plan.yaml for people to read, edit and run
    (it is a config). Its path is constant; rule params hold digests of the settings each job reads
    (medssl.jobs), so only jobs whose settings changed rerun, and each job checks its digest (--settings).
    """
    text = yaml.safe_dump(PLAN_CONFIG, sort_keys=False)
    path = str(LAYOUT.job_plan())
    if not os.path.exists(path) or open(path).read() != text:
        write_text(path, text)
    return path


PLAN_FILE = _plan_file()
PLAN = Plan.of(PLAN_CONFIG)  # the grid, expanded once (medssl.plan)


def settings_digest(job):
    """params value of a rule: the digest of the settings its job reads (medssl.jobs.settings_of)."""
    return lambda wildcards: medssl_jobs.digest(
        medssl_jobs.settings_of(PLAN_CONFIG, job, **dict(wildcards.items()))
    )


JOB_SERVER = []  # the job server of this run, if any (medssl.server)


onstart:
    # Jobs on this machine run as forks of one job server that imported torch once (medssl.server); not with
    # --profile slurm or a conda/apptainer deployment, nor with MEDSSL_SERVER=off.
    if medssl_server.wanted(
        workflow.local_exec, bool(workflow.deployment_settings.deployment_method)
    ):
        JOB_SERVER.append(medssl_server.start(LAYOUT.log("server", "job_server")))


onsuccess:
    # The configuration of the last successful run and its plan (the file its jobs read), for people to
    # read, then where the tables and figures are, with one headline table.
    write_text(LAYOUT.recorded_config(), yaml.safe_dump(config, sort_keys=False))
    write_text(LAYOUT.recorded_plan(), open(PLAN_FILE).read())
    medssl_server.stop(JOB_SERVER.pop() if JOB_SERVER else None)
    logger.info(closing_summary(report_files()))


onerror:
    medssl_server.stop(JOB_SERVER.pop() if JOB_SERVER else None)
    # A fetch job's message goes to its log; the placement instructions of every manual dataset that is
    # not in place yet are printed here, on the console.
    instructions = pending_manual_instructions(config)
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
REPORTS = list(PLAN.reports)
SUMMARY_OUTPUTS = report_summary.summary_outputs("{study}")  # csv, md, html, png


wildcard_constraints:
    dataset="|".join(DATASETS) or "NONE",
    study="[A-Za-z0-9_]+",
    run="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    pool="[A-Za-z0-9_]+",
    ratio="[A-Za-z0-9.]+",
    seed=r"\d+",


# ---------------------------------------------------------------------------------------------
# Data stage


def source_marker(wildcards):
    """Synthetic twin (written by rule synthesize_dataset) or the fetched/checked real source."""
    if config.get("synthetic", False):
        return str(LAYOUT.synthetic(wildcards.dataset))
    return str(LAYOUT.ready(wildcards.dataset))


def store_dir(dataset):
    return str(LAYOUT.store(dataset))


def split_file(dataset):
    return str(LAYOUT.split(dataset))


# ---------------------------------------------------------------------------------------------
# Training stage


def pretrain_inputs(wildcards):
    names = mcfg.pool_datasets(config, wildcards.study, wildcards.pool)
    return {
        "stores": [store_dir(d) for d in names],
        "splits": [split_file(d) for d in names],
    }


def _pretrained(wildcards, epoch=None):
    """The pretrained model file a finetuning job starts from (None for runs trained from scratch)."""
    source = mcfg.pretraining_of(config, wildcards.study, wildcards.run)
    if source is None:
        return None
    pool = mcfg.pretrain_pool(config, *source, wildcards.dataset)
    return str(LAYOUT.pretrained_model(*source, pool, epoch))


def pretrained_model(wildcards):
    """The final pretrained model a finetuning job depends on ([] for runs trained from scratch)."""
    return _pretrained(wildcards) or []


def features_inputs(wildcards):
    """Figure 3b's features: the pretrained model (its pool as medssl.config.features_pool says) and that
    pool's stores, in the pool's order."""
    pool = mcfg.features_pool(config, wildcards.study, wildcards.run)
    names = mcfg.pool_datasets(config, wildcards.study, pool)
    model = LAYOUT.pretrained_model(wildcards.study, wildcards.run, pool)
    return {"pretrained": str(model), "stores": [store_dir(d) for d in names]}


def pretrained_arg(wildcards):
    """--pretrained: the final model, or the checkpoint kept at `pretrain_epoch` beside it (Figure 7); a list
    of arguments ([] for runs trained from scratch) so that the shell command can quote each one.
    """
    epoch = mcfg.run_settings(config, wildcards.study, wildcards.run)["pretrain_epoch"]
    path = _pretrained(wildcards, epoch)
    return ["--pretrained", path] if path else []


def finetune_outputs():
    """A finetuning job's outputs: the test metrics and predictions, and the finetuned model.pt only when
    keep_finetuned_models is set (otherwise the job never writes it)."""
    metrics = LAYOUT.metrics(*JOB)
    outputs = {"metrics": str(metrics), "pred": str(LAYOUT.predictions(metrics))}
    if config.get("keep_finetuned_models", False):
        outputs["model"] = str(LAYOUT.finetune_dir(*JOB) / "model.pt")
    return outputs


def finetune_dir(wildcards):
    """--out of a finetuning job: its log.csv (and model.pt when kept)."""
    w = wildcards
    return str(LAYOUT.finetune_dir(w.study, w.run, w.dataset, w.ratio, w.seed))


def keep_model_arg(wildcards):
    return ["--keep-model"] if config.get("keep_finetuned_models", False) else []


def stage_resources(rule):
    """Walltime (minutes) of a training job: its estimated GPU time (medssl.cost, from the config's epochs,
    the job's slice counts and images/s) x 2 safety x attempt, so a retried job asks for more.
    """

    def runtime(wildcards, attempt):
        return medssl_cost.runtime_minutes(config, rule, wildcards, attempt)

    return runtime


def report_outputs(target):
    return [str(p) for p in PLAN.outputs_of(target)]


def shown_in_report(path):
    """--report shows the HTML tables inline and the figures with their captions; CSV and Markdown twins
    stay plain outputs (the report viewer would only offer them for download)."""
    return path.endswith((".html", ".png"))


def report_category(target):
    return "Paper A (HSSL)" if target.startswith("hssl") else "Paper B (SSMTL)"


def report_inputs_of(target):
    """Input function of a report rule (binds `target` now, not when the loop has moved on)."""
    return lambda wildcards: [str(p) for p in PLAN.inputs[target]]


def summary_inputs(study):
    """The metrics files of a study's generic summary (medssl.reports.summary)."""
    return [str(p) for p in PLAN.inputs.get(f"summary_{study}", ())]


def report_files():
    """Every table and figure: those the config's `reports` block names, and the generic summary of every
    study that no report names (so `all` always ends in something to read)."""
    return [str(p) for p in PLAN.report_files()]


def all_targets():
    """Every split, table and figure."""
    return [str(p) for p in PLAN.targets()]
