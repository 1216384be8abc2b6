"""medssl cost: DAG job counts (pure Python, cross-checked against `snakemake -n`) and GPU-hour estimates."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_repo, job_counts, snakemake_cli, tiny_config
from medssl import config as cfg
from medssl import cost
from medssl import settings as st
from medssl.cli import main


def load(name: str) -> dict:
    return cfg.load_config(REPO / "config" / name)


def raw(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def resolved(config: dict) -> dict:
    return cfg.resolve(cfg.validate(copy.deepcopy(config)))


def snakemake_job_counts(config_path, workdir) -> dict[str, int]:
    """Per-rule job counts of `snakemake all -n --configfile C` from scratch, run from the root of a copy of the
    repository in ``workdir`` (its "Job stats" table)."""
    root = copy_repo(Path(workdir) / "medssl")
    shutil.copy(config_path, root / "config" / "counted.yaml")
    code, out = snakemake_cli("all", "-n", "--quiet", "rules", "--configfile", "config/counted.yaml", cwd=root,
                              timeout=300)
    assert code == 0, out
    return job_counts(out)


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_counts_match_snakemake_dry_run(name, tmp_path):
    """The pure-Python DAG of medssl.cost holds exactly the jobs snakemake plans, rule by rule."""
    assert cost.job_counts(load(name)) == snakemake_job_counts(REPO / "config" / name, tmp_path)


def small_config() -> dict:
    """tiny_config() restricted to what its two datasets can run: studies on other datasets and the
    reports block (which names them) left out."""
    config = tiny_config()
    names = set(config["datasets"])
    config["studies"] = {k: s for k, s in config["studies"].items()
                         if set(s["pretrain_datasets"]) | set(s["finetune_datasets"]) <= names}
    config.pop("reports", None)
    return config


def test_counts_match_snakemake_with_single_domain_and_run_overrides(tmp_path):
    config = small_config()
    study = config["studies"]["hssl"]
    study["seeds"] = [0, 1]
    study["runs"] = {"tfs": {"method": "tfs", "arch": "hssl_net"}, "hssl": {"method": "hssl", "arch": "hssl_net"},
                     "single": {"method": "simclr", "arch": "hssl_net", "domain": "single",
                                "finetune_datasets": ["msd_heart", "msd_spleen"], "label_ratios": ["5", "100"]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    counts = cost.job_counts(cfg.load_config(path))
    assert counts["pretrain"] == 3          # hssl on 'all', single on each of its two datasets
    assert counts["finetune"] == 2 * 2 + 2 * 2 * 2 and "evaluate" not in counts  # finetune evaluates
    assert counts == snakemake_job_counts(path, tmp_path / "wd")


def test_reports_pick_the_evaluations_they_read():
    """With a reports block, `all` = splits + tables/figures: only the evaluations they read are jobs."""
    config = load("config.yaml")
    jobs = cost.dag_jobs(config)
    assert jobs.get("tsne_features") and {"target": "hssl_table2"} in jobs["report_table"]
    assert {"target": "hssl_fig3b_tsne"} in jobs["report_figure"]
    no_reports = raw("config.yaml")
    no_reports.pop("reports")
    full = cost.job_counts(resolved(no_reports))
    # Without reports every study gets its generic summary, which reads the study's whole grid.
    assert "tsne_features" not in full and [r for r in full if r.startswith("report_")] == ["report_summary"]
    assert full["report_summary"] == len(config["studies"])
    assert full["finetune"] >= len(jobs["finetune"])
    # pretrain_run: a run finetuned from another run's pretraining adds no pretraining job of its own
    pools = {(w["study"], w["run"]) for w in jobs["pretrain"]}
    assert ("ssmtl_denoise", "unet_ssmtl") not in pools and ("ssmtl_ct", "unet_t5") in pools


def test_pretrain_jobs_skip_tfs_and_share_pools():
    jobs = cost.dag_jobs(load("paper.yaml"))
    pools = {(w["run"], w["pool"]) for w in jobs["pretrain"]}
    assert not any(run in ("tfs", "unet", "unet3plus") for run, _ in pools)
    assert ("hssl", "all") in pools
    assert {p for r, p in pools if r == "simclr_single"} == {"msd_heart", "msd_prostate", "msd_spleen", "mnms"}
    assert "fetch_dataset" in jobs and "synthesize_dataset" not in jobs


def test_gpu_hours_scale_with_epochs_and_throughput():
    config = load("paper.yaml")
    base = cost.estimate(config)
    assert base.gpu_hours() == pytest.approx(base.gpu_hours("pretrain") + base.gpu_hours("finetune"))
    doubled = raw("paper.yaml")
    doubled["studies"]["hssl"]["pretrain"]["epochs"] *= 2
    doubled = resolved(doubled)

    def hssl_pretrain_hours(est):
        jobs = [j for j in est.jobs if j.rule == "pretrain" and j.wildcards["study"] == "hssl"]
        return sum(j.gpu_hours for j in jobs) - len(jobs) * cost.JOB_OVERHEAD_S / 3600

    assert hssl_pretrain_hours(cost.estimate(doubled)) == pytest.approx(2 * hssl_pretrain_hours(base))
    fast = raw("paper.yaml")
    for study in fast["studies"].values():
        study.setdefault("finetune", {})["images_per_second"] = 1e9
    est = cost.estimate(resolved(fast))
    assert est.gpu_hours("finetune") == pytest.approx(est.counts["finetune"] * cost.JOB_OVERHEAD_S / 3600, rel=1e-3)
    assert "config" in est.throughput_sources()


def test_slice_counts_for_real_data():
    config = load("paper.yaml")
    heart = cost.dataset_size(config, "msd_heart", "/nonexistent")
    assert heart.fg_slices == 1262 and heart.source == "HSSL Table 1, sample_slices"
    assert heart.split_patients == (14, 2, 4)
    ct = cost.dataset_size(config, "mmwhs_ct", "/nonexistent")
    assert ct.slices == 20 * 270 and ct.split_patients == (5, 0, 15)
    settings = st.dataset_settings(config, "mmwhs_ct")
    assert cost.labelled_slices(ct, settings, "scans") == 5 * 20
    assert cost.labelled_slices(heart, st.dataset_settings(config, "msd_heart"), "5") == 45  # ceil(5% of 883)


def test_the_sample_sets_the_slices_a_job_trains_on():
    """paper.yaml samples each HSSL dataset to Table 1's count; a smaller sample shrinks the estimate, a store's
    ``sampled`` column is counted exactly (test_store_counts_its_sample)."""
    config = raw("paper.yaml")
    config["datasets"]["msd_liver"] = {"sample_slices": 100}
    liver = cost.dataset_size(resolved(config), "msd_liver", "/nonexistent")
    assert liver.fg_slices == 100 and liver.slices == 58638
    del config["datasets"]["msd_liver"]["sample_slices"]
    assert cost.dataset_size(resolved(config), "msd_liver", "/nonexistent").source == "HSSL Table 1"
    small = small_config()
    small["datasets"]["msd_heart"] = {**(small["datasets"].get("msd_heart") or {}), "sample_slices": 3}
    assert cost.dataset_size(resolved(small), "msd_heart", "/nonexistent").fg_slices == 3  # phantom geometry


def test_store_counts_its_sample(tmp_path):
    import pandas as pd

    config = resolved(small_config())
    store = tmp_path / "results" / config["experiment"] / "data" / "msd_heart"
    store.mkdir(parents=True)
    pd.DataFrame([{"row": i, "case": "p0", "patient": "p0", "slice": i, "n_slices": 6, "fg": int(i > 0),
                   "sampled": int(i in (1, 4))} for i in range(6)]).to_csv(store / "index.csv", index=False)
    size = cost.dataset_size(config, "msd_heart", tmp_path)
    assert (size.slices, size.fg_slices, size.source) == (6, 2, "slice store")


def test_one_pretraining_job_by_hand():
    """1000 epochs over paper A's 29358 foreground slices, full batches of 30, two views at 1000 img/s."""
    est = cost.estimate(load("paper.yaml"), root="/nonexistent")
    job = next(j for j in est.jobs if j.rule == "pretrain" and j.wildcards["run"] == "hssl")
    assert job.images == 1000 * (29358 // 30) * 30
    assert job.throughput == pytest.approx(500.0) and job.throughput_source == "assumed"
    assert job.gpu_hours == pytest.approx((job.images / 500.0 + 60) / 3600)


def test_store_and_split_give_exact_counts(tmp_path):
    """With a slice store and split on disk, slice and label-subset counts come from them."""
    import json

    import pandas as pd

    config = small_config()
    res = tmp_path / "results" / config["experiment"]
    (res / "data" / "msd_heart").mkdir(parents=True)
    (res / "splits").mkdir(parents=True)
    rows = [{"row": i, "case": f"p{i // 4}", "patient": f"p{i // 4}", "slice": i % 4, "n_slices": 4,
             "fg": int(i % 4 != 0)} for i in range(20)]
    pd.DataFrame(rows).to_csv(res / "data" / "msd_heart" / "index.csv", index=False)
    split = {"patients": {"train": ["p0", "p1", "p2"], "val": ["p3"], "test": ["p4"]},
             "label_subsets": {"100": [["p0", 1], ["p0", 2], ["p0", 3], ["p1", 1]]}}
    (res / "splits" / "msd_heart.json").write_text(json.dumps(split))
    config = resolved(config)
    size = cost.dataset_size(config, "msd_heart", tmp_path)
    assert (size.patients, size.slices, size.fg_slices) == (5, 20, 15)
    assert size.split_patients == (3, 1, 1) and size.val_slices == 4
    assert cost.labelled_slices(size, st.dataset_settings(config, "msd_heart"), "100") == 4


def test_cli_prints_table_and_total(capsys):
    assert main(["cost", "--config", str(REPO / "config" / "paper.yaml"), "--by-run"]) == 0
    out = capsys.readouterr().out
    for rule in ("fetch_dataset", "pretrain", "finetune", "total"):
        assert re.search(rf"^{rule}\s+\d+", out, re.M), out
    total = re.search(r"^total\s+(\d+)\s+([\d.]+)$", out, re.M)
    est = cost.estimate(load("paper.yaml"))
    assert int(total.group(1)) == sum(est.counts.values())
    assert float(total.group(2)) == pytest.approx(est.gpu_hours(), abs=0.06)
    assert "ASSUMED" in out and "hssl/hssl" in out


def test_measure_throughput_runs_on_cpu():
    import torch

    torch.set_num_threads(1)
    result = cost.measure_throughput(["hssl_net"], 32, batch_size=2, steps=1, warmup=1, device="cpu")
    assert result[("hssl_net", 32)] > 0


def test_runtime_minutes_follow_the_estimate():
    """A training job's walltime: estimated GPU time x safety x attempt (for the rules' runtime resource)."""
    config = load("paper.yaml")
    est = cost.estimate(config, root="/nonexistent")
    job = next(j for j in est.jobs if j.rule == "finetune" and j.wildcards["run"] == "hssl"
               and j.wildcards["dataset"] == "mnms" and j.wildcards["ratio"] == "100")
    minutes = cost.runtime_minutes(config, "finetune", job.wildcards, 1, root="/nonexistent")
    assert minutes == pytest.approx(job.gpu_hours * 60 * 2, abs=1)
    assert cost.runtime_minutes(config, "finetune", job.wildcards, 2, root="/nonexistent") == 2 * minutes
    pre = next(j for j in est.jobs if j.rule == "pretrain")
    assert cost.runtime_minutes(config, "pretrain", pre.wildcards, root="/nonexistent") >= 10


def test_cli_measure_uses_the_measured_throughput(monkeypatch, capsys):
    calls = []

    def fake(archs, size, **kw):
        calls.append((tuple(archs), size))
        return {(a, size): 2000.0 for a in archs}

    monkeypatch.setattr(cost, "measure_throughput", fake)
    assert main(["cost", "--config", str(REPO / "config" / "paper.yaml"), "--measure"]) == 0
    out = capsys.readouterr().out
    assert ("hssl_net", 192) in {(a, s) for archs, s in calls for a in archs}
    assert "measured hssl_net at 192 px: 2000.0" in out and "measured on this machine" in out
