"""Shared fixtures: a tiny config for fast end-to-end runs, and the repository root."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def shrunk_demo(experiment: str, patients: int, scale: float) -> dict:
    """The demo config with one thread per job, 32 px slices and small phantoms (studies untouched)."""
    with open(REPO / "config" / "config.yaml") as f:
        config = yaml.safe_load(f)
    config["experiment"] = experiment
    config["threads"] = 1
    config["data"]["image_size"] = 32
    config["data"]["synthetic"] = {"patients": patients, "seed": 0, "scale": scale}
    return config


def tiny_config(experiment: str = "tiny", datasets=("msd_heart", "msd_spleen")) -> dict:
    """The demo config shrunk to seconds: 2 datasets, 5 phantom patients, 32 px, 1 epoch of 2 steps, the
    HSSL study with three runs (tfs, simclr, hssl), Table 2 built from them and Table 1 of the two datasets
    (the second sampled to 10 slices)."""
    config = shrunk_demo(experiment, patients=5, scale=0.12)
    config["datasets"] = {d: {} for d in datasets}
    study = config["studies"]["hssl"]
    study["pretrain_datasets"] = list(datasets)
    study["finetune_datasets"] = [datasets[0]]
    study["label_ratios"] = ["100"]
    study["pretrain"] = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1, "steps_per_epoch": 2}
    study["finetune"] = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1, "steps_per_epoch": 2}
    study["runs"] = {"tfs": {"method": "tfs", "arch": "hssl_net", "label": "TFS"},
                     "simclr": {"method": "simclr", "arch": "hssl_net", "label": "SimCLR"},
                     "hssl": {"method": "hssl", "arch": "hssl_net", "label": "HSSL"}}
    config["studies"] = {"hssl": study}
    config["datasets"][datasets[-1]]["sample_slices"] = 10  # paper A's Table 1 sampling, on one dataset
    config["reports"] = {"hssl_table2": {"study": "hssl", "runs": {"TFS": "tfs", "SimCLR": "simclr", "HSSL": "hssl"},
                                         "datasets": {"1": datasets[0]}, "ratios": ["100"]},
                         "hssl_table1": {"datasets": {str(i): d for i, d in enumerate(datasets, 1)}}}
    return copy.deepcopy(config)


def tiny_ssmtl_config(experiment: str = "tiny_ssmtl") -> dict:
    """Paper B in seconds: the MM-WHS CT twin, SSMTL on the U-Net and SSMTL+ on the ResNet50-FCN (t = 2),
    finetuned on 2 scans x 4 slices, and Tables 2 and 4 built from them."""
    config = shrunk_demo(experiment, patients=4, scale=0.15)
    config["datasets"] = {"mmwhs_ct": {"scans_subset": [2, 4]}}
    study = config["studies"]["ssmtl_ct"]
    study["seeds"] = [0]
    study["pretrain"] = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1, "steps_per_epoch": 2}
    study["finetune"] = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "poly_power": 0.0, "checkpoint_every": 1,
                         "steps_per_epoch": 2}
    study["runs"] = {"unet_ssmtl": {"method": "ssmtl", "arch": "unet", "params": {"offset": 2}},
                     "fcn_ssmtl_plus": {"method": "ssmtl_plus", "arch": "resnet50_fcn", "params": {"offset": 2}}}
    config["studies"] = {"ssmtl_ct": study}
    config["reports"] = {
        "ssmtl_table2": {"study": "ssmtl_ct", "runs": {"SSMTL (t=5)": "unet_ssmtl"}, "datasets": {"CT": "mmwhs_ct"},
                         "ratios": ["scans"], "baseline": None},
        "ssmtl_table4": {"study": "ssmtl_ct", "runs": {"SSMTL+": "fcn_ssmtl_plus"}, "datasets": {"CT": "mmwhs_ct"},
                         "ratios": ["scans"], "baseline": None}}
    return copy.deepcopy(config)


def job_settings(config: dict, kind: str, **wildcards) -> str:
    """The settings record (JSON) that the workflow hands job ``kind`` of ``config`` (validated, resolved)."""
    from medssl import config as mcfg
    from medssl import jobs

    resolved = mcfg.resolve(mcfg.validate(copy.deepcopy(config)))
    return jobs.record(resolved, kind, **wildcards).to_json()


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def tiny_config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    return path


# ---------------------------------------------------------------------------------------------- the workflow
# Workflow tests run `snakemake` as a user types it: from the root of a copy of this repository (no `-d`, no
# `--snakefile`), so the demo config, `--configfile` and `--profile slurm` resolve exactly as they do for users.

_NOT_COPIED = {".git", ".venv", "venv", ".snakemake", "resources", "results", "__pycache__", ".pytest_cache",
               "report.html"}


def copy_repo(dest: Path) -> Path:
    """A copy of the repository's sources (no git, venv, results or downloads) at ``dest``; returns ``dest``."""
    import shutil

    shutil.copytree(REPO, dest, ignore=lambda d, names: [n for n in names if n in _NOT_COPIED
                                                          or n.endswith(".egg-info")])
    return dest


def snakemake_cli(*args: str, cwd: Path, timeout: int = 900) -> tuple[int, str]:
    """`snakemake ARGS` run in ``cwd`` with the snakemake of this environment; (exit code, stdout + stderr)."""
    import shutil
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe)] if exe.exists() else [shutil.which("snakemake") or "snakemake"]
    proc = subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def job_counts(out: str) -> dict[str, int]:
    """Per-rule job counts of snakemake's "Job stats" table ({} when nothing is to be done)."""
    if "Job stats:" not in out:
        return {}
    counts = {}
    for line in out.split("Job stats:", 1)[1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A fresh copy of the repository to run `snakemake` in, from its root."""
    return copy_repo(tmp_path / "medssl")
