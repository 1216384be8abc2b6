"""The Snakemake workflow end to end: lint, the paper config's DAG without data, a tiny real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_config

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, cwd=REPO, timeout=900):
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def test_lint_is_clean(tmp_path):
    code, out = snakemake("--lint", "-d", str(tmp_path), "--snakefile", str(REPO / "Snakefile"),
                          "--configfile", str(REPO / "config" / "config.yaml"))
    assert code == 0, out
    assert "Lints for" not in out, out


def test_paper_dag_builds_without_data(tmp_path):
    code, out = snakemake("-n", "-d", str(tmp_path), "--snakefile", str(REPO / "Snakefile"),
                          "--configfile", str(REPO / "config" / "paper.yaml"))
    assert code == 0, out
    for rule in ("fetch_dataset", "slice_dataset", "split_dataset", "pretrain", "finetune", "evaluate"):
        assert rule in out
    assert "synthesize_dataset" not in out


def test_invalid_config_fails_naming_the_key(tmp_path):
    config = tiny_config()
    config["data"]["image_sise"] = 32
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out = snakemake("-n", "-d", str(tmp_path), "--snakefile", str(REPO / "Snakefile"),
                          "--configfile", str(path))
    assert code != 0 and "image_sise" in out


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    """Phantoms -> slices -> splits -> pretrain (hssl) -> finetune (tfs, hssl) -> evaluate, for real."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    code, out = snakemake("all", "--cores", "2", "-d", str(tmp_path), "--snakefile", str(REPO / "Snakefile"),
                          "--configfile", str(path))
    assert code == 0, out
    res = tmp_path / "results" / "tiny"
    for dataset in ("msd_heart", "msd_spleen"):
        split = json.loads((res / "splits" / f"{dataset}.json").read_text())
        train, val, test = (set(split["patients"][k]) for k in ("train", "val", "test"))
        assert train and test and not (train & val) and not (train & test) and not (val & test)
    for run in ("tfs", "hssl"):
        metrics = json.loads((res / "hssl" / "metrics" / run / "msd_heart" / "100" / "seed0.json").read_text())
        assert metrics["synthetic"] is True and metrics["run"] == run
        assert set(metrics["slice_pooled"]["dice"]) == {"left atrium"}
    assert (res / "hssl" / "pretrain" / "hssl" / "all" / "model.pt").exists()
    assert not (res / "hssl" / "pretrain" / "tfs").exists()
    table = (res / "tables" / "hssl_table2.md").read_text()
    assert "synthetic" in table.lower() and "TFS" in table and "HSSL" in table
    # Nothing left to do: a second run is a no-op.
    code, out = snakemake("all", "-n", "--cores", "2", "-d", str(tmp_path), "--snakefile", str(REPO / "Snakefile"),
                          "--configfile", str(path))
    assert code == 0 and "Nothing to be done" in out, out
