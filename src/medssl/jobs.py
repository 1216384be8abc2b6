"""What each workflow job reads from the configuration, and a digest of it.

Every rule of the workflow carries ``params: settings=<digest>`` of exactly the resolved settings its job
reads, so Snakemake's params rerun trigger reruns the jobs whose settings changed (and, through their
outputs, their dependents) and nothing else: a new finetuning lr reruns that study's finetune, evaluate and
report jobs, never the data stage or pretraining. The same records are logged by each ``medssl`` command
when it starts, so a job's log says what it ran with.

Left out on purpose: where a job runs (``device``, ``threads``, ``num_workers``), how often it checkpoints
(``checkpoint_every``), cost-model throughputs (``images_per_second``) and display labels of runs, which
change neither numbers nor files a job writes.
"""

from __future__ import annotations

import hashlib
import json

from medssl import config as cfg
from medssl import registry

UNHASHED_STAGE_KEYS = ("checkpoint_every", "num_workers", "images_per_second")


def digest(settings) -> str:
    """A short, stable hash of JSON-serialisable ``settings`` (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _declaration(config: dict, dataset: str) -> dict:
    """A dataset of the user's own: its declaration (``path``, ``modality``, ``classes``, ...); {} for a
    registered one. The entry's other keys are slicing, split or synthesis settings, recorded by name."""
    entry = config["datasets"].get(dataset) or {}
    return {k: entry[k] for k in registry.DECLARATION_KEYS if k in entry}


def _stage(config: dict, study: str, stage: str, run: str) -> dict:
    return {k: v for k, v in cfg.stage_settings(config, study, stage, run).items() if k not in UNHASHED_STAGE_KEYS}


def _run(config: dict, study: str, run: str) -> dict:
    """A run's settings with its method's default parameters (for jobs that build a model: imports torch)."""
    settings = {k: v for k, v in cfg.run_settings(config, study, run).items() if k != "label"}
    return {**settings, "params": cfg.run_params(config, study, run)}


def _study(config: dict, study: str) -> dict:
    return cfg.study_options(config, study)


# ------------------------------------------------------------------------------------------ data stage

def synthesize(config: dict, dataset: str) -> dict:
    s = cfg.dataset_settings(config, dataset)
    return {"dataset": dataset, "patients": s.synthetic_patients, "scale": s.synthetic_scale,
            "seed": s.synthetic_seed}


def fetch(config: dict, dataset: str) -> dict:
    return {"dataset": dataset, "resources": config.get("resources", "resources"),
            "declaration": _declaration(config, dataset)}


def slice(config: dict, dataset: str) -> dict:  # noqa: A001 - named after the rule
    s = cfg.dataset_settings(config, dataset)
    return {"dataset": dataset, "synthetic": bool(config.get("synthetic", False)),
            "resources": config.get("resources", "resources"), "image_size": s.image_size,
            "slice_axis": s.slice_axis, "ct_window": list(s.ct_window), "mri_percentiles": list(s.mri_percentiles),
            "declaration": _declaration(config, dataset)}


def split(config: dict, dataset: str) -> dict:
    s = cfg.dataset_settings(config, dataset)
    return {"dataset": dataset, "split": s.split, "scans_subset": s.scans_subset,
            "label_ratios": cfg.label_ratios(config)}


# -------------------------------------------------------------------------------------- training stage

def pretrain(config: dict, study: str, run: str, pool: str) -> dict:
    s = config["studies"][study]
    return {"study": study, "run": _run(config, study, run), "pool": cfg.pool_datasets(config, study, pool),
            "pretrain_datasets": list(s["pretrain_datasets"]), "pretrain_patients": s.get("pretrain_patients", "all"),
            "options": _study(config, study), "pretrain": _stage(config, study, "pretrain", run)}


def finetune(config: dict, study: str, run: str, dataset: str, ratio: str, seed) -> dict:
    return {"study": study, "run": _run(config, study, run), "dataset": dataset, "ratio": str(ratio),
            "seed": int(seed), "options": _study(config, study), "finetune": _stage(config, study, "finetune", run)}


def evaluate(config: dict, study: str, run: str, dataset: str, ratio: str, seed) -> dict:
    return {"study": study, "run": run, "arch": cfg.run_settings(config, study, run)["arch"], "dataset": dataset,
            "ratio": str(ratio), "seed": int(seed), "options": _study(config, study)}


# -------------------------------------------------------------------------------------------- reports

def features(config: dict, study: str, run: str) -> dict:
    from medssl.reports.targets import tsne_spec

    spec = tsne_spec(config)
    return {"study": study, "run": _run(config, study, run), "per_task": spec.per_task, "seed": spec.seed,
            "pretrain_datasets": list(config["studies"][study]["pretrain_datasets"]),
            "finetune_datasets": list(config["studies"][study]["finetune_datasets"]),
            "options": _study(config, study)}


def report(config: dict, target: str) -> dict:
    from medssl.reports.targets import studies_named

    reports = config.get("reports") or {}
    block = reports.get(target)
    studies = config.get("studies") or {}
    named = sorted(s for s in studies_named(block) if s in studies)
    return {"target": target, "block": block, "allow_missing": reports.get("allow_missing", False),
            "synthetic": bool(config.get("synthetic", False)),
            "studies": {s: {"title": studies[s].get("title"), "paper": studies[s].get("paper"),
                            "seeds": studies[s].get("seeds", [0]),
                            "labels": {r: v.get("label", r) for r, v in studies[s]["runs"].items()}}
                        for s in named}}


def summary(config: dict, study: str) -> dict:
    s = config["studies"][study]
    return {"study": study, "title": s.get("title"), "seeds": s.get("seeds", [0]),
            "downstream": s.get("downstream", "segmentation"), "synthetic": bool(config.get("synthetic", False)),
            "runs": {r: {"label": v.get("label", r), "method": v["method"],
                         "finetune_datasets": cfg.run_settings(config, study, r)["finetune_datasets"],
                         "label_ratios": cfg.run_settings(config, study, r)["label_ratios"]}
                     for r, v in s["runs"].items()}}


SETTINGS = {"synthesize": synthesize, "fetch": fetch, "slice": slice, "split": split, "pretrain": pretrain,
            "finetune": finetune, "evaluate": evaluate, "features": features, "report": report, "summary": summary}


def settings_of(config: dict, job: str, **wildcards) -> dict:
    """The settings job kind ``job`` (a key of :data:`SETTINGS`) reads, given its wildcards."""
    return SETTINGS[job](config, **wildcards)
