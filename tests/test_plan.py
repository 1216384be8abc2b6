"""The grid, expanded once: what each report reads, the jobs that makes, and what `all` asks for."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from medssl import jobs as medssl_jobs
from medssl.config import load_config, resolve, validate
from medssl.layout import Layout
from medssl.plan import Plan
from medssl.reports.targets import required_files

REPO = Path(__file__).resolve().parents[1]


def load_config_text(text: str) -> dict:
    return resolve(validate(yaml.safe_load(text)))


def test_plan_of_the_demo():
    config = load_config(REPO / "config" / "config.yaml")
    plan = Plan.of(config)
    lay = Layout.of(config)
    for target in plan.reports:  # the files the workflow's report rules read are the library's own list
        assert list(plan.inputs[target]) == required_files(config, target)
    assert all(str(p).endswith("_pred.npz") for p in plan.inputs["hssl_fig5_qualitative"])
    assert plan.inputs["hssl_fig3b_tsne"] == (lay.features("hssl", "hssl"),) and plan.features == (("hssl", "hssl"),)
    assert len(set(plan.evaluations)) == len(plan.evaluations)  # one job per evaluation, however many read it
    read = {p for files in plan.inputs.values() for p in files}
    assert {lay.metrics(*k) for k in plan.evaluations} <= read | {Path(str(p).replace("_pred.npz", ".json"))
                                                                for p in read}
    # single-domain CL pretrains on each finetuning dataset, multi-domain on the pool 'all'
    pools = {(r, p) for s, r, p in plan.pretrains if s == "hssl"}
    assert ("simclr_single", "msd_heart") in pools and ("simclr", "all") in pools and ("tfs", "all") not in pools
    assert plan.targets()[:len(plan.datasets)] == [lay.split(d) for d in config["datasets"]]
    assert lay.output("tables/hssl_table2.html") in plan.report_files()
    assert plan.outputs_of("hssl_table2") == [lay.output(f"tables/hssl_table2.{x}") for x in ("csv", "md", "html")]


def _job_wildcards(config: dict):
    """(job kind, wildcards) of every job of ``config``'s workflow, from its plan."""
    plan = Plan.of(config)
    for dataset in plan.datasets:
        for job in ("synthesize" if config["synthetic"] else "fetch", "slice", "split"):
            yield job, {"dataset": dataset}
    for study, run, pool in plan.pretrains:
        yield "pretrain", {"study": study, "run": run, "pool": pool}
    for study, run, dataset, ratio, seed in plan.evaluations:
        for job in ("finetune", "evaluate"):
            yield job, {"study": study, "run": run, "dataset": dataset, "ratio": ratio, "seed": seed}
    for study, run in plan.features:
        yield "features", {"study": study, "run": run}
        if medssl_jobs.record(config, "features", study=study, run=run).generic == "vgg19":
            yield "weights", {"name": "vgg19"}
    for target in plan.reports:
        yield "report", {"target": target}
    for study in plan.summaries:
        yield "summary", {"study": study}


def _assert_jobs_read_the_same(config: dict, plan: dict) -> set[str]:
    """Each job of the plan, run as a config, gets the record it gets from the config; returns the job kinds."""
    jobs = list(_job_wildcards(config))
    for job, wildcards in jobs:
        if job == "evaluate":  # reads its finetune job's record
            continue
        assert medssl_jobs.record(plan, job, **wildcards) == medssl_jobs.record(config, job, **wildcards)
    return {job for job, _ in jobs}


CONFIGS = [REPO / "config" / name for name in ("config.yaml", "paper.yaml", "benchmark.yaml")]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_plan_is_a_config_that_jobs_read_as_they_would_the_config(path):
    config = load_config(path)
    plan = load_config_text(yaml.safe_dump(config))  # the plan file, run as a config
    assert plan == config  # a valid config (the schema holds every key), every default already written out
    kinds = _assert_jobs_read_the_same(config, plan)
    source = {"fetch"} if config["synthetic"] else {"synthesize"}
    pixels = {"weights"} if config["reports"]["hssl_fig3b_tsne"].get("generic") == "pixels" else set()
    assert kinds >= set(medssl_jobs.JOBS) - {"summary"} - source - pixels  # every study has a paper report
    assert ("weights" in kinds) == (path.name == "paper.yaml")  # the demo's Figure 3b draws pixels


def test_an_own_dataset_and_study_overrides_resolve_into_the_plan(tmp_path):
    config = load_config_text(yaml.safe_dump({
        "experiment": "own", "data": {"image_size": 32, "split": {"seed": 0}},
        "datasets": {"mine": {"path": str(tmp_path), "modality": "MRI", "classes": {"organ": 1}, "slice_axis": "axial",
                              "split": {"ratios": [0.6, 0.2, 0.2]}},
                     "msd_heart": {"scans_subset": [2, 3], "split": {"counts": [3, 1, 1]}}},
        "studies": {"s": {"pretrain_datasets": ["mine"], "finetune_datasets": ["mine", "msd_heart"],
                          "finetune": {"lr": 1e-3}, "runs": {"a": {"method": "simclr", "arch": "hssl_net",
                                                                  "params": {"temperature": 0.1}},
                                                            "b": {"method": "tfs", "arch": "hssl_net",
                                                                  "label_ratios": ["scans"],
                                                                  "finetune_datasets": ["msd_heart"]}}}}}))
    plan = config
    assert resolve(copy.deepcopy(plan)) == plan
    assert "summary" in _assert_jobs_read_the_same(config, plan)
    mine, heart = plan["datasets"]["mine"], plan["datasets"]["msd_heart"]
    assert mine["split"] == {"ratios": [0.6, 0.2, 0.2], "seed": 0, "scans_subset_sampling": "random"}
    assert mine["modality"] == "MRI"
    assert heart["split"] == {"seed": 0, "counts": [3, 1, 1], "scans_subset_sampling": "random"}  # counts win
    assert heart["scans_subset"] == [2, 3] and "scans_subset" not in mine and "patients" not in mine
    a, b = plan["studies"]["s"]["runs"]["a"], plan["studies"]["s"]["runs"]["b"]
    assert a["params"]["temperature"] == 0.1 and a["params"]["proj_dim"] == 128  # the method's own default
    assert a["finetune"]["lr"] == 1e-3 and a["pretrain"]["lr"] == 3e-4 and a["domain"] == "multi"
    assert b["params"] == {} and "pretrain" not in b and b["label_ratios"] == ["scans"]
    assert "noise_sigma" not in plan["studies"]["s"] and "paper" not in plan["studies"]["s"]


def test_the_plan_applies_every_default():
    config = load_config(REPO / "config" / "paper.yaml")
    plan = config
    hssl = plan["studies"]["hssl"]
    assert {k: hssl[k] for k in ("paper", "downstream", "slice_filter", "input_norm")} == {
        "paper": "hssl", "downstream": "segmentation", "slice_filter": "foreground", "input_norm": "none"}
    assert "pretrain_run" not in hssl["runs"]["tfs"] and "pretrain" not in hssl["runs"]["tfs"]
    assert hssl["runs"]["hssl"]["pretrain"]["poly_power"] == 1.0  # paper A's linear decay, from the config
    assert hssl["runs"]["hssl"]["finetune"]["poly_power"] == 0.9  # a schema/library default, written out
    assert hssl["runs"]["hssl"]["params"]["lambda_rec"] == 50.0  # the method's default (paper A's lambda_4)
    assert plan["datasets"]["mmwhs_mri"]["slice_axis"] == "sagittal" and plan["synthetic"] is False
    assert plan["datasets"]["msd_heart"]["ct_window"] == config["data"]["normalisation"]["ct_window"]
    ssmtl = next(s for s in plan["studies"].values() if s.get("paper") == "ssmtl")
    assert ssmtl["input_norm"] == "instance" and ssmtl["slice_filter"] == "all"
