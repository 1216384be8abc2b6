"""The Snakemake workflow end to end: lint, the paper config's DAG without data, a tiny real run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tiny_config, tiny_ssmtl_config

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, cwd=REPO, timeout=900):
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def run_workflow(workdir, configfile, *args):
    """snakemake ARGS on this repository's Snakefile, in ``workdir``, with ``configfile``."""
    return snakemake(*args, "-d", str(workdir), "--snakefile", str(REPO / "Snakefile"), "--configfile",
                     str(configfile))


def write_config(tmp_path, name: str, config: dict):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_lint_is_clean(tmp_path):
    code, out = run_workflow(tmp_path, REPO / "config" / "config.yaml", "--lint")
    assert code == 0, out
    assert "Lints for" not in out, out


def test_paper_dag_builds_without_data(tmp_path):
    code, out = run_workflow(tmp_path, REPO / "config" / "paper.yaml", "-n")
    assert code == 0, out
    for rule in ("fetch_dataset", "slice_dataset", "split_dataset", "pretrain", "finetune", "evaluate"):
        assert rule in out
    assert "synthesize_dataset" not in out


def test_invalid_config_fails_naming_the_key(tmp_path):
    config = tiny_config()
    config["data"]["image_sise"] = 32
    code, out = run_workflow(tmp_path, write_config(tmp_path, "bad", config), "-n")
    assert code != 0 and "image_sise" in out


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    """Phantoms -> slices -> splits -> pretrain (hssl) -> finetune (tfs, hssl) -> evaluate, for real."""
    path = write_config(tmp_path, "tiny", tiny_config())
    code, out = run_workflow(tmp_path, path, "all", "--cores", "2")
    assert code == 0, out
    res = tmp_path / "results" / "tiny"
    for dataset in ("msd_heart", "msd_spleen"):
        split = json.loads((res / "splits" / f"{dataset}.json").read_text())
        train, val, test = (set(split["patients"][k]) for k in ("train", "val", "test"))
        assert train and test and not (train & val) and not (train & test) and not (val & test)
    for run in ("tfs", "simclr", "hssl"):
        metrics = json.loads((res / "hssl" / "metrics" / run / "msd_heart" / "100" / "seed0.json").read_text())
        assert metrics["synthetic"] is True and metrics["run"] == run
        assert set(metrics["slice_pooled"]["dice"]) == {"left atrium"}
    assert (res / "hssl" / "pretrain" / "hssl" / "all" / "model.pt").exists()
    assert not (res / "hssl" / "pretrain" / "tfs").exists()
    table = (res / "tables" / "hssl_table2.md").read_text()
    assert "synthetic" in table.lower() and all(name in table for name in ("TFS", "SimCLR", "HSSL"))
    # The HTML report holds the table with its caption, which says the data are synthetic.
    code, out = run_workflow(tmp_path, path, "--report", str(tmp_path / "report.html"))
    assert code == 0, out
    html = (tmp_path / "report.html").read_text()
    assert "hssl_table2.md" in html and "synthetic phantom twins" in html and "{% if" not in html
    # Nothing left to do: a second run is a no-op.
    code, out = run_workflow(tmp_path, path, "all", "-n", "--cores", "2")
    assert code == 0 and "Nothing to be done" in out, out


@pytest.mark.slow
def test_tiny_ssmtl_end_to_end(tmp_path):
    """Paper B on the MM-WHS CT twin: SSMTL (U-Net) and SSMTL+ (ResNet50-FCN) pretrain, finetune on the
    scans x slices budget, evaluate (IoU), and Tables 2 and 4 are built."""
    path = write_config(tmp_path, "tiny_ssmtl", tiny_ssmtl_config())
    code, out = run_workflow(tmp_path, path, "all", "--cores", "2")
    assert code == 0, out
    res = tmp_path / "results" / "tiny_ssmtl"
    split = json.loads((res / "splits" / "mmwhs_ct.json").read_text())
    assert len({case for case, _ in split["label_subsets"]["scans"]}) == 2
    for run in ("unet_ssmtl", "fcn_ssmtl_plus"):
        metrics = json.loads((res / "ssmtl_ct" / "metrics" / run / "mmwhs_ct" / "scans" / "seed0.json").read_text())
        assert set(metrics["slice_pooled"]["iou"]) == {"LV", "RV", "LA", "RA"}
        log = (res / "ssmtl_ct" / "pretrain" / run / "all" / "log.csv").read_text().splitlines()
        assert "loss" in log[0] and len(log) == 2
    assert "sim" in (res / "ssmtl_ct" / "pretrain" / "fcn_ssmtl_plus" / "all" / "log.csv").read_text().splitlines()[0]
    for table in ("ssmtl_table2", "ssmtl_table4"):
        assert "synthetic" in (res / "tables" / f"{table}.md").read_text().lower()


def _job_counts(out: str) -> dict[str, int]:
    counts, in_stats = {}, False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            in_stats = True
            continue
        if in_stats:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
    return counts


def test_one_table_schedules_only_its_ancestors(tmp_path, repo):
    """`snakemake <table>` runs only what that table needs (demo config, dry run)."""
    code, out = run_workflow(tmp_path, repo / "config" / "config.yaml", "results/demo/tables/hssl_table4.md", "-n")
    assert code == 0, out
    counts = _job_counts(out)
    # Table 4: five loss variants at 5 % on tasks 1 and 5, plus the TFS baseline of the paired test.
    assert counts["finetune"] == counts["evaluate"] == 6 * 2
    assert counts["pretrain"] == 5  # hssl_rec, simclr, hssl_img_rec, hssl_img_rec_task, hssl (pool "all")
    assert counts["synthesize_dataset"] == 8  # the multi-domain pool: every paper-A dataset, no MM-WHS
    assert [r for r in counts if r.startswith("report_")] == ["report_hssl_table4"]
    assert "tsne_features" not in counts


def test_demo_all_schedules_every_table_and_figure(tmp_path, repo):
    """`all` on the demo config makes every table and figure of both papers (dry run)."""
    from medssl.reports.targets import TARGETS

    code, out = run_workflow(tmp_path, repo / "config" / "config.yaml", "all", "-n")
    assert code == 0, out
    counts = _job_counts(out)
    assert sorted(r for r in counts if r.startswith("report_")) == sorted(f"report_{t}" for t in TARGETS)
    for target, info in TARGETS.items():
        for path in info.outputs:
            assert f"results/demo/{path}" in out, path
