"""Static checks of the SLURM profiles: slurm/config.yaml (users) and .ci/slurm/profile (CI overlay).

The profiles are also resolved by snakemake itself in a dry run (no SLURM needed): training rules go to
the GPU partition with a GPU, every other rule to the CPU partition without one. The real cluster run is
.ci/slurm/run_slurm_ci.sh.
"""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO, copy_repo, snakemake_cli, tiny_config

USER = REPO / "slurm" / "config.yaml"
CI = REPO / ".ci" / "slurm" / "profile" / "config.yaml"
GPU_RULES = {"pretrain", "finetune"}
GPU_KEYS = {"gpu", "gpus", "gpu_model", "gres", "nvidia_gpu", "cpus_per_gpu"}


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def rules_declaring_gpu() -> set[str]:
    """Rules whose `resources:` declare gpu= in workflow/rules/*.smk."""
    found = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            if re.search(r"^\s+gpu\s*=", block, re.M):
                found.add(name)
    return found


def test_user_profile_settings():
    p = load(USER)
    assert p["executor"] == "slurm"
    assert p["slurm-requeue"] is True
    assert p["retries"] >= 1 and p["jobs"] >= 1 and p["latency-wait"] >= 30
    assert p.get("rerun-incomplete") is True
    assert "software-deployment-method" not in p          # conda stays off unless the user opts in
    assert "slurm-status-command" not in p                # user clusters have accounting (sacct)
    d = p["default-resources"]
    assert {"slurm_account", "slurm_partition", "mem_mb", "runtime", "cpus_per_task"} <= set(d)
    assert not GPU_KEYS & set(d), "default-resources must not ask for a GPU (CPU rules inherit them)"


def test_placeholders_are_marked_for_editing():
    text = USER.read_text()
    for key in ("slurm_account", "slurm_partition", "gpu_model"):
        lines = [line for line in text.splitlines() if re.match(rf"\s*#?\s*{key}:", line)]
        assert lines and all("<- EDIT" in line for line in lines), key
    assert "software-deployment-method: conda" in text      # documented, commented out


def test_gpu_settings_only_for_training_rules():
    p = load(USER)
    assert rules_declaring_gpu() == GPU_RULES
    sr = p["set-resources"]
    assert set(sr) == GPU_RULES
    for rule in GPU_RULES:
        assert sr[rule]["slurm_partition"] and "cpus_per_task" in sr[rule]
    assert sr["pretrain"] == sr["finetune"]                 # one place (a YAML anchor)


def test_ci_overlay():
    p = load(CI)
    assert p["slurm-status-command"] == "squeue"
    assert "slurm_account" not in p["default-resources"]
    assert not GPU_KEYS & set(p["default-resources"])
    for rule, res in p["set-resources"].items():
        assert bool(GPU_KEYS & set(res)) == (rule in GPU_RULES), rule
        assert res.get("slurm_partition", "gpu" if rule in GPU_RULES else "debug") == (
            "gpu" if rule in GPU_RULES else "debug")
    conf = (REPO / ".ci" / "slurm" / "slurm.conf.in").read_text()
    assert re.search(r"^MinJobAge=(\d+)", conf, re.M) and int(re.search(r"^MinJobAge=(\d+)", conf, re.M)[1]) >= 120
    assert "PartitionName=debug" in conf and "PartitionName=gpu" in conf
    assert "File=/dev/null" in (REPO / ".ci" / "slurm" / "gres.conf.in").read_text()


def small_config() -> dict:
    """tiny_config() without the studies and reports its two datasets cannot run."""
    config = tiny_config()
    names = set(config["datasets"])
    config["studies"] = {k: s for k, s in config["studies"].items()
                         if set(s["pretrain_datasets"]) | set(s["finetune_datasets"]) <= names}
    config.pop("reports", None)
    return config


def dry_run_resources(tmp_path, *profiles) -> dict[str, str]:
    """`snakemake all -n --profile P ...` from the root of a copy of the repository: each rule's resources."""
    root = copy_repo(tmp_path / "medssl")
    config = small_config()
    config["threads"] = 3
    (root / "config" / "tiny.yaml").write_text(yaml.safe_dump(config))
    # --cores: a dry run caps threads at its local cores (1 by default); a SLURM run does not.
    args = ["all", "-n", "--cores", "8", "--configfile", "config/tiny.yaml"]
    for prof in profiles:
        args += ["--profile", prof]
    code, out = snakemake_cli(*args, cwd=root, timeout=300)
    assert code == 0, out
    res = {}
    for block in re.split(r"^(?:local)?rule ", out, flags=re.M)[1:]:
        name = block.split(":", 1)[0]
        m = re.search(r"^\s+resources: (.*)$", block, re.M)
        if m:
            res[name] = m.group(1)
    return res


@pytest.mark.slow
def test_profile_resolves_from_repo_root(tmp_path):
    """`--profile slurm` (cwd = repo root): GPU partition + gpu=1 for training, nothing GPU elsewhere."""
    res = dry_run_resources(tmp_path, "slurm")
    assert {"synthesize_dataset", "slice_dataset", "split_dataset", "pretrain", "finetune"} <= set(res)
    for rule, line in res.items():
        if rule == "all":
            continue
        assert "slurm_account=CHANGE_ME" in line
        if rule in GPU_RULES:
            assert "slurm_partition=gpu" in line and re.search(r"\bgpu=1\b", line), line
            assert "cpus_per_task=3" in line, line           # = config threads
        else:
            assert "slurm_partition=CHANGE_ME" in line and not re.search(r"\bgpu", line), line


@pytest.mark.slow
def test_ci_overlay_merges_over_user_profile(tmp_path):
    res = dry_run_resources(tmp_path, "slurm", ".ci/slurm/profile")
    for rule, line in res.items():
        assert "slurm_account" not in line and "CHANGE_ME" not in line, line
        if rule in GPU_RULES:
            assert "slurm_partition=gpu" in line and "gpu_model=fake" in line, line
        elif rule != "all":
            assert "slurm_partition=debug" in line and not re.search(r"\bgpu", line), line


def test_dry_run_warns_while_the_profile_holds_placeholders(checkout):
    """`snakemake -n --profile slurm` names the CHANGE_ME settings still to edit; an edited profile is quiet."""
    config = small_config()
    (checkout / "config" / "tiny.yaml").write_text(yaml.safe_dump(config))
    args = ("all", "-n", "--configfile", "config/tiny.yaml", "--profile", "slurm")
    code, out = snakemake_cli(*args, cwd=checkout, timeout=300)
    assert code == 0 and "slurm/config.yaml still holds CHANGE_ME for slurm_account, slurm_partition" in out, out
    profile = checkout / "slurm" / "config.yaml"
    profile.write_text(profile.read_text().replace('"CHANGE_ME"', '"mylab"'))
    code, out = snakemake_cli(*args, cwd=checkout, timeout=300)
    assert code == 0 and "still holds CHANGE_ME" not in out, out
