# Shared wiring: config validation, paths, and the input functions that expand the experiment grid.
# All logic lives in the medssl package; this file only maps config entries to file names.
import os

import yaml
from snakemake.utils import validate

from medssl import config as mcfg
from medssl import cost as medssl_cost
from medssl.reports import targets as report_targets


validate(config, schema="../../config/schemas/config.schema.yaml")
mcfg.check_references(config)

EXP = config["experiment"]
OUT = f"results/{EXP}"
RES = config.get("resources", "resources")
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"
ENV = "../../envs/medssl.yaml"


def _write_resolved_config():
    """The validated config (after --config overrides) as one file every medssl command reads.

    Rewritten (atomically) only when its content changes, so jobs on a cluster that re-parse the
    workflow never race, and a rule's params (the path) stay constant across runs.
    """
    text = yaml.safe_dump(config, sort_keys=True)
    path = f"{OUT}/config.yaml"
    if not os.path.exists(path) or open(path).read() != text:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


CONFIG = _write_resolved_config()

DATASETS = list(config["datasets"])
STUDIES = config.get("studies", {})
REPORTS = report_targets.configured_targets(config)


wildcard_constraints:
    dataset="|".join(DATASETS) or "NONE",
    study="[A-Za-z0-9_]+",
    run="[A-Za-z0-9_.-]+",
    pool="[A-Za-z0-9_]+",
    ratio="[A-Za-z0-9.]+",
    seed=r"\d+",


# ---------------------------------------------------------------------------------------------
# Data stage


def source_marker(wildcards):
    """Synthetic twin (written by rule synthesize_dataset) or the fetched/checked real source."""
    if config.get("synthetic", False):
        return f"{RES}/synthetic/{wildcards.dataset}"
    return f"{RES}/ready/{wildcards.dataset}.json"


def store_dir(dataset):
    return f"{OUT}/data/{dataset}"


def split_file(dataset):
    return f"{OUT}/splits/{dataset}.json"


# ---------------------------------------------------------------------------------------------
# Training stage


def pretrain_inputs(wildcards):
    names = mcfg.pool_datasets(config, wildcards.study, wildcards.pool)
    return {"stores": [store_dir(d) for d in names], "splits": [split_file(d) for d in names]}


def pretrained_model(wildcards):
    """The final pretrained model a finetuning job depends on ([] for runs trained from scratch)."""
    source = mcfg.pretraining_of(config, wildcards.study, wildcards.run)
    if source is None:
        return []
    src_study, src_run = source
    pool = mcfg.pretrain_pool(config, src_study, src_run, wildcards.dataset)
    return f"{OUT}/{src_study}/pretrain/{src_run}/{pool}/model.pt"


def pretrained_arg(wildcards, input):
    """--pretrained: the final model, or the checkpoint kept at `pretrain_epoch` beside it (Figure 7)."""
    if not input.get("pretrained"):
        return ""
    epoch = mcfg.run_settings(config, wildcards.study, wildcards.run)["pretrain_epoch"]
    path = input.pretrained if not epoch else os.path.join(os.path.dirname(input.pretrained), f"epoch{epoch}.pt")
    return f"--pretrained {path}"


def finetuned_model_output(path):
    """Finetuned models are temp() files (deleted once evaluated) unless keep_finetuned_models is set."""
    return path if config.get("keep_finetuned_models", False) else temp(path)


def stage_resources(rule):
    """Walltime (minutes) of a training job: its estimated GPU time (medssl.cost, from the config's epochs,
    the job's slice counts and images/s) x 2 safety x attempt, so a retried job asks for more."""

    def runtime(wildcards, attempt):
        return medssl_cost.runtime_minutes(config, rule, wildcards, attempt)

    return runtime


def metrics_file(study, run, dataset, ratio, seed):
    return f"{OUT}/{study}/metrics/{run}/{dataset}/{ratio}/seed{seed}.json"


def study_metrics(study):
    """Every (run, dataset, ratio, seed) metrics file of a study."""
    files = []
    for run in STUDIES[study]["runs"]:
        r = mcfg.run_settings(config, study, run)
        for dataset in r["finetune_datasets"]:
            for ratio in r["label_ratios"]:
                for seed in STUDIES[study].get("seeds", [0]):
                    files.append(metrics_file(study, run, dataset, ratio, seed))
    return files


def report_outputs(target):
    return [f"{OUT}/{p}" for p in report_targets.target_info(target).outputs]


def report_category(target):
    return "Paper A (HSSL)" if target.startswith("hssl") else "Paper B (SSMTL)"


def report_inputs(target):
    return [str(p) for p in report_targets.required_files(config, target)]


def report_inputs_of(target):
    """Input function of a report rule (binds `target` now, not when the loop has moved on)."""
    return lambda wildcards: report_inputs(target)


def all_targets():
    """Every table and figure the config's `reports` block names, plus every split; without a `reports`
    block, every metrics file of every study."""
    targets = [split_file(d) for d in DATASETS]
    if REPORTS:
        for target in REPORTS:
            targets += report_outputs(target)
    else:
        for study in STUDIES:
            targets += study_metrics(study)
    return targets
