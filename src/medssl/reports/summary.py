"""A generic summary of any study that no paper report names, so that ``all`` always ends in something to read.

For study ``S`` the outputs (relative to ``results/<exp>/``) are ``tables/summary_S.{csv,md,html}`` and
``figures/summary_S.png``: every run × finetuning dataset × label ratio of the study's grid, the mean ± sd
over seeds of the slice-pooled score (mean foreground Dice in %, or PSNR in dB for denoising studies, with
mIoU beside Dice), and the paired per-patient test against the study's baseline (its first run trained from
scratch, method ``tfs``), Holm-adjusted per column as in the paper tables (:mod:`medssl.reports.stats`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from medssl.io import write_text
from medssl.reports.metrics_files import MetricsSource, MissingInputError, metrics_path, read_metrics
from medssl.reports.stats import (
    TEST_DESCRIPTION, PairedTest, Summary, holm_adjust, mean_over_seeds, paired_test, significance_marker, summarise,
)
from medssl.reports.targets import percent_label

DASH = "—"


def summary_studies(config: dict) -> list[str]:
    """Studies that no configured paper report refers to (by its ``study`` or a 'study/run' reference)."""
    from medssl.reports.targets import studies_named

    named: set[str] = set()
    for block in (config.get("reports") or {}).values():
        named |= studies_named(block)
    return [s for s in (config.get("studies") or {}) if s not in named]


def summary_outputs(study: str) -> list[str]:
    return [f"tables/summary_{study}.csv", f"tables/summary_{study}.md", f"tables/summary_{study}.html",
            f"figures/summary_{study}.png"]


@dataclass
class SummaryCell:
    run: str
    label: str
    dataset: str
    ratio: str
    score: Summary  # Dice % or PSNR dB, over seeds
    miou: Summary  # % (segmentation only)
    patients: dict[str, float]
    synthetic: bool
    per_class: dict[str, Summary] = field(default_factory=dict)  # Dice % per class (segmentation)
    never_predicted: list[str] = field(default_factory=list)  # classes a model of the cell never predicts
    test: PairedTest | None = None
    is_baseline: bool = False


def study_grid(config: dict, study: str) -> list[tuple[str, str, str]]:
    """(run, dataset, ratio) of every evaluation the study's runs make, in config order."""
    grid = []
    for run, rs in config["studies"][study]["runs"].items():
        grid += [(run, d, r) for d in rs["finetune_datasets"] for r in rs["label_ratios"]]
    return grid


def summary_inputs(config: dict, study: str) -> list[Path]:
    seeds = config["studies"][study]["seeds"]
    return [metrics_path(config, (study, run, d, r, s)) for run, d, r in study_grid(config, study) for s in seeds]


def baseline_run(config: dict, study: str) -> str | None:
    return next((r for r, v in config["studies"][study]["runs"].items() if v["method"] == "tfs"), None)


def _patient_scores(m: dict, denoising: bool) -> dict[str, float]:
    from medssl.reports.tables import patient_scores

    return patient_scores(m, "psnr" if denoising else "dice")


def collect(config: dict, study: str, metrics) -> dict[tuple[str, str, str], SummaryCell]:
    source = MetricsSource.from_inputs(config, metrics)
    seeds = config["studies"][study]["seeds"]
    denoising = config["studies"][study]["downstream"] == "denoising"
    cells, missing = {}, []
    for run, dataset, ratio in study_grid(config, study):
        found = []
        for seed in seeds:
            key = (study, run, dataset, ratio, seed)
            if source.exists(key):
                found.append(read_metrics(source.path(key)))
            else:
                missing.append(str(source.path(key)))
        sp = [m.get("slice_pooled") or {} for m in found]
        classes = next((list(m["classes"]) for m in found if m.get("classes")), [])
        cells[(run, dataset, ratio)] = SummaryCell(
            per_class={k: summarise([None if (s.get("dice") or {}).get(k) is None else 100 * s["dice"][k]
                                     for s in sp]) for k in classes},
            never_predicted=sorted({k for m in found for k in m.get("never_predicted") or []}),
            run=run, label=config["studies"][study]["runs"][run]["label"], dataset=dataset, ratio=ratio,
            score=summarise([m.get("psnr") for m in found] if denoising
                            else [None if s.get("mean_dice") is None else 100 * s["mean_dice"] for s in sp]),
            miou=summarise([] if denoising else [None if s.get("miou") is None else 100 * s["miou"] for s in sp]),
            patients=mean_over_seeds(_patient_scores(m, denoising) for m in found),
            synthetic=any(bool(m.get("synthetic")) for m in found))
    if missing:
        raise MissingInputError(f"summary_{study}", missing)
    base = baseline_run(config, study)
    if base is not None:
        for dataset, ratio in dict.fromkeys((d, r) for _, d, r in cells):
            ref = cells.get((base, dataset, ratio))
            if ref is None:
                continue
            ref.is_baseline = True
            column = [c for (run, d, r), c in cells.items() if (d, r) == (dataset, ratio) and run != base]
            for c, t in zip(column, holm_adjust([paired_test(c.patients, ref.patients) for c in column])):
                c.test = t
    return cells


def _fmt(s: Summary, d: int = 2) -> str:
    if s.mean is None:
        return DASH
    return f"{s.mean:.{d}f}" if s.sd is None else f"{s.mean:.{d}f} ± {s.sd:.{d}f}"


def _p(c: SummaryCell) -> str:
    if c.is_baseline:
        return "ref."
    if c.test is None:
        return DASH
    if not c.test.tested or c.test.p is None:
        return f"{c.test.test} (n={c.test.n})"
    return f"{c.test.p_adj:.3g}{significance_marker(c.test)} (n={c.test.n})"


def render_markdown(config: dict, study: str, cells: dict) -> str:
    s = config["studies"][study]
    denoising = s["downstream"] == "denoising"
    synthetic = any(c.synthetic for c in cells.values())
    score = "PSNR (dB)" if denoising else "Dice (%)"
    title = f"Summary of study `{study}`" + (f": {s['title']}" if s.get("title") not in (None, study) else "")
    lines = [f"# {title}{' — synthetic data' if synthetic else ''}", ""]
    if synthetic:
        lines += ["> **Synthetic data.** These numbers come from phantom twins of the datasets; they test the "
                  "pipeline and are not results on real images.", ""]
    base = baseline_run(config, study)
    lines += [f"Slice-pooled {'PSNR' if denoising else 'mean foreground Dice and mIoU'} on each dataset's test "
              f"patients, mean ± sd over seeds {s['seeds']} (sd omitted for one seed)."]
    if base is not None:
        lines += [f"p: each run against **{cells_label(cells, base)}**, {TEST_DESCRIPTION}; * adjusted p < 0.05, "
                  "** adjusted p < 0.01."]
    blind = [f"{c.label} on {c.dataset} at {percent_label(c.ratio)}: {', '.join(c.never_predicted)}"
             for c in cells.values() if c.never_predicted]
    if blind:
        lines += ["† A model of this cell predicts no pixel of a class on the test slices (it labels them "
                  f"background): its score for that class means nothing ({'; '.join(blind)}).", ""]
    lines.append("")
    for dataset in dict.fromkeys(d for _, d, _ in cells):
        ratios = list(dict.fromkeys(r for (_, d, r) in cells if d == dataset))
        header = ["Run"] + [f"{score}, {percent_label(r)}" for r in ratios]
        if not denoising:
            header += [f"mIoU (%), {percent_label(r)}" for r in ratios]
        header += [f"p, {percent_label(r)}" for r in ratios]
        body = []
        for run in dict.fromkeys(run for (run, d, _) in cells if d == dataset):
            row = [cells_label(cells, run)]
            get = [cells.get((run, dataset, r)) for r in ratios]
            row += [_fmt(c.score) + ("†" if c.never_predicted else "") if c else "" for c in get]
            if not denoising:
                row += [_fmt(c.miou) if c else "" for c in get]
            row += [_p(c) if c else "" for c in get]
            body.append(row)
        lines += [f"## `{dataset}`", "", _table(header, body), ""]
        classes = [k for c in cells.values() if c.dataset == dataset for k in c.per_class]
        classes = list(dict.fromkeys(classes))
        if not denoising and len(classes) > 1:  # one class: its Dice is the mean above
            header = ["Run", "Labels"] + [f"{k} Dice (%)" for k in classes]
            body = [[c.label, percent_label(c.ratio)] + [_fmt(c.per_class[k]) if k in c.per_class else "" for k in classes]
                    for c in cells.values() if c.dataset == dataset]
            lines += [f"Per class, `{dataset}`:", "", _table(header, body), ""]
    return "\n".join(lines)


def _table(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(x).replace("|", "\\|") for x in r) + " |" for r in body])


def cells_label(cells: dict, run: str) -> str:
    return next((c.label for (r, _, _), c in cells.items() if r == run), run)


def write_csv(path, study: str, cells: dict) -> None:
    fields = ["study", "run", "label", "dataset", "ratio", "synthetic", "score_mean", "score_sd", "n_seeds",
              "miou_mean", "miou_sd", "p_value", "p_holm", "test", "n_pairs"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    num = (lambda v: "" if v is None else f"{v:.10g}")
    for c in cells.values():
        t = c.test
        w.writerow({"study": study, "run": c.run, "label": c.label, "dataset": c.dataset, "ratio": c.ratio,
                    "synthetic": str(c.synthetic).lower(), "score_mean": num(c.score.mean), "score_sd": num(c.score.sd),
                    "n_seeds": c.score.n, "miou_mean": num(c.miou.mean), "miou_sd": num(c.miou.sd),
                    "p_value": num(t.p) if t else "", "p_holm": num(t.p_adj) if t else "",
                    "test": t.test if t else ("ref." if c.is_baseline else ""), "n_pairs": t.n if t else ""})
    write_text(path, buf.getvalue())


def plot(config: dict, study: str, cells: dict, png_out) -> None:
    """Bars per dataset: label ratios on the x axis, one bar per run (sd error bars with several seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from medssl.io import atomic_path

    datasets = list(dict.fromkeys(d for _, d, _ in cells))
    runs = list(dict.fromkeys(r for r, _, _ in cells))
    denoising = config["studies"][study]["downstream"] == "denoising"
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(6.5, 4.5 * len(datasets)), 3.8), squeeze=False)
    width = 0.8 / max(len(runs), 1)
    for ax, dataset in zip(axes[0], datasets):
        ratios = list(dict.fromkeys(r for (_, d, r) in cells if d == dataset))
        for i, run in enumerate(runs):
            got = [cells.get((run, dataset, r)) for r in ratios]
            x = np.arange(len(ratios)) + (i - (len(runs) - 1) / 2) * width
            y = [c.score.mean if c and c.score.mean is not None else np.nan for c in got]
            err = [c.score.sd if c and c.score.sd is not None else 0.0 for c in got]
            bars = ax.bar(x, y, width, yerr=err if any(err) else None, label=cells_label(cells, run), capsize=2)
            ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.1f}" for v in y], fontsize=8, padding=1)
        ax.set_xticks(np.arange(len(ratios)), [percent_label(r) for r in ratios])
        ax.set_xlabel("labelled training data")
        ax.set_title(dataset)
        ax.set_ylabel("PSNR (dB)" if denoising else "Dice (%)")
        if not denoising:
            ax.set_ylim(0, 100)
    synthetic = any(c.synthetic for c in cells.values())
    seeds = config["studies"][study]["seeds"]
    fig.suptitle(f"Summary of {study}{' (synthetic data)' if synthetic else ''}; "
                 f"{'error bars: sd over ' + str(len(seeds)) + ' seeds' if len(seeds) > 1 else 'one seed'}", fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(png_out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def build_summary(config: dict, study: str, metrics, csv_out, md_out, html_out, png_out) -> dict:
    from medssl.reports.tables import render_html

    cells = collect(config, study, metrics)
    write_csv(csv_out, study, cells)
    markdown = render_markdown(config, study, cells)
    write_text(md_out, markdown)
    write_text(html_out, render_html(markdown, title=f"Summary of {study}"))
    plot(config, study, cells, png_out)
    return cells
