"""Report builders: known metrics in, known cells out (tables, paper deltas, tests, missing inputs, figures)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from medssl import config as cfg
from medssl.reports import check_reports, required_files, required_metrics
from medssl.reports.builders import build
from medssl.reports.metrics_files import MissingInputError
from medssl.reports.paper_values import paper_table
from medssl.reports.stats import holm, holm_adjust, paired_test, significance_marker

REPO = Path(__file__).resolve().parents[1]

HSSL_RUNS = {"TFS": "tfs", "Rotation": "rotation", "In-painting": "inpainting", "MoCo": "moco",
             "SimCLR": "simclr", "HSSL": "hssl"}

# The reports block suggested for config/config.yaml (demo: phantom twins of the papers' datasets).
DEMO_REPORTS = {
    "hssl_table2": {"study": "hssl", "runs": HSSL_RUNS,
                    "datasets": {"1": "msd_heart", "3": "msd_prostate", "5": "msd_spleen"},
                    "ratios": ["5", "10", "100"]},
    "hssl_table3": {"study": "hssl_arch", "runs": {"UNet": "unet", "UNet3+": "unet3plus", "HSSL": "hssl/hssl"},
                    "datasets": {"1": "msd_heart", "3": "msd_prostate", "5": "msd_spleen"},
                    "ratios": ["5", "10", "50"], "baseline": "hssl/tfs"},
    "hssl_table4": {"study": "hssl_ablation",
                    "runs": {"L_rec": "rec", "L_img": "hssl/simclr", "+L_rec": "img_rec", "+L_task": "img_rec_task",
                             "+L_group": "hssl/hssl"},
                    "datasets": {"1": "msd_heart", "5": "msd_spleen"}, "ratios": ["5"], "baseline": "hssl/tfs"},
    "hssl_fig3b_tsne": {"study": "hssl", "run": "hssl", "per_task": 50, "perplexity": 20},
    "hssl_fig4_domains": {"study": "hssl", "runs": {"TFS": "tfs", "Single-domain CL": "simclr_single",
                                                    "Multi-domain CL": "simclr", "HSSL": "hssl"},
                          "datasets": {"1": "msd_heart", "3": "msd_prostate", "5": "msd_spleen", "8": "mnms"},
                          "ratios": ["5", "10", "100"]},
    "hssl_fig5_qualitative": {"study": "hssl", "runs": HSSL_RUNS, "dataset": "msd_spleen", "ratio": "10",
                              "max_rows": 4},
    "ssmtl_table2": {"study": "ssmtl_unet", "runs": {"w/o pre-training": "tfs", "SSMTL (t=5)": "ssmtl_t5",
                                                     "SSMTL (t=10)": "ssmtl_t10", "SSMTL (t=15)": "ssmtl_t15"},
                     "datasets": {"CT": "mmwhs_ct"}, "ratios": ["scans"]},
    "ssmtl_table6": {"study": "ssmtl_denoise",
                     "runs": {"U-Net: w/o pre-training": "unet_tfs", "U-Net: SSMTL": "unet_ssmtl",
                              "ResNet-FCN: w/o pre-training": "fcn_tfs", "ResNet-FCN: MoCo V2": "fcn_mocov2",
                              "ResNet-FCN: SSMTL": "fcn_ssmtl", "ResNet-FCN: SSMTL+": "fcn_ssmtl_plus"},
                     "datasets": {"CT": "mmwhs_ct"}, "ratios": ["scans"]},
    "ssmtl_fig7_epochs": {"study": "ssmtl_unet", "ratio": "scans",
                          "series": {"CT, SSMTL (t=5)": {"dataset": "mmwhs_ct",
                                                         "runs": {"0": "tfs", "1": "ssmtl_t5_e1", "2": "ssmtl_t5"}}}},
}


def _study(runs: dict, finetune: list[str], ratios=("5", "10", "100"), seeds=(0, 1), **extra):
    return {"pretrain_datasets": finetune, "finetune_datasets": finetune, "label_ratios": list(ratios),
            "seeds": list(seeds), "runs": {r: {"method": m, "arch": a} for r, (m, a) in runs.items()}, **extra}


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results_dir(config) is relative: results/<exp>
    c = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    c["experiment"] = "t"
    c["studies"]["hssl"]["seeds"] = [0, 1]
    c["studies"]["hssl"]["runs"]["simclr_single"] = {"method": "simclr", "arch": "hssl_net", "domain": "single"}
    c["studies"]["hssl_arch"] = _study({"unet": ("tfs", "unet"), "unet3plus": ("tfs", "unet3plus")},
                                       ["msd_heart", "msd_prostate", "msd_spleen"], ("5", "10", "50"))
    c["studies"]["hssl_ablation"] = _study({"rec": ("hssl", "hssl_net"), "img_rec": ("hssl", "hssl_net"),
                                            "img_rec_task": ("hssl", "hssl_net")}, ["msd_heart", "msd_spleen"], ("5",))
    c["studies"]["ssmtl_unet"] = _study({"tfs": ("tfs", "unet"), "ssmtl_t5": ("ssmtl", "unet"),
                                         "ssmtl_t10": ("ssmtl", "unet"), "ssmtl_t15": ("ssmtl", "unet"),
                                         "ssmtl_t5_e1": ("ssmtl", "unet")}, ["mmwhs_ct"], ("scans",))
    c["studies"]["ssmtl_denoise"] = _study({r: ("tfs", "unet") for r in ("unet_tfs", "unet_ssmtl", "fcn_tfs",
                                                                         "fcn_mocov2", "fcn_ssmtl", "fcn_ssmtl_plus")},
                                           ["mmwhs_ct"], ("scans",), downstream="denoising")
    c["reports"] = copy.deepcopy(DEMO_REPORTS)
    return cfg.resolve(cfg.validate(c))


def write_metrics(root: Path, study, run, ds, ratio, seed, classes, dice, *, patients=None, synthetic=True,
                  n_params=22_070_000, psnr=None, hd95=2.0):
    """dice: per-class slice-pooled Dice (iou derived as d/(2-d)); patients: {patient: per-volume Dice}."""
    iou = {c: d / (2 - d) for c, d in zip(classes, dice)} if dice else {}
    patients = patients or {"p1": float(np.mean(dice)) if dice else None}
    pv = [{"patient": p, "case": p, "dice": {c: v for c in classes}, "iou": {c: v / (2 - v) for c in classes}
           if v is not None else {}, "hd95": {c: hd95 for c in classes}, "psnr": psnr} for p, v in patients.items()]
    m = {"study": study, "run": run, "dataset": ds, "ratio": ratio, "seed": seed, "synthetic": synthetic,
         "downstream": "denoising" if psnr is not None else "segmentation", "n_params": n_params,
         "classes": [] if psnr is not None else list(classes),
         "slice_pooled": {"dice": dict(zip(classes, dice)), "iou": iou,
                          "mean_dice": float(np.mean(dice)) if dice else None,
                          "miou": float(np.mean(list(iou.values()))) if dice else None},
         "per_volume": pv,
         "volume_mean": {"dice": {c: float(np.mean([v for v in patients.values()])) for c in classes},
                         "hd95": {c: hd95 for c in classes},
                         "mean_dice": float(np.mean(list(patients.values()))) if dice else None},
         "confusion": [], "psnr": psnr}
    p = root / study / "metrics" / run / ds / ratio / f"seed{seed}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(m))
    return p


def section(md: str, heading: str) -> str:
    """The text of the Markdown section ``## heading`` (to the next ``## ``)."""
    assert f"## {heading}\n" in md, (heading, [line for line in md.splitlines() if line.startswith("## ")])
    return md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _cells(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


# --------------------------------------------------------------------------------------------------


def test_paper_values_cover_papers_md():
    t2 = paper_table("hssl", "table2")
    assert t2.rows == ("TFS", "Rotation", "In-painting", "MoCo", "SimCLR", "HSSL")
    assert t2.value("1", "5", "HSSL").mean == 81.46
    v = t2.value("3", "100", "In-painting")
    assert v.mean == 65.59 and v.classes == {"peripheral zone (label 1)": 53.19, "transition zone (label 2)": 77.97}
    assert t2.value("5", "10", "SimCLR").classes == {"spleen": 78.25}
    assert sum(len(r) for d in t2.values.values() for r in d.values()) == 54
    t3 = paper_table("hssl", "table3")
    assert t3.value("5", "50", "UNet3+").mean == 82.74 and t3.extra["params_m"]["UNet"] == 39.40
    assert paper_table("hssl", "table4").value("5", "5", "+L_task").mean == 66.67
    assert paper_table("ssmtl", "table3").value("MRI", "scans", "SSMTL (t=15)").classes["RA"] == 0.234
    assert paper_table("ssmtl", "table5").value("MRI", "scans", "SSMTL+").mean == 0.361
    t6 = paper_table("ssmtl", "table6")
    assert t6.metric == "psnr" and t6.value("CT", "scans", "ResNet-FCN: MoCo V2").mean == 32.85


def test_paired_test_is_wilcoxon_from_six_patients():
    a = {f"p{i}": 0.5 + 0.01 * i for i in range(8)}
    b = {f"p{i}": 0.45 + 0.003 * i * i for i in range(8)}
    t = paired_test(a, b)
    assert t.test == "wilcoxon" and t.n == 8 and t.tested
    assert t.p == pytest.approx(stats.wilcoxon(list(a.values()), list(b.values())).pvalue)
    # Below six patients there is no test and no marker, whatever the differences.
    for n in (1, 2, 5):
        small = paired_test({f"p{i}": 0.9 for i in range(n)}, {f"p{i}": 0.1 for i in range(n)})
        assert small.test == "n < 6" and small.n == n and small.p is None and not small.tested
        assert significance_marker(small) == ""
    six = paired_test({f"p{i}": 0.9 + 0.01 * i for i in range(6)}, {f"p{i}": 0.1 for i in range(6)})
    assert six.tested and six.p == pytest.approx(2 / 2 ** 6)  # exact: every difference positive
    assert paired_test({"p1": 0.6}, {"p1": 0.5}).n == 1


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 (m = 3): 3 x 0.01 = 0.03, 2 x 0.02 = 0.04, 1 x 0.04 = 0.04 (monotone)
    adjusted = holm([0.04, 0.01, None, 0.02])
    assert adjusted[2] is None and adjusted[0] == pytest.approx(0.04) and adjusted[1] == pytest.approx(0.03)
    assert adjusted[3] == pytest.approx(0.04)
    assert holm([0.3, 0.2]) == pytest.approx([0.4, 0.4])  # 2 x 0.2 = 0.4, then max(0.4, 1 x 0.3)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == [] and holm([None]) == [None]


def test_marker_uses_the_holm_adjusted_p():
    a = {f"p{i}": 0.9 + 0.01 * i for i in range(6)}
    b = {f"p{i}": 0.1 for i in range(6)}
    raw = paired_test(a, b)  # p = 0.03125 < 0.05
    assert significance_marker(holm_adjust([raw])[0]) == "*"
    adjusted = holm_adjust([raw, raw, raw])  # 3 x 0.03125 > 0.05
    assert all(t.p_adj == pytest.approx(3 * raw.p) for t in adjusted)
    assert [significance_marker(t) for t in adjusted] == ["", "", ""]


def test_required_metrics(config):
    keys = required_metrics(config, "hssl_table2")
    assert len(keys) == 6 * 3 * 3 * 2  # runs x tasks x ratios x seeds
    assert ("hssl", "tfs", "msd_prostate", "100", 1) in keys
    t3 = required_metrics(config, "hssl_table3")
    assert ("hssl", "tfs", "msd_spleen", "50", 0) in t3  # the baseline is required too
    assert ("hssl", "hssl", "msd_heart", "50", 1) in t3 and ("hssl_arch", "unet3plus", "msd_heart", "5", 0) in t3
    files = required_files(config, "hssl_fig5_qualitative")
    assert str(files[0]) == "results/t/hssl/metrics/tfs/msd_spleen/10/seed0_pred.npz"
    assert required_files(config, "hssl_fig3b_tsne") == [Path("results/t/hssl/features/hssl.npz")]
    assert len(required_metrics(config, "ssmtl_fig7_epochs")) == 3 * 2
    check_reports(config)  # every configured target resolves
    bad = copy.deepcopy(config)
    bad["reports"]["hssl_table2"]["runs"]["X"] = "nope"
    with pytest.raises(cfg.ConfigError, match="no run 'nope'"):
        required_metrics(bad, "hssl_table2")


def _small_table2(config):
    config["reports"]["hssl_table2"] = {"study": "hssl", "runs": {"HSSL": "hssl", "TFS": "tfs"},
                                        "datasets": {"3": "msd_prostate", "1": "msd_heart"}, "ratios": ["5"]}
    return config


def test_hssl_table2_cells(config, tmp_path):
    _small_table2(config)
    root = tmp_path / "results" / "t"
    pats = [f"p{i}" for i in range(3)]
    for seed, (tfs, hssl) in enumerate([(0.70, 0.80), (0.72, 0.84)]):
        write_metrics(root, "hssl", "tfs", "msd_heart", "5", seed, ["left atrium"], [tfs],
                      patients={p: tfs + 0.01 * i for i, p in enumerate(pats)})
        write_metrics(root, "hssl", "hssl", "msd_heart", "5", seed, ["left atrium"], [hssl],
                      patients={p: hssl + 0.02 * i * i for i, p in enumerate(pats)})
        write_metrics(root, "hssl", "tfs", "msd_prostate", "5", seed, ["peripheral zone (label 1)", "transition zone (label 2)"],
                      [0.2, 0.5])
        write_metrics(root, "hssl", "hssl", "msd_prostate", "5", seed, ["peripheral zone (label 1)", "transition zone (label 2)"],
                      [0.3 + 0.02 * seed, 0.7])
    csv_out, md_out = tmp_path / "out" / "hssl_table2.csv", tmp_path / "out" / "hssl_table2.md"
    build("hssl_table2", config, root, csv_out, md_out)
    rows = read_csv(csv_out)
    tfs = _cells(rows, method="TFS", dataset_label="1", measure="mean_dice")[0]
    assert float(tfs["mean"]) == pytest.approx(71.0) and float(tfs["sd"]) == pytest.approx(np.std([70, 72], ddof=1))
    assert float(tfs["paper"]) == 71.56 and tfs["delta"] == ""  # synthetic data: no difference to the paper
    assert tfs["n_seeds"] == "2" and tfs["synthetic"] == "true"
    h = _cells(rows, method="HSSL", dataset_label="1", measure="mean_dice")[0]
    assert float(h["mean"]) == pytest.approx(82.0) and float(h["paper"]) == 81.46
    # per patient, averaged over seeds: TFS 71, 72, 73; HSSL 82, 84, 90 -> 3 patients: too few for a test
    assert h["test"] == "n < 6" and h["n_pairs"] == "3" and h["p_value"] == "" and h["p_holm"] == ""
    cg = _cells(rows, method="HSSL", dataset_label="3", measure="dice", **{"class": "peripheral zone (label 1)"})[0]
    assert float(cg["mean"]) == pytest.approx(31.0) and float(cg["paper"]) == 35.30
    hd = _cells(rows, method="HSSL", dataset_label="3", measure="volume_hd95")[0]
    assert float(hd["mean"]) == 2.0
    md = md_out.read_text()
    assert "synthetic data" in md
    grid, paper = section(md, "Dice (%) in the paper's layout"), section(md, "The paper's values")
    assert "| Task-1 (heart) | 5% | 71.00 ± 1.41 | 82.00 ± 2.83 |" in grid
    assert "| Task-3 (prostate) | 5% | 20.00; 50.00 (35.00 ± 0.00) | 31.00; 70.00 (50.50 ± 0.71) |" in grid
    assert "| Task-1 (heart) | 5% | 71.56 | 81.46 |" in paper and "| Task-3 (prostate) | 5% | " in paper
    assert "Reproduced − paper" not in md and "Δ" not in md  # synthetic data: no differences
    # paper order: TFS before HSSL in columns; task 1 before task 3 in rows
    header = next(line for line in md.splitlines() if line.startswith("| Task | Anno."))
    assert header.index("TFS") < header.index("HSSL")
    assert md.index("| Task-1 (heart) | 5%") < md.index("| Task-3 (prostate) | 5%")
    assert "Per-volume metrics" in md and "HD95" in md and "Wilcoxon signed-rank" in md and "Holm" in md
    assert "n < 6 (n=3)" in md and "against **TFS** (n = 1-3 test patients)" in md and "*" not in md.split("Per-volume")[0].split(
        "## ")[1]  # no significance marker in the paper-layout grid from 3 patients


def test_hd95_unit_is_the_one_the_metrics_files_state(config, tmp_path):
    """Point 8: the table says the unit the metrics JSONs give (mm from the store's spacing), never a fixed one."""
    config["reports"]["hssl_table2"] = {"study": "hssl", "runs": {"TFS": "tfs"}, "datasets": {"1": "msd_heart"},
                                        "ratios": ["5"]}
    root = tmp_path / "results" / "t"
    for seed in (0, 1):
        p = write_metrics(root, "hssl", "tfs", "msd_heart", "5", seed, ["left atrium"], [0.7], hd95=3.5)
        m = json.loads(p.read_text())
        m["hd95_units"] = "mm"
        p.write_text(json.dumps(m))
    csv_out, md_out = tmp_path / "o" / "t.csv", tmp_path / "o" / "t.md"
    build("hssl_table2", config, root, csv_out, md_out)
    md = md_out.read_text()
    assert "HD95 (mm) per volume" in md and "in mm (each test case's spacing" in md and "voxels" not in md
    hd = _cells(read_csv(csv_out), measure="volume_hd95")[0]
    assert hd["unit"] == "mm" and float(hd["mean"]) == pytest.approx(3.5)


def test_missing_input_names_file(config, tmp_path):
    _small_table2(config)
    root = tmp_path / "results" / "t"
    for seed in (0, 1):
        for run in ("tfs", "hssl"):
            write_metrics(root, "hssl", run, "msd_heart", "5", seed, ["left atrium"], [0.7])
            if not (run == "hssl" and seed == 1):
                write_metrics(root, "hssl", run, "msd_prostate", "5", seed, ["peripheral zone (label 1)", "transition zone (label 2)"],
                              [0.2, 0.5])
    out = tmp_path / "out"
    with pytest.raises(MissingInputError, match=r"hssl/metrics/hssl/msd_prostate/5/seed1\.json"):
        build("hssl_table2", config, root, out / "a.csv", out / "a.md")
    assert not (out / "a.md").exists()
    # explicit option: the cell uses the seeds found and the file is listed; a wholly missing cell shows "—"
    (root / "hssl" / "metrics" / "hssl" / "msd_prostate" / "5" / "seed0.json").unlink()
    build("hssl_table2", config, root, out / "a.csv", out / "a.md", allow_missing=True)
    md = (out / "a.md").read_text()
    assert "Missing inputs" in md and "msd_prostate/5/seed1.json" in md
    row = _cells(read_csv(out / "a.csv"), method="HSSL", dataset_label="3", measure="mean_dice")[0]
    assert row["mean"] == "" and row["n_seeds"] == "0"
    line = next(x for x in md.splitlines() if x.startswith("| Task-3 (prostate) | 5%"))
    assert "—" in line


def test_list_of_files_and_not_synthetic(config, tmp_path):
    _small_table2(config)
    config["reports"]["hssl_table2"]["datasets"] = {"1": "msd_heart"}
    config["reports"]["hssl_table2"]["seeds"] = [0]
    root = tmp_path / "results" / "t"
    files = [write_metrics(root, "hssl", r, "msd_heart", "5", 0, ["left atrium"], [0.8], synthetic=False)
             for r in ("tfs", "hssl")]
    build("hssl_table2", config, [str(f) for f in files], tmp_path / "b.csv", tmp_path / "b.md")
    md = (tmp_path / "b.md").read_text()
    assert "synthetic" not in md.lower()
    assert "| Task-1 (heart) | 5% | 80.00 | 80.00 |" in section(md, "Dice (%) in the paper's layout")  # no sd
    assert "| Task-1 (heart) | 5% | 71.56 | 81.46 |" in section(md, "The paper's values")
    assert "| Task-1 (heart) | 5% | +8.44 | -1.46 |" in section(md, "Reproduced − paper")
    with pytest.raises(MissingInputError, match="seed0.json"):
        build("hssl_table2", config, [str(files[0])], tmp_path / "c.csv", tmp_path / "c.md")


def test_hssl_table3_and_table4(config, tmp_path):
    root = tmp_path / "results" / "t"
    config["reports"]["hssl_table3"]["seeds"] = [0]
    for ds, cl in (("msd_heart", ["left atrium"]), ("msd_prostate", ["peripheral zone (label 1)", "transition zone (label 2)"]),
                   ("msd_spleen", ["spleen"])):
        for ratio in ("5", "10", "50"):
            for st, run, n in (("hssl_arch", "unet", 39_400_000), ("hssl_arch", "unet3plus", 26_970_000),
                               ("hssl", "hssl", 22_070_000), ("hssl", "tfs", 22_070_000)):
                write_metrics(root, st, run, ds, ratio, 0, cl, [0.6] * len(cl), n_params=n)
    build("hssl_table3", config, root, tmp_path / "t3.csv", tmp_path / "t3.md")
    rows = read_csv(tmp_path / "t3.csv")
    p = _cells(rows, method="UNet3+", dataset_label="5", ratio="50", measure="params_m")[0]
    assert float(p["mean"]) == pytest.approx(26.97) and float(p["paper"]) == pytest.approx(26.97)
    m = _cells(rows, method="UNet", dataset_label="3", ratio="10", measure="mean_dice")[0]
    assert float(m["mean"]) == pytest.approx(60.0) and float(m["paper"]) == 49.44
    md = (tmp_path / "t3.md").read_text()
    assert "Param. (M)" in md and "p vs TFS (hssl/tfs)" in md and md.index("| UNet |") < md.index("| HSSL |")

    config["reports"]["hssl_table4"]["seeds"] = [0]
    for ds in ("msd_heart", "msd_spleen"):
        cl = ["left atrium"] if ds == "msd_heart" else ["spleen"]
        for st, run in (("hssl_ablation", "rec"), ("hssl", "simclr"), ("hssl_ablation", "img_rec"),
                        ("hssl_ablation", "img_rec_task"), ("hssl", "hssl"), ("hssl", "tfs")):
            write_metrics(root, st, run, ds, "5", 0, cl, [0.5])
    build("hssl_table4", config, root, tmp_path / "t4.csv", tmp_path / "t4.md")
    md = (tmp_path / "t4.md").read_text()
    assert "L_rec + L_img + L_task + L_group" in md
    assert "50.00" in section(md, "Dice (%) in the paper's layout") and "67.35" in section(md, "The paper's values")


def test_ssmtl_tables(config, tmp_path):
    root = tmp_path / "results" / "t"
    classes = ["LV", "RV", "LA", "RA"]
    for seed in (0, 1):
        for run in ("tfs", "ssmtl_t5", "ssmtl_t10", "ssmtl_t15"):
            d = [0.6, 0.5, 0.6, 0.5] if seed == 0 else [0.62, 0.5, 0.6, 0.5]
            write_metrics(root, "ssmtl_unet", run, "mmwhs_ct", "scans", seed, classes, d)
        for run in ("unet_tfs", "unet_ssmtl", "fcn_tfs", "fcn_mocov2", "fcn_ssmtl", "fcn_ssmtl_plus"):
            write_metrics(root, "ssmtl_denoise", run, "mmwhs_ct", "scans", seed, [], [],
                          psnr=36.0 + seed, patients={"p1": None})
    build("ssmtl_table2", config, root, tmp_path / "s2.csv", tmp_path / "s2.md")
    rows = read_csv(tmp_path / "s2.csv")
    lv = _cells(rows, method="SSMTL (t=5)", measure="iou", **{"class": "LV"})[0]
    want = np.mean([0.6 / 1.4, 0.62 / 1.38])
    assert float(lv["mean"]) == pytest.approx(want, rel=1e-5) and float(lv["paper"]) == 0.656
    assert lv["delta"] == ""
    md = (tmp_path / "s2.md").read_text()
    assert "mIoU" in md and "synthetic data" in md and f"{want:.3f} ± " in md
    build("ssmtl_table6", config, root, tmp_path / "s6.csv", tmp_path / "s6.md")
    r = _cells(read_csv(tmp_path / "s6.csv"), method="ResNet-FCN: SSMTL+", measure="psnr")[0]
    assert float(r["mean"]) == pytest.approx(36.5) and float(r["paper"]) == 34.66
    s6 = (tmp_path / "s6.md").read_text()
    assert "36.50 ± 0.71" in section(s6, "PSNR (dB) in the paper's layout") and "34.66" in section(s6, "The paper's values")
    assert "HD95" not in s6  # no HD95 column, no HD95 note


# --------------------------------------------------------------------------------------------------
# Figures


def _png_shape(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.size > 0 and float(img[..., :3].std()) > 0  # not blank
    return img.shape[:2]  # (height, width)


def test_fig4_domains(config, tmp_path):
    config["reports"]["hssl_fig4_domains"]["datasets"] = {"1": "msd_heart", "5": "msd_spleen"}
    root = tmp_path / "results" / "t"
    for key in required_metrics(config, "hssl_fig4_domains"):
        cl = ["left atrium"] if key[2] == "msd_heart" else ["spleen"]
        write_metrics(root, *key, cl, [0.5 + 0.05 * key[4] + 0.1 * ["tfs", "simclr_single", "simclr", "hssl"]
                                       .index(key[1])])
    out = build("hssl_fig4_domains", config, root, tmp_path / "hssl_fig4_domains.png")
    assert _png_shape(out) == (int(round((4.2 * 1 + 1.0) * 100)), int(round((5.2 * 2 + 0.4) * 100)))  # 1 row of 2


@pytest.fixture
def drawn(monkeypatch):
    """The figures the builders draw, kept open for inspection instead of being saved."""
    from medssl.reports import figures

    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.append(fig) or Path(path))
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def _fig4_metrics(config, root, seeds):
    config["reports"]["hssl_fig4_domains"]["datasets"] = {"1": "msd_heart", "5": "msd_spleen"}
    config["studies"]["hssl"]["seeds"] = list(seeds)
    for key in required_metrics(config, "hssl_fig4_domains"):
        cl = ["left atrium"] if key[2] == "msd_heart" else ["spleen"]
        write_metrics(root, *key, cl, [0.02 + 0.01 * key[4]])  # tiny Dice: the bars must still show


def test_fig4_range_shows_small_bars_and_marks_every_paper_series(config, tmp_path, drawn):
    root = tmp_path / "results" / "t"
    _fig4_metrics(config, root, seeds=(0, 1))
    build("hssl_fig4_domains", config, root, tmp_path / "f.png")
    fig = drawn[0]
    spleen = fig.axes[1]
    heights = [b.get_height() for b in spleen.patches]
    assert max(heights) < 5 and spleen.get_ylim()[0] == 0
    # paper markers: Table 2's TFS, SimCLR (multi-domain CL) and HSSL, and the text's single-domain CL value
    marks = {round(float(y), 2) for c in spleen.collections for y in np.ma.filled(c.get_offsets()[:, 1], np.nan)
             if np.isfinite(y)}
    assert {48.75, 67.44, 85.88, 78.25, 74.51, 80.95} <= marks
    assert spleen.get_ylim()[1] >= 88.45  # the highest paper marker fits
    assert "2 seeds, error bars: sd" in fig._suptitle.get_text()


def test_figures_with_one_seed_say_no_error_bars(config, tmp_path, drawn):
    root = tmp_path / "results" / "t"
    _fig4_metrics(config, root, seeds=(0,))
    build("hssl_fig4_domains", config, root, tmp_path / "f.png")
    title = drawn[0]._suptitle.get_text()
    assert "error bars" not in title.replace("no error bars", "") and "1 seed" in title
    config["studies"]["ssmtl_unet"]["seeds"] = [0]
    for key in required_metrics(config, "ssmtl_fig7_epochs"):
        write_metrics(root, *key, ["LV", "RV", "LA", "RA"], [0.41 + 0.01 * len(key[1])] * 4)
    build("ssmtl_fig7_epochs", config, root, tmp_path / "g.png")
    ax = drawn[1].axes[0]
    assert "no error bars" in ax.get_title() and ax.get_ylim()[0] == 0  # from 0: no noise drawn as a trend


def test_tsne_groups_are_named_and_drawn_unlike_tasks(config, tmp_path, drawn):
    from medssl.reports import figures
    from medssl.reports.features import save_features

    rng = np.random.default_rng(0)
    task = np.repeat(np.arange(3), 20)
    group = np.array([0, 1, 1])[task]
    path = tmp_path / "features.npz"
    save_features(path, {"F_task": rng.random((60, 4)) + task[:, None]}, task, group,
                  task_labels=["T1 heart MRI", "T2 liver CT", "T5 spleen CT"],
                  group_labels=["G1 heart MRI", "G2 liver, spleen CT"])
    build("hssl_fig3b_tsne", config, path, tmp_path / "t.png")
    by_task, by_group = drawn[0].axes[0], drawn[0].axes[1]
    task_colours = {tuple(c.get_facecolor()[0][:3]) for c in by_task.collections}
    group_colours = {tuple(c.get_facecolor()[0][:3]) for c in by_group.collections}
    assert len(group_colours) == 2 and not task_colours & group_colours
    assert set(figures.GROUP_COLOURS).isdisjoint(figures.TASK_COLOURS)
    assert [t.get_text() for t in by_group.get_legend().get_texts()] == ["G1 heart MRI", "G2 liver, spleen CT"]


def _write_preds(root, key, classes, label, shift, rng):
    p = write_metrics(root, *key, classes, [0.7] * len(classes))
    pred = np.roll(label, shift, axis=2)
    np.savez(p.with_name(f"seed{key[4]}_pred.npz"), image=rng.random(label.shape).astype(np.float32), label=label,
             pred=pred, rows=np.array([3, 7, 9, 12])[:len(label)])


def _disc_labels(n=4, classes=1):
    yy, xx = np.mgrid[:32, :32]
    out = np.zeros((n, 32, 32), np.int64)
    for k in range(n):
        for c in range(1, classes + 1):
            out[k][(yy - 16) ** 2 + (xx - 8 - 6 * c - k) ** 2 < 12] = c
    return out


def test_fig5_single_panel_form(config, tmp_path):
    config["reports"]["hssl_fig5_qualitative"]["runs"] = {"TFS": "tfs", "HSSL": "hssl"}
    config["reports"]["hssl_fig5_qualitative"]["max_rows"] = 3
    root = tmp_path / "results" / "t"
    rng = np.random.default_rng(0)
    for run in ("tfs", "hssl"):
        _write_preds(root, ("hssl", run, "msd_spleen", "10", 0), ["spleen"], _disc_labels(), 1 if run == "tfs" else 0,
                     rng)
    out = build("hssl_fig5_qualitative", config, root, tmp_path / "hssl_fig5_qualitative.png")
    assert _png_shape(out) == (int(round((1.7 * 3 + 0.8 + 0.7) * 100)), int(round(1.7 * 4 * 100)))
    config["reports"]["hssl_fig5_qualitative"]["runs"]["MoCo"] = "moco"
    with pytest.raises(MissingInputError, match="moco/msd_spleen/10/seed0_pred.npz"):
        build("hssl_fig5_qualitative", config, root, tmp_path / "x.png")


FIG5_PANELS = {
    "(a) top: methods, Task-5, 10%": {"runs": {"HSSL": "hssl", "TFS": "tfs", "SimCLR": "simclr"},
                                      "datasets": {"5": "msd_spleen"}, "ratios": ["10"]},
    "(a) bottom: HSSL, Task-5": {"runs": {"HSSL": "hssl"}, "datasets": {"5": "msd_spleen"},
                                 "ratios": ["5", "10", "100"]},
    "(b) HSSL, 10%": {"runs": {"HSSL": "hssl"}, "datasets": {"1": "msd_heart", "3": "msd_prostate"},
                      "ratios": ["10"], "max_rows": 1},
    "(c) models, Task-1": {"runs": {"HSSL": "hssl/hssl", "UNet": "hssl_arch/unet", "UNet3+": "hssl_arch/unet3plus"},
                           "datasets": {"1": "msd_heart"}, "ratios": ["5", "10"]},
}


def test_fig5_all_panels(config, tmp_path):
    """Paper A's Fig. 5 whole: (a) top and bottom, (b), (c); columns in the paper's order, contours drawn."""
    from medssl.reports.targets import qualitative_spec

    config["reports"]["hssl_fig5_qualitative"] = {"study": "hssl", "seed": 0, "max_rows": 2,
                                                  "panels": copy.deepcopy(FIG5_PANELS)}
    config = cfg.validate(config)
    spec = qualitative_spec(config)
    assert [p.title for p in spec.panels] == list(FIG5_PANELS)
    assert [c[0] for c in spec.panels[0].columns()] == ["TFS", "SimCLR", "HSSL"]  # Table 2's order
    assert [c[0] for c in spec.panels[1].columns()] == ["HSSL, 5%", "HSSL, 10%", "HSSL, 100%"]
    assert [c[0] for c in spec.panels[3].columns()] == ["UNet, 5%", "UNet, 10%", "UNet3+, 5%", "UNet3+, 10%",
                                                        "HSSL, 5%", "HSSL, 10%"]  # Table 3's order
    files = [str(f) for f in required_files(config, "hssl_fig5_qualitative")]
    assert len(files) == len(set(files)) == 3 + 2 + 2 + 5  # (a)-top HSSL 10% is shared with (a)-bottom
    assert "results/t/hssl_arch/metrics/unet3plus/msd_heart/10/seed0_pred.npz" in files
    assert "results/t/hssl/metrics/hssl/msd_prostate/10/seed0_pred.npz" in files

    root = tmp_path / "results" / "t"
    rng = np.random.default_rng(0)
    for study, run, ds, ratio, seed in spec.keys():
        classes = {"msd_prostate": ["peripheral zone (label 1)", "transition zone (label 2)"]}.get(ds, ["x"])
        _write_preds(root, (study, run, ds, ratio, seed), classes, _disc_labels(2, len(classes)), 1, rng)
    out = build("hssl_fig5_qualitative", config, root, tmp_path / "fig5.png")
    height = (1.7 * 2 + 0.8) * 3 + (1.7 * 2 + 0.8) + 0.7  # (a)-top, (a)-bottom, (c): 2 rows; (b): 2 datasets x 1
    assert _png_shape(out) == (int(round(height * 100)), int(round(1.7 * (2 + 6) * 100)))
    (root / "hssl_arch" / "metrics" / "unet" / "msd_heart" / "5" / "seed0_pred.npz").unlink()
    with pytest.raises(MissingInputError, match="unet/msd_heart/5/seed0_pred.npz"):
        build("hssl_fig5_qualitative", config, root, tmp_path / "x.png")
    config["reports"]["hssl_fig5_qualitative"]["allow_missing"] = True
    assert build("hssl_fig5_qualitative", config, root, tmp_path / "y.png").is_file()  # a 'missing' cell


def test_fig5_draws_contours_not_fills():
    import matplotlib.pyplot as plt

    from medssl.reports.figures import _contours, class_colour

    fig, ax = plt.subplots()
    mask = np.zeros((16, 16), int)
    mask[4:10, 4:10] = 1
    mask[11:14, 2:5] = 2
    _contours(ax, np.zeros((16, 16)), mask, 2)
    assert len(ax.images) == 1  # the image only: no filled mask layer
    sets = ax.collections
    assert len(sets) == 2 and [tuple(s.get_edgecolor()[0][:3]) for s in sets] == [class_colour(1), class_colour(2)]
    plt.close(fig)


def test_fig7_epochs(config, tmp_path):
    root = tmp_path / "results" / "t"
    for key in required_metrics(config, "ssmtl_fig7_epochs"):
        write_metrics(root, *key, ["LV", "RV", "LA", "RA"], [0.4 + 0.05 * key[4]] * 4)
    out = build("ssmtl_fig7_epochs", config, root, tmp_path / "ssmtl_fig7_epochs.png")
    assert _png_shape(out) == (480, 750)
    (root / "ssmtl_unet" / "metrics" / "ssmtl_t5_e1" / "mmwhs_ct" / "scans" / "seed1.json").unlink()
    with pytest.raises(MissingInputError, match="ssmtl_t5_e1/mmwhs_ct/scans/seed1.json"):
        build("ssmtl_fig7_epochs", config, root, tmp_path / "y.png")


def test_fig3b_tsne_and_features(config, tmp_path):
    from medssl.reports.features import compute_features, load_features, pixel_features, save_features

    rng = np.random.default_rng(0)
    n, task = 48, np.repeat(np.arange(4), 12)
    group = np.array([0, 1, 1, 2])[task]
    images = rng.random((n, 32, 32)).astype(np.float32) + task[:, None, None] * 0.5
    ex = {"raw pixels": pixel_features, "F_image": lambda b: b.reshape(len(b), -1)[:, :8],
          "F_task": lambda b: b.mean(axis=(1, 2, 3))[:, None] + rng.random((len(b), 3)),
          "F_group": lambda b: np.stack([b.mean(axis=(1, 2, 3))] * 2, 1)}
    feats = compute_features(images, ex, batch_size=20)
    assert feats["raw pixels"].shape == (n, 256) and feats["F_image"].shape == (n, 8)
    path = tmp_path / "features.npz"
    save_features(path, feats, task, group, task_labels=[f"Task-{t}" for t in (1, 3, 5, 8)],
                  group_labels=["G1", "G2", "G3"], synthetic=True)
    f2, t2, g2, meta = load_features(path)
    assert list(f2) == list(ex) and meta["synthetic"] is True and (t2 == task).all()
    out = build("hssl_fig3b_tsne", config, path, tmp_path / "hssl_fig3b_tsne.png")
    assert _png_shape(out) == (740, int(round((3.6 * 4 + 1.8) * 100)))
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        build("hssl_fig3b_tsne", config, tmp_path / "nothere.npz", tmp_path / "z.png")


def test_cli(config, tmp_path):
    from medssl.reports.__main__ import main

    import yaml

    _small_table2(config)
    config["reports"]["hssl_table2"]["datasets"] = {"1": "msd_heart"}
    root = tmp_path / "results" / "t"
    for seed in (0, 1):
        for run in ("tfs", "hssl"):
            write_metrics(root, "hssl", run, "msd_heart", "5", seed, ["left atrium"], [0.7])
    cpath = tmp_path / "c.yaml"
    cpath.write_text(yaml.safe_dump(config))
    assert main(["--config", str(cpath), "--target", "hssl_table2"]) == 0
    assert (root / "tables" / "hssl_table2.md").is_file() and (root / "tables" / "hssl_table2.csv").is_file()


def test_fig3b_generic_panel_is_vgg19_from_its_checked_file_or_pixels_when_asked(tmp_path, monkeypatch):
    """Issue 22: Figure 3b's first panel is VGG-19 from torchvision's weight file, which the workflow fetches and
    checks by its SHA-256 (not whatever a torch cache happens to hold); `generic: pixels` (the demo) draws pixels
    and its name says so."""
    import hashlib

    import torch

    from medssl.data.weights import VGG19, Weights
    from medssl.reports import features as F

    name, fn = F.generic_extractor("pixels")
    assert name == F.PIXELS_NAME and fn is F.pixel_features and "VGG-19" in name
    with pytest.raises(ValueError, match="needs the VGG-19 weight file"):
        F.generic_extractor("vgg19")
    wrong = tmp_path / "vgg19-dcbb9e9d.pth"
    wrong.write_bytes(b"not the published file")
    with pytest.raises(ValueError, match=r"vgg19-dcbb9e9d.pth: SHA-256 .* is not torchvision's"):
        F.generic_extractor("vgg19", wrong)

    class TinyVGG(torch.nn.Module):  # stands in for torchvision's VGG-19 (same .features contract)
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.MaxPool2d(4))

    good = tmp_path / "good.pth"
    good.write_bytes(b"published bytes")
    digest = hashlib.sha256(b"published bytes").hexdigest()[:8]
    monkeypatch.setattr("medssl.data.weights.VGG19", Weights("vgg19", "good.pth", VGG19.url, digest, "1 kB"))
    monkeypatch.setattr(F, "load_vgg19", lambda path: TinyVGG())
    name, fn = F.generic_extractor("vgg19", good)
    assert name == F.VGG_NAME
    out = fn(np.random.default_rng(0).random((3, 1, 20, 20)).astype(np.float32))
    assert out.shape == (3, 5) and np.isfinite(out).all()


def test_vgg19_weights_are_fetched_and_checked_or_placed_by_hand(tmp_path):
    """The weights job downloads the file once (here from a loopback server), checks its SHA-256 by
    torchvision's 8 leading digits, keeps a file already in place, and offline says where to put it."""
    import hashlib
    import http.server
    import threading

    from medssl.data.weights import Weights, fetch_weights

    body = b"weights" * 1000
    digest = hashlib.sha256(body).hexdigest()[:8]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/w.pth"
        w = Weights("w", "w.pth", url, digest, "7 kB")
        dest = tmp_path / "weights" / "w.pth"
        assert fetch_weights(w, dest, retries=0).read_bytes() == body
        mtime = dest.stat().st_mtime_ns
        assert fetch_weights(w, dest, retries=0) == dest and dest.stat().st_mtime_ns == mtime  # in place: kept
        with pytest.raises(Exception, match=r"sha256 mismatch"):
            fetch_weights(Weights("w", "w.pth", url, "00000000", "7 kB"), tmp_path / "x.pth", retries=0)
    finally:
        server.shutdown()
    offline = Weights("w", "w.pth", "http://127.0.0.1:9/w.pth", digest, "7 kB")
    with pytest.raises(Exception, match=r"Offline\? Download http://127.0.0.1:9/w.pth .* put the file at "):
        fetch_weights(offline, tmp_path / "y.pth", retries=0)


def test_closing_summary_names_outputs_and_shows_the_first_grid(tmp_path):
    from medssl.reports.headline import closing_summary

    md = tmp_path / "t2.md"
    md.write_text("# Table 2\n\nintro\n\n## Dice in the paper's layout\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## More\n\nx\n")
    text = closing_summary([md, tmp_path / "fig.png"])
    assert text.splitlines()[0] == "medssl: 1 of 2 tables and figures are in place:"
    assert f"(not made by this run) {tmp_path / 'fig.png'}" in text
    grid = text.split("Headline", 1)[1]
    assert "# Table 2" in grid and "| 1 | 2 |" in grid and "More" not in grid and "intro" not in grid


def test_generic_summary_of_a_study_no_report_names(config, tmp_path):
    """A study outside every paper report gets a summary: runs x datasets x ratios, mean ± sd over seeds,
    Wilcoxon (Holm) against its TFS run, with known numbers in and known cells out."""
    from medssl.reports.summary import build_summary, summary_inputs, summary_studies

    config["studies"]["extra"] = _study({"tfs": ("tfs", "hssl_net"), "hssl": ("hssl", "hssl_net")},
                                        ["msd_heart"], ("5",))
    config = cfg.resolve(cfg.validate(config))
    assert "extra" in summary_studies(config) and "hssl" not in summary_studies(config)
    root = tmp_path / "results" / "t"
    pats = [f"p{i}" for i in range(7)]
    for seed in config["studies"]["extra"].get("seeds", [0]):
        write_metrics(root, "extra", "tfs", "msd_heart", "5", seed, ["left atrium"], [0.50 + 0.02 * seed],
                      patients={p: 0.5 + 0.01 * i for i, p in enumerate(pats)})
        write_metrics(root, "extra", "hssl", "msd_heart", "5", seed, ["left atrium"], [0.70 + 0.02 * seed],
                      patients={p: 0.7 + 0.01 * i for i, p in enumerate(pats)})
    assert all(p.exists() for p in summary_inputs(config, "extra"))
    out = tmp_path / "out"
    cells = build_summary(config, "extra", root, out / "s.csv", out / "s.md", out / "s.html", out / "s.png")
    hssl, tfs = cells[("hssl", "msd_heart", "5")], cells[("tfs", "msd_heart", "5")]
    seeds = config["studies"]["extra"].get("seeds", [0])
    assert hssl.score.mean == pytest.approx(70 + 2 * np.mean(seeds)) and tfs.is_baseline
    assert hssl.test.tested and hssl.test.n == 7 and hssl.test.p == pytest.approx(2 / 2 ** 7)
    md = (out / "s.md").read_text()
    assert "synthetic data" in md and "| Run | Dice (%), 5% | mIoU (%), 5% | p, 5% |" in md and "ref." in md
    assert "<table>" in (out / "s.html").read_text() and (out / "s.png").stat().st_size > 1000
    rows = read_csv(out / "s.csv")
    assert {r["run"] for r in rows} == {"tfs", "hssl"} and next(r for r in rows if r["run"] == "hssl")["n_pairs"] == "7"


def test_cells_of_models_that_segment_nothing_are_marked(config, tmp_path):
    """Issue 25: a cell whose model predicts no pixel of a class on the test slices carries a mark, and the
    footnote names it; the run's closing summary lists it."""
    from medssl.reports.headline import blind_models
    from medssl.reports.tables import build_table
    from medssl.reports.targets import table_spec

    root = tmp_path / "results" / "t"
    spec = table_spec(config, "hssl_table4")
    files = []
    for row in spec.rows + [spec.baseline]:
        for _, ds in spec.datasets:
            for _, ratio in spec.ratios:
                for seed in spec.seeds_of(row):
                    files.append(write_metrics(root, row.study, row.run, ds, ratio, seed, ["c"], [0.6]))
    blind = files[0]
    m = json.loads(blind.read_text())
    m["never_predicted"] = ["c"]
    blind.write_text(json.dumps(m))
    out = tmp_path / "out"
    build_table("hssl_table4", config, root, out / "t.csv", out / "t.md")
    md = (out / "t.md").read_text()
    assert md.count("†") >= 2 and "† A model of this cell predicts no pixel of a class" in md
    assert f"{spec.rows[0].label} on " in md.split("† A model", 1)[1].split("\n")[0]
    lines = blind_models(files)
    assert len(lines) == 1 and "no c" in lines[0] and str(blind) in lines[0]



def test_paper_a_tables_show_the_every_slice_dice_beside(config, tmp_path):
    """Issue 22: paper A's cells score the test patients' slices with a labelled structure; the table says so
    and shows the Dice over every test slice beside (the metrics JSON's all_slices)."""
    config["reports"]["hssl_table2"] = {"study": "hssl", "runs": {"TFS": "tfs"}, "datasets": {"1": "msd_heart"},
                                        "ratios": ["5"]}
    root = tmp_path / "results" / "t"
    for seed in (0, 1):
        p = write_metrics(root, "hssl", "tfs", "msd_heart", "5", seed, ["left atrium"], [0.8])
        m = json.loads(p.read_text())
        m["slice_filter"] = "foreground"
        m["all_slices"] = {"n_slices": 40, "slice_pooled": {"mean_dice": 0.6, "miou": 0.45}}
        p.write_text(json.dumps(m))
    build("hssl_table2", config, root, tmp_path / "o.csv", tmp_path / "o.md")
    md = (tmp_path / "o.md").read_text()
    assert "over the test patients' slices with a labelled structure" in md
    assert "| Task-1 (heart) | 5% | 60.00 ± 0.00 (80.00 ± 0.00) |" in section(md, "Dice (%) over every test slice")


# --------------------------------------------------------------------------- paper A's Table 1 (the datasets)
def _table1_inputs(tmp_path, *, synthetic: bool):
    """Two stores (heart: 3 patients; liver: 2, sampled to 3 slices) and their split files."""
    from medssl.data.store import write_store

    def store(name, task, group, roi, classes, paper, cases, sample):
        with write_store(tmp_path / "data" / name, n_slices=sum(len(c) for c in cases.values()), image_size=2,
                         n_classes=len(classes) + 1) as w:
            for patient, labels in cases.items():
                slab = (np.zeros((len(labels), 2, 2), np.float16),
                        np.array([np.full((2, 2), v, np.uint8) for v in labels]))
                w.write_case(patient, patient, [slab])
            w.finish({"dataset": name, "modality": "MRI" if name == "msd_heart" else "CT", "roi": roi,
                      "classes": classes, "task": task, "group": group, "paper_slices": paper,
                      "reference": f"{name} paper", "synthetic": synthetic}, sample_slices=sample)
        return tmp_path / "data" / name

    def split(name, train, val, test):
        path = tmp_path / "splits" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"dataset": name, "patients": {"train": train, "val": val, "test": test}}))
        return path

    return [store("msd_liver", 2, 2, "liver", ["liver", "tumour"], 4342, {"l1": [0, 1, 2, 1], "l2": [1, 1]}, 3),
            split("msd_liver", ["l1"], [], ["l2"]),
            store("msd_heart", 1, 1, "heart", ["left atrium"], 1262, {"h1": [0, 1], "h2": [1, 1], "h3": [0, 0]},
                  None),
            split("msd_heart", ["h1"], ["h2"], ["h3"])]


TABLE1_CONFIG = {"experiment": "t", "resources": "resources", "datasets": {"msd_heart": {}, "msd_liver": {}},
                 "reports": {"hssl_table1": {"datasets": {"2": "msd_liver", "1": "msd_heart"}}}}


def test_hssl_table1_counts_the_stores_and_the_sample(tmp_path):
    inputs = _table1_inputs(tmp_path, synthetic=False)
    out = [tmp_path / f"t1.{e}" for e in ("csv", "md", "html")]
    rows = build("hssl_table1", TABLE1_CONFIG, inputs, *out)
    assert [r["task"] for r in rows] == ["1", "2"]  # Table 1's order
    heart, liver = rows
    assert (heart["roi_type"], heart["classes"], heart["group"]) == ("Heart-MRI", "1: left atrium", 1)
    assert (heart["slices"], heart["foreground_slices"], heart["sampled_slices"]) == (6, 3, 3)
    assert [heart[f"patients_{s}"] for s in ("train", "val", "test")] == [1, 1, 1]
    assert [heart[f"sampled_{s}"] for s in ("train", "val", "test")] == [1, 2, 0]
    assert (liver["classes"], liver["table1_slices"]) == ("1: liver, 2: tumour", 4342)
    assert (liver["foreground_slices"], liver["sampled_slices"]) == (5, 3)  # sample_slices 3 of 5
    assert liver["sampled_train"] + liver["sampled_test"] == 3 and liver["sampled_train"] == 2  # 3:2 of 5
    with open(out[0]) as f:
        assert [r["dataset"] for r in csv.DictReader(f)] == ["msd_heart", "msd_liver"]
    md = out[1].read_text()
    assert "synthetic" not in md.lower()
    assert "| **All** |  |  |  | 5604 | 12 | 8 | 6 | 2/1/2 | 3/2/1 |" in md
    assert "<table>" in out[2].read_text()


def test_hssl_table1_on_phantoms_says_synthetic_and_names_a_missing_input(tmp_path):
    inputs = _table1_inputs(tmp_path, synthetic=True)
    out = [tmp_path / f"t1.{e}" for e in ("csv", "md")]
    build("hssl_table1", TABLE1_CONFIG, inputs, *out)
    assert out[1].read_text().startswith("# HSSL Table 1: the aggregated multi-domain dataset — synthetic data")
    with pytest.raises(FileNotFoundError, match="split file of dataset 'msd_heart'"):
        build("hssl_table1", TABLE1_CONFIG, inputs[:3], *out)
    assert required_files({**TABLE1_CONFIG}, "hssl_table1") == [
        Path("results/t/data/msd_heart"), Path("results/t/splits/msd_heart.json"),
        Path("results/t/data/msd_liver"), Path("results/t/splits/msd_liver.json")]
