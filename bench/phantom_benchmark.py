"""Headline of the phantom benchmark (``config/benchmark.yaml``): training from scratch vs each pretraining
method, per study, at one label budget (prints Markdown; no assertions).

For every run trained from scratch (method ``tfs``, the baseline) of every study, against every other run of
its architecture, at the study's smallest label ratio (``--ratio`` overrides; paper B's studies use
``scans``):

* per finetuning dataset, the mean ± sd over seeds of the slice-pooled test score: mean foreground Dice (%)
  for paper A, mIoU for paper B, PSNR (dB) for denoising studies;
* Δ: the mean difference to the baseline over the (dataset, seed) cells;
* p: the two-sided Wilcoxon signed-rank test over those paired cells (none below 6 pairs), Holm-adjusted over
  the methods of the study (:mod:`medssl.reports.stats`).

    snakemake --cores 2 all --configfile config/benchmark.yaml     # 1-2 hours on 2 CPU cores
    python bench/phantom_benchmark.py [--config config/benchmark.yaml] [--results results/benchmark]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medssl import config as cfg
from medssl.layout import Layout
from medssl.reports.metrics_files import read_metrics
from medssl.reports.stats import holm_adjust, paired_test, summarise

REPO = Path(__file__).resolve().parents[1]


def score(metrics: dict, paper: str | None) -> float | None:
    if metrics.get("downstream") == "denoising":
        return metrics.get("psnr")
    pooled = metrics["slice_pooled"]
    if paper == "ssmtl":
        return pooled.get("miou")
    return None if pooled.get("mean_dice") is None else 100.0 * pooled["mean_dice"]


def _smallest(ratios: list[str]) -> str:
    numeric = [r for r in ratios if r.replace(".", "", 1).isdigit()]
    return min(numeric, key=float) if numeric else ratios[0]


def study_headline(config: dict, root: Path, study: str, ratio: str | None) -> list[str]:
    """One table per run trained from scratch in ``study``: that baseline and every run of its architecture."""
    runs = config["studies"][study]["runs"]
    lines = []
    for base in [r for r, rs in runs.items() if rs["method"] == "tfs"]:
        lines += baseline_table(config, root, study, runs, base, ratio)
    return lines


def baseline_table(config: dict, root: Path, study: str, runs: dict, base: str, ratio: str | None) -> list[str]:
    ratio = ratio or _smallest(runs[base]["label_ratios"])
    others = [r for r, rs in runs.items() if r != base and rs["arch"] == runs[base]["arch"]
              and ratio in rs["label_ratios"]]
    datasets = runs[base]["finetune_datasets"]
    seeds = config["studies"][study]["seeds"]
    paper, denoising = config["studies"][study].get("paper"), config["studies"][study]["downstream"] == "denoising"
    unit, digits = ("PSNR dB", 2) if denoising else ("mIoU", 3) if paper == "ssmtl" else ("Dice %", 1)
    layout = Layout(root)

    def cells(run):
        out = {}
        for d in runs[run]["finetune_datasets"]:
            for s in seeds:
                path = layout.metrics(study, run, d, ratio, s)
                if path.is_file():
                    out[f"{d}/{s}"] = score(read_metrics(path), paper)
        return out

    base_cells = cells(base)
    results = [(run, c) for run in [base] + others if (c := cells(run))]
    if len(results) < 2 or results[0][0] != base:
        return []  # no baseline results, or nothing to compare with it
    tests = holm_adjust([paired_test(c, base_cells) for run, c in results[1:]])
    lines = [f"**{study}**, {runs[base]['arch']} ({unit}, labels {ratio}, {len(seeds)} seeds; mean ± sd over "
             "seeds)", "",
             "| run | " + " | ".join(datasets) + f" | Δ vs {runs[base]['label']} | p (Holm) |",
             "|---" * (len(datasets) + 3) + "|"]
    for (run, c), t in zip(results, [None] + tests):
        per_ds = []
        for d in datasets:
            values = [v for k, v in c.items() if k.split("/")[0] == d]
            sm = summarise(values)
            spread = f" ± {sm.sd:.{digits}f}" if sm.sd is not None else f" ({len(values)} seed)"
            per_ds.append("—" if sm.mean is None else f"{sm.mean:.{digits}f}{spread}")
        delta = "" if t is None or t.mean_diff is None else f"{t.mean_diff:+.{digits}f}"
        p = "" if t is None else (t.test if t.p_adj is None else f"{t.p_adj:.3g} (n={t.n})")
        lines.append(f"| {runs[run]['label']} (`{run}`) | " + " | ".join(per_ds) + f" | {delta} | {p} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "config" / "benchmark.yaml"))
    ap.add_argument("--results", help="the experiment's results folder (default: results/<experiment>)")
    ap.add_argument("--ratio", help="label ratio key (default: each study's smallest)")
    args = ap.parse_args()
    config = cfg.load_config(args.config)
    root = Path(args.results) if args.results else Layout.of(config).root
    for study in config["studies"]:
        print("\n".join(study_headline(config, root, study, args.ratio)))


if __name__ == "__main__":
    main()
