"""Config schema and registry: both shipped configs validate; bad keys fail naming the key."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from conftest import REPO
from medssl import config as mcfg
from medssl import registry
from medssl import settings as st


def load(config: dict) -> dict:
    """Validate and resolve a config dict, as load_config does a file."""
    return mcfg.resolve(mcfg.validate(config))


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_validate(repo, name):
    config = mcfg.load_config(repo / "config" / name)
    assert config["experiment"]
    for study in config["studies"]:
        for r in config["studies"][study]["runs"].values():
            assert r["domain"] in ("multi", "single")


def _demo(repo):
    with open(repo / "config" / "config.yaml") as f:
        return yaml.safe_load(f)


def test_unknown_key_is_named(repo):
    config = _demo(repo)
    config["data"]["imag_size"] = 64
    with pytest.raises(mcfg.ConfigError, match="imag_size"):
        mcfg.validate(config)


def test_ill_typed_key_is_named(repo):
    config = _demo(repo)
    config["studies"]["hssl"]["pretrain"]["epochs"] = "many"
    with pytest.raises(mcfg.ConfigError, match="studies/hssl/pretrain/epochs"):
        mcfg.validate(config)


def test_unknown_dataset_is_named(repo):
    config = _demo(repo)
    config["datasets"]["msd_hart"] = {}
    with pytest.raises(mcfg.ConfigError, match="msd_hart"):
        mcfg.validate(config)


def test_study_dataset_must_be_listed(repo):
    config = _demo(repo)
    config["studies"]["hssl"]["finetune_datasets"].append("acdc_x")
    with pytest.raises(mcfg.ConfigError, match="acdc_x"):
        mcfg.validate(config)


def test_dataset_settings_merge_overrides(repo):
    config = mcfg.load_config(repo / "config" / "paper.yaml")
    ct = st.dataset_settings(config, "mmwhs_ct")
    assert ct.image_size == 256 and ct.split["counts"] == [5, 0, 15] and "ratios" not in ct.split
    assert ct.scans_subset == (5, 20)
    heart = st.dataset_settings(config, "msd_heart")
    assert heart.image_size == 192 and heart.split["ratios"] == [0.7, 0.1, 0.2]
    assert heart.slice_axis == "axial"


def test_stage_settings_precedence(repo):
    config = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    config["studies"]["hssl"]["runs"]["hssl"]["finetune"] = {"epochs": 7}
    config["studies"]["hssl"]["finetune"].pop("poly_power")
    s = st.stage_settings(load(config), "hssl", "finetune", "hssl")
    assert s.epochs == 7 and s.lr == 5e-4  # run < study
    assert s.poly_power == mcfg.stage_defaults("finetune")["poly_power"] == 0.9  # the schema's default


def test_registry_covers_both_papers():
    a = registry.paper_a_datasets()
    assert [s.paper_task for s in a] == list(range(1, 9))
    assert [s.paper_group for s in a] == [1, 2, 3, 2, 2, 4, 1, 1]
    assert {"mmwhs_ct", "mmwhs_mri"} <= set(registry.REGISTRY)


def test_label_maps_follow_paper_order():
    # MSD prostate: 1 = PZ, 2 = TZ, kept in MSD's order (the paper's per-class Dice fits it; docs/choices.md)
    assert registry.get("msd_prostate").label_map() == {1: 1, 2: 2}
    assert registry.get("msd_prostate").class_names == ["peripheral zone (label 1)", "transition zone (label 2)"]
    # ACDC 1 RV, 2 MYO, 3 LV and M&Ms 1 LV, 2 MYO, 3 RV map to the same named classes.
    acdc, mnms = registry.get("acdc"), registry.get("mnms")
    assert acdc.class_names == mnms.class_names == ["LV", "RV", "myocardium"]
    assert acdc.label_map() == {3: 1, 1: 2, 2: 3}
    assert mnms.label_map() == {1: 1, 3: 2, 2: 3}
    ct = registry.get("mmwhs_ct").label_map()
    assert ct == {500: 1, 600: 2, 420: 3, 550: 4} and 205 not in ct


def test_sources_are_complete():
    for spec in registry.REGISTRY.values():
        if spec.is_manual:
            assert spec.source.register_url and spec.source.archive and spec.source.expect
        else:
            assert len(spec.source.md5) == 32 and spec.source.url.startswith("https://")


def test_new_msd_dataset_is_one_entry():
    spec = registry.DatasetSpec(
        name="msd_hippocampus_test", title="Hippocampus", modality="MRI", roi="brain",
        classes=(("anterior", (1,)), ("posterior", (2,))),
        source=registry.UrlSource(url="https://example.org/Task04_Hippocampus.tar", md5="0" * 32,
                                  archive="Task04_Hippocampus.tar", root="Task04_Hippocampus"))
    registry.register(spec)
    try:
        assert registry.get("msd_hippocampus_test").n_classes == 3
        with pytest.raises(ValueError):
            registry.register(spec)
    finally:
        del registry.REGISTRY["msd_hippocampus_test"]


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_runs_name_registered_methods_archs_and_params(repo, name):
    from medssl.methods import METHODS
    from medssl.models import MODELS

    config = mcfg.load_config(repo / "config" / name)
    for study, s in config["studies"].items():
        for run, r in s["runs"].items():
            assert r["arch"] in MODELS, (study, run)
            if r["method"] == "tfs":
                assert not r["params"], (study, run)
                continue
            assert r["method"] in METHODS, (study, run)
            assert set(r["params"]) == set(METHODS[r["method"]].default_params()), (study, run)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from medssl.io import write_json

    mask = os.umask(0o022)
    os.umask(mask)
    write_json(tmp_path / "x.json", {"a": 1})
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------------------------------------------------
# config/paper.yaml follows the papers (issue 13, points 1-4 and 7; Figure 5 whole)


def _paper(repo):
    return mcfg.load_config(repo / "config" / "paper.yaml")


def test_paper_a_pretraining_lr_decays_linearly_from_3e4(repo):
    from medssl.train.loop import poly_lambda

    paper = _paper(repo)
    for run, r in paper["studies"]["hssl"]["runs"].items():
        if "pretrain" not in r:  # trained from scratch, or finetuned from another run's pretraining
            continue
        s = st.stage_settings(paper, "hssl", "pretrain", run)
        assert (s.lr, s.scaled_lr, s.poly_power, s.epochs) == (3e-4, 3e-4, 1.0, 1000)
    s = st.stage_settings(paper, "hssl", "pretrain", "hssl")
    f = poly_lambda(s.epochs, s.poly_power)
    assert (f(0), f(500), f(999), f(1000)) == pytest.approx((1.0, 0.5, 0.001, 0.0))
    # paper B: "a fixed learning rate of 1e-3"; the demo keeps the constant default too
    for study in ("ssmtl_ct", "ssmtl_mri"):
        s = st.stage_settings(paper, study, "pretrain", "unet_t5")
        assert poly_lambda(s.epochs, s.poly_power)(50) == 1.0
    assert st.stage_settings(mcfg.load_config(repo / "config" / "config.yaml"), "hssl", "pretrain").poly_power == 0


def test_paper_a_moco_queue_is_below_the_pool(repo):
    paper = _paper(repo)
    pool = sum(registry.get(d).paper_slices for d in paper["studies"]["hssl"]["pretrain_datasets"])
    assert pool == 29358  # Table 1
    # and the config samples each dataset to Table 1's count
    assert {d: st.dataset_settings(paper, d).sample_slices for d in paper["studies"]["hssl"]["pretrain_datasets"]} \
        == {d: registry.get(d).paper_slices for d in paper["studies"]["hssl"]["pretrain_datasets"]}
    k = paper["studies"]["hssl"]["runs"]["moco"]["params"]["queue_size"]
    assert k == 4096 and k < pool / 5
    # paper B's MoCo V2 keeps its own K = 1024 (the method's default)
    from medssl.methods.moco import MoCoV2
    import inspect

    assert inspect.signature(MoCoV2.__init__).parameters["queue_size"].default == 1024


def test_paper_a_scores_the_slices_it_trains_on(repo):
    paper = _paper(repo)
    assert st.study_options(paper, "hssl").slice_filter == "foreground"
    assert st.study_options(paper, "ssmtl_ct").slice_filter == "all"
    # the schema's paper-dependent defaults, with the key left out
    config = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    for s in config["studies"].values():
        s.pop("slice_filter", None)
        s.pop("input_norm", None)
    resolved = load(config)
    assert [st.study_options(resolved, s).slice_filter for s in ("hssl", "ssmtl_ct")] == ["foreground", "all"]
    assert [st.study_options(resolved, s).input_norm for s in ("hssl", "ssmtl_ct")] == ["none", "instance"]


def test_paper_b_mri_is_the_14_sagittal_scans_and_slices_are_random(repo):
    paper = _paper(repo)
    spec = registry.get("mmwhs_mri")
    assert spec.acquired_plane == "sagittal" and spec.slice_axis == "sagittal"
    mri = st.dataset_settings(paper, "mmwhs_mri")
    assert sum(mri.split["counts"]) == 14 and mri.split["counts"][0] == 4 and mri.scans_subset == (4, 25)
    for name in ("mmwhs_ct", "mmwhs_mri"):
        assert st.dataset_settings(paper, name).split["scans_subset_sampling"] == "random"
    bad = copy.deepcopy(paper)
    bad["datasets"]["mmwhs_ct"]["split"]["scans_subset_sampling"] = "sometimes"
    with pytest.raises(mcfg.ConfigError, match="scans_subset_sampling"):
        mcfg.validate(bad)


def test_paper_figure5_has_its_four_panels(repo):
    from medssl.reports.targets import qualitative_spec

    q = qualitative_spec(_paper(repo))
    assert [" ".join(p.title.split()[:2]) for p in q.panels] == ["(a) top:", "(a) bottom:", "(b) HSSL", "(c) models"]
    top, bottom, b, c = q.panels
    assert [r.label for r in top.rows] == ["TFS", "Rotation", "In-painting", "MoCo", "SimCLR", "HSSL"]
    assert top.datasets == [("5", "msd_spleen")] and top.ratios == ["10"]
    assert bottom.ratios == ["5", "10", "50", "100"]
    assert [d for _, d in b.datasets] == ["msd_liver", "msd_prostate", "oai_zib", "acdc"] and b.ratios == ["10"]
    ft = _paper(repo)["studies"]["hssl"]["runs"][b.rows[0].run]
    assert {"msd_liver", "oai_zib", "acdc"} <= set(ft["finetune_datasets"]) and "10" in ft["label_ratios"]
    assert [r.label for r in c.rows] == ["UNet", "UNet3+", "HSSL"] and c.ratios == ["5", "10"]


# ------------------------------------------------------------ mistakes that fail at parse, naming the key
def _run_config(repo, **run):
    config = _demo(repo)
    config["studies"]["hssl"]["runs"]["x"] = {"method": "simclr", "arch": "hssl_net", **run}
    return config


@pytest.mark.parametrize("run, key", [
    ({"method": "simclrr"}, "studies/hssl/runs/x/method"),
    ({"arch": "hssl_nett"}, "studies/hssl/runs/x/arch"),
    ({"params": {"temprature": 0.5}}, "studies/hssl/runs/x/params/temprature"),
    ({"label_ratios": ["7"]}, "studies/hssl/runs/x/label_ratios"),
    ({"label_ratios": ["scans"]}, "studies/hssl/runs/x/label_ratios"),
    ({"pretrain": {"epochs": 0}}, "studies/hssl/runs/x/pretrain/epochs"),
    ({"finetune": {"epochs": 0}}, "studies/hssl/runs/x/finetune/epochs"),
])
def test_run_mistakes_fail_naming_the_key(repo, run, key):
    with pytest.raises(mcfg.ConfigError, match=re.escape(key)):
        load(_run_config(repo, **run))


def test_tfs_takes_no_method_params(repo):
    with pytest.raises(mcfg.ConfigError, match="studies/hssl/runs/x/params"):
        mcfg.validate(_run_config(repo, method="tfs", params={"temperature": 0.5}))


def test_study_label_ratio_must_be_in_data_label_ratios(repo):
    config = _demo(repo)
    config["studies"]["hssl"]["label_ratios"] = ["5", "12.5"]
    with pytest.raises(mcfg.ConfigError, match=re.escape("studies/hssl/label_ratios") + ".*12.5"):
        load(copy.deepcopy(config))
    config["data"]["label_ratios"] = [5, 10, 12.5, 50, 100]
    load(config)


@pytest.mark.parametrize("where, bad", [
    ("experiment", "."), ("experiment", ".."), ("experiment", "a b"), ("experiment", "a/b"),
    ("experiment", "-x"),
    ("resources", "res;touch /tmp/x;echo"), ("resources", "my res"), ("resources", "$HOME/res"),
    ("resources", "-res"),
    ("study", "hssl-a"), ("study", "a b"), ("study", "a.b"),
    ("run", "hssl+"), ("run", "a b"), ("run", "."), ("run", ".."), ("run", "a/b"), ("run", "-x"),
    ("dataset", "my data"), ("dataset", "my.data"), ("dataset", "../x"),
])
def test_names_that_would_break_paths_or_commands_are_refused(repo, where, bad):
    config = _demo(repo)
    if where in ("experiment", "resources"):
        config[where] = bad
    elif where == "study":
        config["studies"][bad] = copy.deepcopy(config["studies"]["ssmtl_ct"])
    elif where == "run":
        config["studies"]["ssmtl_ct"]["runs"][bad] = copy.deepcopy(config["studies"]["ssmtl_ct"]["runs"]["unet_tfs"])
    else:
        config["datasets"][bad] = {"path": "/data/x", "modality": "CT", "classes": {"a": 1}}
    with pytest.raises(mcfg.ConfigError) as err:
        mcfg.validate(config)
    assert repr(bad)[1:-1] in str(err.value) or bad in str(err.value)


@pytest.mark.parametrize("where, good", [("experiment", "run_2024-12.v2"), ("resources", "/scratch/me/res-1"),
                                         ("resources", "../shared/resources"), ("run", "unet_t5.e20-b")])
def test_ordinary_names_pass(repo, where, good):
    config = _demo(repo)
    if where == "run":
        config["studies"]["ssmtl_ct"]["runs"][good] = copy.deepcopy(config["studies"]["ssmtl_ct"]["runs"]["unet_t5"])
    else:
        config[where] = good
    mcfg.validate(config)


def test_data_jobs_never_import_torch():
    """A job reads its record, not a config: reading it and the synthesize, fetch and split jobs import no torch
    (~2 s a job; slicing resizes with torch); only resolving a config does (the method registry), which the
    workflow does once, at parse."""
    import subprocess
    import sys

    code = ("import sys; import medssl.cli, medssl.jobs, medssl.settings, "
            "medssl.data.splits, medssl.data.sources, medssl.data.phantoms; "
            "medssl.jobs.SliceJob.from_json('{\"dataset\": \"msd_heart\", \"declaration\": {}, "
            "\"synthetic\": true, \"image_size\": 32, \"slice_axis\": \"axial\", \"ct_window\": [0, 1], "
            "\"mri_percentiles\": [0, 1], \"sample_slices\": null}').spec; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_one_source_of_defaults():
    """No module applies a default of a schema key itself: the library reads resolved configs with [] (a
    `.get("<schema key>", <default>)` outside medssl/config.py is a second default), and each stage record
    holds exactly the schema's keys of its stage less the runtime and cost keys."""
    import ast
    import dataclasses

    schema = mcfg.load_schema()
    keys = set()

    def walk(node):
        if isinstance(node, dict):
            keys.update(node.get("properties", {}))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    keys -= {"reports", "allow_missing", "per_task", "perplexity", "seed", "seeds", "baseline", "max_rows",
             "metric", "ratio", "features", "dataset", "run", "study", "runs", "datasets", "ratios"}

    def root(node):  # the name a chain like config["studies"][s].get starts from
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return node.id if isinstance(node, ast.Name) else ""

    found = []
    for path in sorted((REPO / "src" / "medssl").rglob("*.py")):
        if path.name in ("config.py",):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in keys and root(node.func.value).endswith("config")):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} .get({node.args[0].value!r}, ...)")
    assert not found, found
    for stage, cls in st.STAGES.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert fields == set(mcfg.stage_defaults(stage)) - set(st.RUNTIME_KEYS) - set(st.COST_KEYS), stage


def test_the_study_label_ratios_default_to_the_splits_subsets(repo):
    config = _demo(repo)
    del config["studies"]["hssl"]["label_ratios"]
    for run in config["studies"]["hssl"]["runs"].values():
        run.pop("label_ratios", None)
    resolved = load(config)
    keys = [mcfg.ratio_key(r) for r in config["data"]["label_ratios"]]
    assert resolved["studies"]["hssl"]["label_ratios"] == keys
    assert resolved["studies"]["hssl"]["runs"]["tfs"]["label_ratios"] == keys
    del config["data"]["label_ratios"]
    assert load(config)["data"]["label_ratios"] == mcfg.defaults("properties", "data")["label_ratios"]


def test_a_broken_yaml_config_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("experiment: x\ndata: {image_size: 64\n")
    with pytest.raises(mcfg.ConfigError) as err:
        mcfg.load_config(path)
    assert str(path) in str(err.value) and "line" in str(err.value) and "\n" not in str(err.value)
