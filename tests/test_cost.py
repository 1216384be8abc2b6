"""medssl cost: DAG job counts (pure Python, cross-checked against `snakemake -n`) and GPU-hour estimates."""

from __future__ import annotations

import copy
import dataclasses
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
    total = re.search(r"^total\s+(\d+)\s+([\d.]+)\s+assumed$", out, re.M)
    est = cost.estimate(load("paper.yaml"))
    assert int(total.group(1)) == sum(est.counts.values())
    assert float(total.group(2)) == pytest.approx(est.gpu_hours(), abs=0.06)
    assert "ASSUMED" in out and "hssl/hssl" in out
    # every figure says where it comes from: the rule table's and the per-run table's last column
    assert re.search(r"^pretrain\s+\d+\s+[\d.]+\s+assumed$", out, re.M)
    assert re.search(r"^fetch_dataset\s+\d+\s+-\s+-$", out, re.M)
    assert re.search(r"^hssl/hssl\s+pretrain\s+1\s+[\d.]+\s+500\s+assumed$", out, re.M)


def tiny_loaded(tmp_path) -> dict:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(small_config()))
    return cfg.load_config(path)


def record(arch="hssl_net", stage="finetune", size=192, ips=100.0, **kw) -> cost.Measurement:
    fields = dict(device="NVIDIA H100 80GB HBM3", date="2026-12-04T10:00:00+00:00", passes={"hssl": 1.0}, pack=1)
    return cost.Measurement(arch, stage, size, images_per_second=ips, **{**fields, **kw})


def test_measure_throughput_runs_on_cpu():
    import torch

    torch.set_num_threads(1)
    result = cost.measure_throughput(["hssl_net"], 32, batch_size=2, steps=1, warmup=1, device="cpu", width=0.25)
    assert result[("hssl_net", 32)] > 0


def test_measure_writes_one_record_per_architecture_stage_and_size(tmp_path):
    """`--measure` on CPU with a tiny config: the experiment's throughput file, with every field, read back."""
    import datetime

    import torch

    torch.set_num_threads(1)
    config = tiny_loaded(tmp_path)
    path, records = cost.measure_to_file(config, tmp_path, device="cpu", batch_size=2, steps=1, warmup=1)
    assert path == tmp_path / "results" / "tiny" / "cost" / "throughput.yaml"
    data = yaml.safe_load(path.read_text())
    by_key = {(r["arch"], r["stage"], r["image_size"]): r for r in data["measurements"]}
    assert set(by_key) == {("hssl_net", "pretrain", 32), ("hssl_net", "finetune", 32)}
    pre = by_key[("hssl_net", "pretrain", 32)]
    assert set(pre) == {"arch", "stage", "image_size", "device", "date", "images_per_second", "passes", "pack"}
    assert pre["device"].startswith("cpu: ") and pre["images_per_second"] > 0 and pre["pack"] == 1
    assert datetime.datetime.fromisoformat(pre["date"]).tzinfo is not None
    # the passes the estimate divides by: two views for SimCLR and HSSL; a supervised pass when finetuning
    assert pre["passes"] == {"simclr": 2.0, "hssl": 2.0}
    assert by_key[("hssl_net", "finetune", 32)]["passes"] == {"tfs": 1.0, "simclr": 1.0, "hssl": 1.0}
    assert cost.read_measurements(path) == {r.key: r for r in records}
    assert not list(path.parent.glob(".*"))  # written atomically: no temporary file left beside it


def test_measure_packs_jobs_side_by_side(tmp_path, monkeypatch):
    """--pack K: K copies timed together (each its own process); the file records K, GPU-hours are walltime / K."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned copies' torch threads on a small CI machine
    config = tiny_loaded(tmp_path)
    path, records = cost.measure_to_file(config, tmp_path, device="cpu", pack=2, batch_size=2, steps=2, warmup=1)
    assert {r.pack for r in records} == {2} and all(r.images_per_second > 0 for r in records)
    est = cost.estimate(config, root=tmp_path)
    assert all(j.throughput_source == "measured" and j.gpu_hours == pytest.approx(j.hours / 2) for j in est.jobs)
    assert "2 jobs side by side" in cost.format_measurements(path, records)


@pytest.mark.parametrize("args", [["--pack", "2"], ["--measure", "--pack", "0"]])
def test_pack_goes_with_measure(args, capsys):
    assert main(["cost", "--config", str(REPO / "config" / "paper.yaml"), *args]) == 2
    assert "--pack" in capsys.readouterr().err


def test_the_estimate_uses_the_measured_file_and_says_so(tmp_path):
    config = load("paper.yaml")
    cost.write_measurements(cost.throughput_file(config, tmp_path),
                            [record("hssl_net", "pretrain", 192, 2000.0, passes={"hssl": 2.0, "moco": 1.5})])
    est = cost.estimate(config, root=tmp_path, config_name="paper.yaml")
    jobs = {(j.rule, j.wildcards["run"]): j for j in est.jobs if j.wildcards["study"] == "hssl"}
    assert jobs["pretrain", "hssl"].throughput == pytest.approx(1000.0)       # 2000 / 2 passes
    assert jobs["pretrain", "hssl"].throughput_source == "measured"
    assert jobs["pretrain", "moco"].throughput == pytest.approx(2000.0 / 1.5)
    assert jobs["pretrain", "rotation"].throughput == pytest.approx(2000.0)  # a method it does not list: 1 pass
    assert jobs["finetune", "hssl"].throughput_source == "assumed"           # no finetune record
    out = cost.format_table(est, by_run=True)
    assert re.search(r"^pretrain\s+\d+\s+[\d.]+\s+assumed\+measured$", out, re.M)  # ssmtl: no record at 256 px
    assert re.search(r"^hssl/hssl\s+pretrain\s+1\s+[\d.]+\s+1000\s+measured$", out, re.M)
    assert (f"measured on NVIDIA H100 80GB HBM3, 2026-12-04T10:00:00+00:00 ({tmp_path}/results/paper/cost/"
            "throughput.yaml): hssl_net pretrain 192 px 2000/s (/ passes: hssl 2, moco 1.5)") in out
    assert "ASSUMED" in out


def test_a_config_value_wins_over_the_measurement(tmp_path):
    """config images_per_second > measured file > assumed default (cost module docstring)."""
    config = raw("paper.yaml")
    config["studies"]["hssl"]["pretrain"]["images_per_second"] = 123.0
    config["studies"]["hssl"]["runs"]["moco"]["pretrain"] = {"images_per_second": 45.0}
    config = resolved(config)
    cost.write_measurements(cost.throughput_file(config, tmp_path), [record("hssl_net", "pretrain", 192, 2000.0)])
    est = cost.estimate(config, root=tmp_path)
    jobs = {(j.rule, j.wildcards["run"]): j for j in est.jobs if j.wildcards["study"] == "hssl"}
    assert (jobs["pretrain", "hssl"].throughput, jobs["pretrain", "hssl"].throughput_source) == (123.0, "config")
    assert jobs["pretrain", "moco"].rate.detail == "studies.hssl.runs.moco.pretrain.images_per_second"
    assert jobs["pretrain", "moco"].throughput == 45.0
    out = cost.format_table(est)
    assert "studies.hssl.pretrain.images_per_second = 123" in out and "measured" not in out.split("\n\n")[1]
    assert re.search(r"^pretrain\s+\d+\s+[\d.]+\s+assumed\+config$", out, re.M)


def test_packed_jobs_share_the_gpu_hours():
    """A record measured with K jobs side by side: walltime at its images/s, GPU-hours / K."""
    config = load("paper.yaml")
    measured = {r.key: r for r in [record(stage="pretrain", ips=2000.0, pack=1),
                                   record(stage="finetune", ips=2000.0, pack=2)]}
    est = cost.estimate(config, root="/nonexistent", measured=measured)
    ft = next(j for j in est.jobs if j.rule == "finetune" and j.wildcards["run"] == "hssl")
    assert ft.gpu_hours == pytest.approx(ft.hours / 2)
    assert "with 2 jobs a GPU" in cost.format_table(est)


def test_runtime_minutes_follow_the_estimate(tmp_path):
    """A training job's walltime: estimated GPU time x safety x attempt (for the rules' runtime resource), at
    the measured throughput when the experiment has a throughput file."""
    config = load("paper.yaml")
    est = cost.estimate(config, root="/nonexistent")
    job = next(j for j in est.jobs if j.rule == "finetune" and j.wildcards["run"] == "hssl"
               and j.wildcards["dataset"] == "mnms" and j.wildcards["ratio"] == "100")
    minutes = cost.runtime_minutes(config, "finetune", job.wildcards, 1, root="/nonexistent")
    assert minutes == pytest.approx(job.gpu_hours * 60 * 2, abs=1)
    assert cost.runtime_minutes(config, "finetune", job.wildcards, 2, root="/nonexistent") == 2 * minutes
    pre = next(j for j in est.jobs if j.rule == "pretrain")
    assert cost.runtime_minutes(config, "pretrain", pre.wildcards, root="/nonexistent") >= 10
    cost.write_measurements(cost.throughput_file(config, tmp_path), [record(ips=100.0, passes={"hssl": 1.0})])
    measured = cost.estimate(config, root=tmp_path)
    slow = next(j for j in measured.jobs if j.wildcards == job.wildcards)
    assert slow.throughput == 100.0 and slow.gpu_hours > 5 * job.gpu_hours
    assert cost.runtime_minutes(config, "finetune", job.wildcards, 1, root=tmp_path) == pytest.approx(
        slow.gpu_hours * 60 * 2, abs=1)


def test_a_measurement_reruns_nothing(tmp_path):
    """The throughput file feeds the walltime (a resource), never a job's settings record."""
    from medssl import jobs

    config = load("paper.yaml")
    w = {"study": "hssl", "run": "hssl", "dataset": "mnms", "ratio": "100", "seed": 0}
    before = (jobs.record(config, "finetune", **w).digest(), cost.runtime_minutes(config, "finetune", w, root=tmp_path))
    cost.write_measurements(cost.throughput_file(config, tmp_path), [record(ips=10.0)])
    after = (jobs.record(config, "finetune", **w).digest(), cost.runtime_minutes(config, "finetune", w, root=tmp_path))
    assert before[0] == after[0] and after[1] > before[1]
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert "throughput" not in rules  # no rule names the file (as an input or otherwise)


def test_cli_measure_writes_the_file_the_estimate_reads(monkeypatch, capsys, tmp_path):
    calls = []

    def fake(archs, size, **kw):
        calls.append((tuple(archs), size))
        return {(a, size): 2000.0 for a in archs}

    monkeypatch.setattr(cost, "measure_throughput", fake)
    paper = str(REPO / "config" / "paper.yaml")
    assert main(["cost", "--config", paper, "--measure", "--directory", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("hssl_net", 192) in {(a, s) for archs, s in calls for a in archs}
    assert "measured hssl_net at 192 px: 2000.0" in out
    path = tmp_path / "results" / "paper" / "cost" / "throughput.yaml"
    assert f"written to {path}" in out and "ASSUMED" not in out
    assert re.search(r"^finetune\s+\d+\s+[\d.]+\s+measured$", out, re.M)
    # a later estimate reads the file: the same figures, no measuring
    calls.clear()
    assert main(["cost", "--config", paper, "--directory", str(tmp_path)]) == 0
    again = capsys.readouterr().out
    assert not calls and again.split("\n\n", 1)[1] == out.split("\n\n", 1)[1]
    assert "measured on cpu: " in again or "measured on NVIDIA" in again


BAD_FILES = {
    "yaml": "measurements: [unclosed\n",
    "python tag": "!!python/object/apply:os.system ['touch pwned']\n",
    "not a mapping": "- 1\n",
    "extra key": "measurements: []\nother: 1\n",
    "record not a mapping": "measurements: [3]\n",
    "missing key": "measurements: [{arch: hssl_net, stage: pretrain}]\n",
    "unknown key": None,
    "negative": None,
    "nan": None,
    "bool size": None,
    "stage": None,
    "passes": None,
    "pack": None,
    "date": None,
    "duplicate": None,
    "binary": b"\xff\xfe\x00measurements",
}


def _bad_record(case: str) -> str:
    good = dataclasses.asdict(record())
    changes = {"unknown key": {"speed": 1}, "negative": {"images_per_second": -1.0},
               "nan": {"images_per_second": float("nan")}, "bool size": {"image_size": True},
               "stage": {"stage": "evaluate"}, "passes": {"passes": {"hssl": 0}}, "pack": {"pack": 0},
               "date": {"date": "yesterday"}}
    records = [good, good] if case == "duplicate" else [{**good, **changes[case]}]
    return yaml.safe_dump({"measurements": records})


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_throughput_file_is_one_line_naming_it(case, tmp_path, capsys):
    """Untrusted input: parsed as data only (a python tag is refused, never run), every field checked."""
    config = tiny_loaded(tmp_path)
    path = cost.throughput_file(config, tmp_path)
    path.parent.mkdir(parents=True)
    body = BAD_FILES[case] if BAD_FILES[case] is not None else _bad_record(case)
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a valid throughput file")) as err:
        cost.estimate(config, root=tmp_path)
    assert "\n" not in str(err.value) and not (tmp_path / "pwned").exists()
    assert main(["cost", "--config", str(tmp_path / "tiny.yaml"), "--directory", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medssl: error: {path}: not a valid throughput file")


def test_an_unreadable_throughput_file_is_named(tmp_path):
    config = tiny_loaded(tmp_path)
    cost.throughput_file(config, tmp_path).mkdir(parents=True)   # a folder where the file should be
    with pytest.raises(ValueError, match="throughput.yaml: not a valid throughput file: cannot be read"):
        cost.runtime_minutes(config, "finetune", {"study": "hssl", "run": "tfs", "dataset": "msd_heart",
                                                  "ratio": "100", "seed": 0}, root=tmp_path)


def test_the_documented_throughput_file_is_one(tmp_path):
    """docs/slurm.md's example file is what `--measure` writes and the estimate reads."""
    from test_docs_code import marked

    path = tmp_path / "throughput.yaml"
    path.write_text(marked("run by tests/test_cost.py", "slurm.md"))
    records = cost.read_measurements(path)
    assert ("hssl_net", "pretrain", 192) in records and all(r.pack == 1 for r in records.values())


def test_a_pretraining_on_several_gpus_is_shorter_and_counts_every_gpu():
    config = raw("paper.yaml")
    one = cost.estimate(resolved(config), root="/nonexistent")
    config["studies"]["hssl"]["runs"]["hssl"].setdefault("pretrain", {})["gpus"] = 4
    four = cost.estimate(resolved(config), root="/nonexistent")
    job = lambda est: next(j for j in est.jobs if j.rule == "pretrain" and j.wildcards["run"] == "hssl")  # noqa: E731
    compute = lambda j: j.hours - cost.JOB_OVERHEAD_S / 3600  # noqa: E731
    assert compute(job(four)) == pytest.approx(compute(job(one)) / (4 * cost.SCALING_EFFICIENCY))
    assert job(four).gpu_hours == pytest.approx(job(four).hours * 4)
    assert "gpus: N pretrainings" in "\n".join(cost.format_table(four).splitlines()[-6:])
