"""Static checks of the SLURM profiles: slurm/config.yaml (users) and .ci/slurm/profile (CI overlay).

The profiles are also resolved by snakemake itself in a dry run (no SLURM needed): training rules go to
the GPU partition with a GPU, every other rule to the CPU partition without one, finetunes in packs (job
groups). What sbatch is asked for a pack is checked with the real SLURM executor plugin and a stand-in
`sbatch` that records its arguments. The real cluster run is .ci/slurm/run_slurm_ci.sh.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

from conftest import REPO, copy_repo, snakemake_cli, tiny_config

USER = REPO / "slurm" / "config.yaml"
CI = REPO / ".ci" / "slurm" / "profile" / "config.yaml"
GPU_RULES = {"pretrain", "finetune"}
GPU_KEYS = {"gpu", "gpus", "gpu_model", "gres", "nvidia_gpu", "cpus_per_gpu"}
PACK_GROUP = "finetune_{study}_{run}"      # the finetune rule's group: a run's finetunes
DATA_GROUP = "data_{dataset}"              # a dataset's source, slicing and split


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


def rule_groups() -> dict[str, str]:
    """Rule name -> the `group:` it declares in workflow/rules/*.smk."""
    found = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            m = re.search(r"^\s+group:\s*\n\s+\"([^\"]+)\"", block, re.M)
            if m:
                found[block.split(":", 1)[0].strip()] = m.group(1)
    return found


def test_user_profile_settings():
    p = load(USER)
    assert p["executor"] == "slurm"
    assert p["slurm-requeue"] is True
    assert p["retries"] >= 1 and p["jobs"] >= 1 and p["latency-wait"] >= 30
    assert p.get("rerun-incomplete") is True
    assert p.get("keep-incomplete") is True    # a failed pack's finished members keep their outputs
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


def test_packing_settings():
    """K finetunes of a run to a SLURM job (group-components), one GPU per pack: each finetune holds the
    pack's one `pack_gpu`, a pool of 1 per group job (scope local), so Snakemake lays a pack's finetunes out
    one after another instead of adding up their GPUs."""
    p = load(USER)
    assert rule_groups() == {"finetune": PACK_GROUP, **{r: DATA_GROUP for r in (
        "synthesize_dataset", "fetch_dataset", "slice_dataset", "split_dataset")}}
    assert set(p["group-components"]) == {PACK_GROUP} and int(p["group-components"][PACK_GROUP]) >= 1
    assert p["resources"] == {"pack_gpu": 1}
    assert p["set-resource-scopes"] == {"pack_gpu": "local"}
    for profile in (p, load(CI)):
        assert profile["set-resources"]["finetune"]["pack_gpu"] == 1
        assert all("pack_gpu" not in res for rule, res in profile["set-resources"].items() if rule not in GPU_RULES)
        assert "pack_gpu" not in profile["default-resources"]
    assert "group-components" not in load(CI) and "resources" not in load(CI)   # the user profile's, as is


def test_the_packing_block_of_the_slurm_page_is_the_profiles():
    """docs/slurm.md shows the packing settings as they are in slurm/config.yaml."""
    page = (REPO / "docs" / "slurm.md").read_text()
    m = re.search(r"<!-- run by tests/test_slurm_profile.py: compared with slurm/config.yaml -->\n```yaml\n(.*?)\n```",
                  page, re.S)
    assert m, "docs/slurm.md: no packing block"
    shown, profile = yaml.safe_load(m.group(1)), load(USER)
    assert shown and all(profile[key] == value for key, value in shown.items()), shown


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
    gres = (REPO / ".ci" / "slurm" / "gres.conf.in").read_text()
    # two fake GPUs (a job may ask for 2), each a character device
    assert "Gres=gpu:fake:2" in conf
    assert len(re.findall(r"^NodeName=\S+ Name=gpu Type=fake File=/dev/\w+$", gres, re.M)) == 2


def small_config() -> dict:
    """tiny_config() without the studies and reports its two datasets cannot run."""
    config = tiny_config()
    names = set(config["datasets"])
    config["studies"] = {k: s for k, s in config["studies"].items()
                         if set(s["pretrain_datasets"]) | set(s["finetune_datasets"]) <= names}
    config.pop("reports", None)
    return config


def dry_run_resources(tmp_path, *profiles, with_groups: bool = False):
    """`snakemake all -n --profile P ...` from the root of a copy of the repository: each rule's resources
    (and, with_groups, the group jobs the dry run lists)."""
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
    for block in re.split(r"^\s*(?:local)?rule ", out, flags=re.M)[1:]:
        name = block.split(":", 1)[0]
        m = re.search(r"^\s+resources: (.*)$", block, re.M)
        if m:
            res[name] = m.group(1)
    return (res, re.findall(r"Group job (\S+) ", out)) if with_groups else res


@pytest.mark.slow
def test_profile_resolves_from_repo_root(tmp_path):
    """`--profile slurm` (cwd = repo root): GPU partition + gpu=1 for training, nothing GPU elsewhere."""
    res, groups = dry_run_resources(tmp_path, "slurm", with_groups=True)
    assert {"synthesize_dataset", "slice_dataset", "split_dataset", "pretrain", "finetune"} <= set(res)
    for rule, line in res.items():
        if rule == "all":
            continue
        assert "slurm_account=CHANGE_ME" in line
        if rule in GPU_RULES:
            assert "slurm_partition=gpu" in line and re.search(r"\bgpu=1\b", line), line
            assert "cpus_per_task=3" in line and "pack_gpu=1" in line, line   # = config threads
        else:
            assert "slurm_partition=CHANGE_ME" in line and not re.search(r"\bgpu|pack_gpu", line), line
    # finetunes in packs (one group job per run of tiny_config: tfs, simclr, hssl), the data stage one job
    # per dataset
    assert sorted(groups) == ["data_msd_heart", "data_msd_spleen", "finetune_hssl_hssl", "finetune_hssl_simclr",
                              "finetune_hssl_tfs"], groups


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


STAND_INS = {
    # sbatch: record the call, then refuse it (snakemake reports the failure and stops: nothing is queued)
    "sbatch": 'printf "%s\\n" "$*" >> "$SBATCH_CALLS"; echo "sbatch: error: stand-in, nothing submitted" >&2; exit 1',
    "sacctmgr": 'echo mylab',      # the account check
    "sshare": 'echo mylab',
}


@pytest.mark.slow
def test_a_pack_of_finetunes_asks_sbatch_for_one_gpu(tmp_path, monkeypatch):
    """4 finetunes of one run (K = 4) are one sbatch: one GPU, one finetune's CPUs and memory, and the sum of
    their walltimes (they run one after another on that GPU). The real SLURM executor plugin builds the call;
    a stand-in `sbatch` records it."""
    root = copy_repo(tmp_path / "medssl")
    profile = root / "slurm" / "config.yaml"
    profile.write_text(profile.read_text().replace('"CHANGE_ME"', '"mylab"'))
    ratios = ("5", "10", "50", "100")
    config = small_config()
    config["threads"] = 3
    config["studies"]["hssl"]["runs"] = {"tfs": {"method": "tfs", "arch": "hssl_net", "label_ratios": list(ratios)}}
    (root / "config" / "tiny.yaml").write_text(yaml.safe_dump(config))
    code, out = snakemake_cli("results/tiny/splits/msd_heart.json", "--cores", "2", "--configfile",
                              "config/tiny.yaml", cwd=root, timeout=600)      # the data stage, locally
    assert code == 0, out[-3000:]
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    for name, body in {**STAND_INS, **{n: "exit 0" for n in ("sinfo", "squeue", "sacct", "scontrol", "scancel")}
                       }.items():
        (stand_ins / name).write_text(f"#!/bin/sh\n{body}\n")
        (stand_ins / name).chmod(0o755)
    calls = tmp_path / "sbatch_calls"
    monkeypatch.setenv("PATH", f"{stand_ins}:{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_CALLS", str(calls))
    metrics = [f"results/tiny/hssl/metrics/tfs/msd_heart/{r}/seed0.json" for r in ratios]
    code, out = snakemake_cli(*metrics, "--configfile", "config/tiny.yaml", "--profile", "slurm", "--retries", "0",
                              cwd=root, timeout=300)
    assert code != 0 and calls.exists(), out[-3000:]
    submitted = calls.read_text().splitlines()
    assert len(submitted) == 1, submitted              # one sbatch for the 4 finetunes
    call = submitted[0]
    assert "--comment rule_finetune_hssl_tfs_finetune " in call, call          # the group job of run tfs
    assert all(f"finetune:study=hssl,run=tfs,dataset=msd_heart,ratio={r},seed=0" in call for r in ratios), call
    assert " --gpus=1 " in f"{call} " and "--gres" not in call, call           # one GPU, not 4
    assert "--cpus-per-task=3 " in call and " --mem 16000 " in call, call       # one finetune's
    group = out.split("Group job finetune_hssl_tfs", 1)[1]
    runtimes = [int(m) for m in re.findall(r"^\s+resources: .*\bruntime=(\d+)", group, re.M)[:len(ratios)]]
    assert len(runtimes) == len(ratios) and f" -t {sum(runtimes)} " in call, (call, runtimes)   # one after another
    assert " -p gpu " in call and " --requeue" in call, call
