"""The grid, expanded once: what each report reads, the jobs that makes, and what `all` asks for."""

from __future__ import annotations

from pathlib import Path

from medssl.config import load_config
from medssl.layout import Layout
from medssl.plan import Plan, resolved_settings
from medssl.reports.targets import required_files

REPO = Path(__file__).resolve().parents[1]


def test_plan_of_the_demo():
    config = load_config(REPO / "config" / "config.yaml", registries=False)
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


def test_resolved_settings_apply_every_default():
    config = load_config(REPO / "config" / "paper.yaml", registries=False)
    plan = resolved_settings(config)
    hssl = plan["studies"]["hssl"]
    assert hssl["options"] == {"paper": "hssl", "downstream": "segmentation", "slice_filter": "foreground",
                               "input_norm": "none", "noise_sigma": 0.1}
    assert hssl["runs"]["tfs"]["pretrained_by"] is None and "pretrain" not in hssl["runs"]["tfs"]
    assert hssl["runs"]["hssl"]["pretrain"]["lr_schedule"] == "linear"  # paper A's schedule, from the config
    assert hssl["runs"]["hssl"]["finetune"]["poly_power"] == 0.9  # a schema/library default, written out
    assert plan["datasets"]["mmwhs_mri"]["slice_axis"] == "sagittal" and plan["synthetic"] is False
    ssmtl = next(s for s in plan["studies"].values() if s["options"]["paper"] == "ssmtl")
    assert ssmtl["options"]["input_norm"] == "instance" and ssmtl["options"]["slice_filter"] == "all"
