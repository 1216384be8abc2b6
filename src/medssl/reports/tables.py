"""Table builders: paper tables with mean ± sd over seeds, the paper's number and the difference beside each
reproduced cell, a paired test per patient against the baseline, and per-volume Dice/IoU/HD95.

Every builder writes a long-format CSV (one row per cell and measure, for machines), a Markdown file (paper
layout, per-section detail, per-volume table, for people) and, optionally, that Markdown as HTML (shown
inline by ``snakemake --report``). Entry point::

    build_table(target, config, metrics, csv_out, md_out, html_out=None, *, allow_missing=None) -> cells

``metrics`` is the experiment's results folder (``results/<exp>``) or a list of metrics files.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from medssl.io import write_text
from medssl.scoring import hd95_units_note
from medssl.reports.metrics_files import MetricsSource, MissingInputError, read_metrics
from medssl.reports.paper_values import PaperValue
from medssl.reports.stats import (
    TEST_DESCRIPTION, PairedTest, Summary, finite, holm_adjust, mean_over_seeds, paired_test,
    significance_marker, summarise,
)
from medssl.reports.targets import Row, TableSpec, table_spec, target_info

DASH = "—"
SUMMARY_KEYS = {"dice": "mean_dice", "iou": "miou"}
METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "psnr": "PSNR"}


# --------------------------------------------------------------------------------------------------
# Reading one evaluation


def _class_values(m: dict, metric: str, classes: list[str]) -> dict[str, float | None]:
    sp = m.get("slice_pooled") or {}
    vals = sp.get(metric) or {}
    return {c: vals.get(c) for c in classes}


def summary_value(m: dict, metric: str, classes: list[str]) -> float | None:
    """The table's summary number of one evaluation: mean Dice, mIoU or PSNR (fraction / dB)."""
    if metric == "psnr":
        return m.get("psnr")
    sp = m.get("slice_pooled") or {}
    v = sp.get(SUMMARY_KEYS[metric])
    if v is None:
        vals = finite(_class_values(m, metric, classes).values())
        v = sum(vals) / len(vals) if vals else None
    return v


def patient_scores(m: dict, metric: str) -> dict[str, float]:
    """{patient: per-volume score averaged over the patient's volumes} (mean over foreground classes)."""
    acc: dict[str, list[float]] = {}
    for pv in m.get("per_volume") or []:
        if metric == "psnr":
            vals = finite([pv.get("psnr")])
            v = vals[0] if vals else None
        else:
            vals = finite((pv.get(metric) or {}).values())
            v = sum(vals) / len(vals) if vals else None
        if v is None:
            continue
        acc.setdefault(str(pv.get("patient") or pv.get("case")), []).append(v)
    return {k: sum(v) / len(v) for k, v in acc.items()}


def _every_slice(m: dict, metric: str) -> float | None:
    """The summary score over every slice of the test patients (``all_slices``; paper A scores fewer)."""
    pooled = (m.get("all_slices") or {}).get("slice_pooled") or {}
    return pooled.get(SUMMARY_KEYS[metric]) if metric in SUMMARY_KEYS else None


def _volume_mean(m: dict, metric: str) -> float | None:
    vm = m.get("volume_mean") or {}
    if metric in SUMMARY_KEYS and vm.get(SUMMARY_KEYS[metric]) is not None:
        return vm[SUMMARY_KEYS[metric]]
    per_volume = []
    for pv in m.get("per_volume") or []:
        if metric == "psnr":
            per_volume += finite([pv.get("psnr")])
        else:
            vals = finite((pv.get(metric) or {}).values())
            if vals:
                per_volume.append(sum(vals) / len(vals))
    return sum(per_volume) / len(per_volume) if per_volume else None


def _hd95(m: dict) -> float | None:
    vm = m.get("volume_mean") or {}
    vals = finite((vm.get("hd95") or {}).values())
    if not vals:
        per_volume = []
        for pv in m.get("per_volume") or []:
            v = finite((pv.get("hd95") or {}).values())
            if v:
                per_volume.append(sum(v) / len(v))
        vals = per_volume
    return sum(vals) / len(vals) if vals else None


# --------------------------------------------------------------------------------------------------
# Cells


@dataclass
class Cell:
    row: Row
    dataset_label: str
    dataset: str
    ratio_label: str
    ratio: str
    classes: list[str]
    seeds: list[int]
    files: list[str]
    missing: list[str]
    per_class: dict[str, Summary]
    mean: Summary
    volume_dice: Summary
    volume_iou: Summary
    volume_psnr: Summary
    hd95: Summary
    n_params: Summary
    patients: dict[str, float]
    synthetic: bool
    paper: PaperValue | None = None
    test: PairedTest | None = None
    is_baseline: bool = False
    extra: dict = field(default_factory=dict)


def _scaled(values, scale):
    return [None if v is None else float(v) * scale for v in values]


def collect_cells(spec: TableSpec, metrics, *, config: dict) -> dict[tuple[str, str, str], Cell]:
    """Read every evaluation of ``spec``; key (row label, dataset label, ratio label)."""
    source = MetricsSource.from_inputs(config, metrics)
    paper = spec.paper
    scale = paper.scale if paper.metric != "psnr" else 1.0
    rows = list(spec.rows)
    if spec.baseline is not None and spec.baseline not in rows:
        rows.append(spec.baseline)
    cells: dict[tuple[str, str, str], Cell] = {}
    all_missing: list[str] = []
    for ds_label, ds in spec.datasets:
        for r_label, ratio in spec.ratios:
            for row in rows:
                found, missing, seeds = [], [], []
                for key in spec.keys(row, ds, ratio):
                    path = source.path(key)
                    if source.exists(key):
                        found.append((key[4], path, read_metrics(path)))
                        seeds.append(key[4])
                    else:
                        missing.append(str(path))
                all_missing += missing
                ms = [m for _, _, m in found]
                classes = next((list(m["classes"]) for m in ms if m.get("classes")), None)
                if classes is None:
                    classes = list(paper.datasets.get(ds_label, {}).get("classes", []))
                    if paper.metric == "psnr":
                        classes = []
                per_class = {c: summarise(_scaled([_class_values(m, paper.metric, classes)[c] for m in ms], scale))
                             for c in classes} if paper.metric != "psnr" else {}
                cells[(row.label, ds_label, r_label)] = Cell(
                    row=row, dataset_label=ds_label, dataset=ds, ratio_label=r_label, ratio=ratio,
                    classes=classes, seeds=seeds, files=[str(p) for _, p, _ in found], missing=missing,
                    per_class=per_class,
                    mean=summarise(_scaled([summary_value(m, paper.metric, classes) for m in ms], scale)),
                    volume_dice=summarise(_scaled([_volume_mean(m, "dice") for m in ms], scale)),
                    volume_iou=summarise(_scaled([_volume_mean(m, "iou") for m in ms], scale)),
                    volume_psnr=summarise([_volume_mean(m, "psnr") for m in ms]),
                    hd95=summarise([_hd95(m) for m in ms]),
                    n_params=summarise([m.get("n_params") / 1e6 if m.get("n_params") else None for m in ms]),
                    patients=mean_over_seeds(patient_scores(m, paper.metric) for m in ms),
                    synthetic=any(bool(m.get("synthetic")) for m in ms),
                    paper=paper.value(ds_label, r_label, row.label),
                    is_baseline=spec.baseline is not None and row == spec.baseline,
                    extra={"hd95_units": sorted({str(m["hd95_units"]) for m in ms if m.get("hd95_units")}),
                           "noisy_psnr": [m["noisy_psnr"] for m in ms if m.get("noisy_psnr") is not None],
                           "never_predicted": sorted({c for m in ms for c in m.get("never_predicted") or []}),
                           "slice_filter": next((m["slice_filter"] for m in ms if m.get("slice_filter")), None),
                           "every_slice": summarise(_scaled([_every_slice(m, paper.metric) for m in ms], scale))},
                )
    if all_missing and not spec.allow_missing:
        raise MissingInputError(spec.target, all_missing)
    if spec.baseline is not None:
        for ds_label, _ in spec.datasets:
            for r_label, _ in spec.ratios:
                base = cells[(spec.baseline.label, ds_label, r_label)]
                column = [c for c in (cells[(row.label, ds_label, r_label)] for row in spec.rows) if not c.is_baseline]
                tests = holm_adjust([paired_test(c.patients, base.patients) for c in column])
                for c, t in zip(column, tests):
                    c.test = t
    return cells


# --------------------------------------------------------------------------------------------------
# Formatting


def fmt_num(v: float | None, d: int) -> str:
    return DASH if v is None else f"{v:.{d}f}"


def fmt_summary(s: Summary, d: int) -> str:
    if s.mean is None:
        return DASH
    return f"{s.mean:.{d}f}" if s.sd is None else f"{s.mean:.{d}f} ± {s.sd:.{d}f}"


def fmt_delta(rep: float | None, paper: float | None, d: int) -> str:
    if rep is None or paper is None:
        return DASH
    return f"{rep - paper:+.{d}f}"


def fmt_p(test: PairedTest | None, is_baseline: bool = False) -> str:
    if is_baseline:
        return "ref."
    if test is None:
        return DASH
    if not test.tested or test.p is None:
        return f"{test.test} (n={test.n})"
    return f"{test.p_adj:.3g}{significance_marker(test)} (Holm; raw {test.p:.3g}, {test.test}, n={test.n})"


def ratio_text(label: str) -> str:
    try:
        float(label)
        return f"{label}%"
    except ValueError:
        return "few labelled scans" if label == "scans" else label


def _ratio_heading(label: str) -> str:
    text = ratio_text(label)
    return f"{text} labels" if text.endswith("%") else text


def md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(x):
        return str(x).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Writers


CSV_FIELDS = ["target", "synthetic", "dataset_label", "dataset", "ratio_label", "ratio", "method", "study", "run",
              "measure", "class", "unit", "mean", "sd", "n_seeds", "seeds", "paper", "delta", "p_value", "p_holm",
              "test", "n_pairs", "missing_files"]


def _num(v):
    return "" if v is None else f"{v:.10g}"


def csv_rows(spec: TableSpec, cells: dict) -> list[dict]:
    paper = spec.paper
    unit = paper.unit
    out = []
    for row in spec.rows:
        for ds_label, _ in spec.datasets:
            for r_label, _ in spec.ratios:
                c = cells[(row.label, ds_label, r_label)]
                base = {"target": spec.target, "synthetic": str(c.synthetic).lower(), "dataset_label": ds_label,
                        "dataset": c.dataset, "ratio_label": r_label, "ratio": c.ratio, "method": row.label,
                        "study": row.study, "run": row.run, "n_seeds": len(c.seeds),
                        "seeds": " ".join(map(str, c.seeds)), "missing_files": " ".join(c.missing)}

                def add(measure, klass, s: Summary, u, p=None, test=None):
                    # synthetic data are not comparable with the paper: its value is listed, no difference
                    delta = None if p is None or s.mean is None or c.synthetic else s.mean - p
                    r = dict(base, measure=measure, **{"class": klass}, unit=u, mean=_num(s.mean), sd=_num(s.sd),
                             paper=_num(p), delta=_num(delta),
                             p_value="", p_holm="", test="", n_pairs="")
                    if test is not None:
                        r.update(p_value=_num(test.p), p_holm=_num(test.p_adj), test=test.test, n_pairs=test.n)
                    out.append(r)

                pv = c.paper
                if paper.metric == "psnr":
                    add("psnr", "", c.mean, unit, pv.mean if pv else None, c.test)
                    add("volume_psnr", "", c.volume_psnr, unit)
                    continue
                for k in c.classes:
                    add(paper.metric, k, c.per_class[k], unit, pv.classes.get(k) if pv else None)
                add(SUMMARY_KEYS[paper.metric], "", c.mean, unit, pv.mean if pv else None, c.test)
                add("volume_mean_dice", "", c.volume_dice, unit)
                add("volume_miou", "", c.volume_iou, unit)
                add("volume_hd95", "", c.hd95, "/".join(c.extra.get("hd95_units") or ["hd95"]))
                if "params_m" in paper.extra:
                    add("params_m", "", c.n_params, "M", paper.extra["params_m"].get(row.label))
    return out


def write_csv(path, rows: list[dict], fields: list[str] = CSV_FIELDS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


NOTHING = "†"  # a model of the cell predicts no pixel of a class on the test slices


def nothing_mark(c: Cell) -> str:
    return NOTHING if c.extra.get("never_predicted") else ""


def _cell_grid_text(c: Cell, d: int, with_classes: bool) -> str:
    """A reproduced cell of the paper's layout: mean (per class then mean for multi-class datasets), markers."""
    marker = significance_marker(c.test) + nothing_mark(c)
    if with_classes and len(c.classes) > 1:
        return "; ".join(fmt_num(c.per_class[k].mean, d) for k in c.classes) + f" ({fmt_summary(c.mean, d)})" + marker
    return fmt_summary(c.mean, d) + marker


def _paper_grid_text(c: Cell, d: int, with_classes: bool) -> str:
    """The paper's number(s) of a cell, laid out as :func:`_cell_grid_text` lays out the reproduced ones."""
    pv = c.paper
    if pv is None:
        return DASH
    if with_classes and len(c.classes) > 1 and pv.classes:
        return "; ".join(fmt_num(pv.classes.get(k), d) for k in c.classes) + f" ({fmt_num(pv.mean, d)})"
    return fmt_num(pv.mean, d)


def _delta_grid_text(c: Cell, d: int, with_classes: bool) -> str:
    """Reproduced − paper of a cell's mean (and of each class of a multi-class dataset)."""
    pv = c.paper
    if pv is None:
        return DASH
    if with_classes and len(c.classes) > 1 and pv.classes:
        return ("; ".join(fmt_delta(c.per_class[k].mean, pv.classes.get(k), d) for k in c.classes)
                + f" ({fmt_delta(c.mean.mean, pv.mean, d)})")
    return fmt_delta(c.mean.mean, pv.mean, d)


def _every_slice_text(c: Cell, d: int, with_classes: bool) -> str:
    """A cell's mean over every test slice, beside the mean over the scored ones: 'every (scored)'."""
    every = c.extra.get("every_slice")
    if every is None or every.mean is None:
        return DASH
    return f"{fmt_summary(every, d)} ({fmt_summary(c.mean, d)})"


def _layout_table(spec: TableSpec, cells: dict, grid: str, d: int, text, params: str) -> tuple[list, list]:
    """(header, body) of the paper's layout with ``text(cell, d, with_classes)`` in each cell; ``params``:
    ``reproduced``, ``paper`` or ``delta`` parameter counts (Table 3)."""
    paper = spec.paper
    if grid == "ratio_rows":
        header = ["Task", "Anno."] + [r.label for r in spec.rows]
        body = [[paper.dataset_label(ds_label), ratio_text(r_label)]
                + [text(cells[(r.label, ds_label, r_label)], d, True) for r in spec.rows]
                for ds_label, _ in spec.datasets for r_label, _ in spec.ratios]
        return header, body
    header = ["Method"] + (["Losses"] if "losses" in paper.extra else []) + (
        ["Param. (M)"] if "params_m" in paper.extra else [])
    header += [f"{paper.dataset_label(ds)} {ratio_text(r)}" for ds, _ in spec.datasets for r, _ in spec.ratios]
    body = []
    for row in spec.rows:
        line = [row.label]
        if "losses" in paper.extra:
            line.append(" + ".join(paper.extra["losses"].get(row.label, [])) or DASH)
        if "params_m" in paper.extra:
            first = cells[(row.label, spec.datasets[0][0], spec.ratios[0][0])]
            count = paper.extra["params_m"].get(row.label)
            line.append(fmt_num(first.n_params.mean, 2) if params == "reproduced" else fmt_num(count, 2)
                        if params == "paper" else fmt_delta(first.n_params.mean, count, 2))
        line += [text(cells[(row.label, ds, r)], d, False) for ds, _ in spec.datasets for r, _ in spec.ratios]
        body.append(line)
    return header, body


def render_markdown(spec: TableSpec, cells: dict, *, title: str, grid: str) -> str:
    paper = spec.paper
    d = paper.decimals
    synthetic = any(c.synthetic for c in cells.values())
    mname = METRIC_NAMES[paper.metric]
    unit = f" ({paper.unit})" if paper.unit not in ("IoU",) else ""
    seeds = sorted({s for c in cells.values() for s in c.seeds})
    missing = [m for c in cells.values() for m in c.missing]
    lines = [f"# {title}{' — synthetic data' if synthetic else ''}", ""]
    if synthetic:
        lines += ["> **Synthetic data.** These numbers come from phantom twins of the datasets (the metrics files "
                  "say `synthetic: true`); they test the pipeline and are not comparable with the paper's numbers, "
                  "so no difference to them is shown.", ""]
    scored = ("the test patients' slices with a labelled structure (the population paper A trains on; the "
              "metrics files hold the every-slice scores beside)" if any(
                  c.extra.get("slice_filter") == "foreground" for c in cells.values())
              else "every slice of the test patients")
    lines += [f"Paper: {paper.caption}", "",
              f"Reproduced cells: mean ± sd over seeds ({', '.join(map(str, seeds)) or 'none'}; sd omitted for a "
              f"single seed), slice-pooled {mname}{unit} over {scored}. The paper's values follow in the same "
              "layout" + ("." if synthetic else ", then the differences, reproduced − paper.")]
    for note in paper.extra.get("notes", []):
        lines += [" ".join(note.split()), ""]
    if spec.baseline is not None:
        pairs = sorted({c.test.n for c in cells.values() if c.test is not None})
        n_text = (f"n = {pairs[0]}" if len(pairs) == 1 else f"n = {pairs[0]}-{pairs[-1]}") if pairs else "n = 0"
        lines += [f"p: each method against **{spec.baseline.label}** ({n_text} test patients), {TEST_DESCRIPTION}; "
                  "* adjusted p < 0.05, ** adjusted p < 0.01."]
    blind = sorted({f"{c.row.label} on {paper.dataset_label(c.dataset_label)} at {ratio_text(c.ratio_label)}: "
                    + ", ".join(c.extra["never_predicted"]) for c in cells.values() if c.extra.get("never_predicted")})
    if blind:
        lines += [f"{NOTHING} A model of this cell predicts no pixel of a class on the test slices (it labels them "
                  "background): its score for that class is 0 and means nothing but that it did not learn it "
                  f"({'; '.join(blind)}).", ""]
    lines.append("")

    # The paper's layout: reproduced, the paper's values, and (real data) the differences
    layouts = [(f"{mname}{unit} in the paper's layout", _cell_grid_text, "reproduced"),
               ("The paper's values", _paper_grid_text, "paper")]
    if not synthetic:
        layouts.append(("Reproduced − paper", _delta_grid_text, "delta"))
    for heading, text, params in layouts:
        lines += [f"## {heading}", "", md_table(*_layout_table(spec, cells, grid, d, text, params)), ""]
    if any(c.extra.get("slice_filter") == "foreground" for c in cells.values()):
        lines += [f"## {mname}{unit} over every test slice", "",
                  "The same models scored over every slice of the test patients, those without a labelled "
                  "structure too (the grids above score the slices with one, as paper A's population is), "
                  "beside the reproduced values:", "",
                  md_table(*_layout_table(spec, cells, grid, d, _every_slice_text, "reproduced")), ""]

    # Detail per dataset and ratio: per class, mean, p
    for ds_label, ds in spec.datasets:
        for r_label, _ in spec.ratios:
            some = cells[(spec.rows[0].label, ds_label, r_label)]
            classes = some.classes if len(some.classes) > 1 else []  # one class: its value is the mean
            header = ["Method"] + list(classes) + ([f"Mean {mname}{unit}" if paper.metric == "dice" else
                                                    "mIoU" if paper.metric == "iou" else f"PSNR{unit}"])
            if spec.baseline is not None:
                header.append(f"p vs {spec.baseline.label}")
            body = []
            for row in spec.rows:
                c = cells[(row.label, ds_label, r_label)]
                line = [row.label] + [fmt_summary(c.per_class[k], d) for k in classes]
                line.append(fmt_summary(c.mean, d) + nothing_mark(c))
                if spec.baseline is not None:
                    line.append(fmt_p(c.test, c.is_baseline))
                body.append(line)
            if paper.metric == "psnr":  # the bar every denoiser must clear: the noisy input, scored the same way
                noisy = next((c.extra["noisy_psnr"] for c in (cells[(r.label, ds_label, r_label)] for r in spec.rows)
                              if c.extra.get("noisy_psnr")), [])
                body.append(["Noisy input (no model)"] + [""] * len(classes) + [fmt_summary(summarise(noisy), d)]
                            + ([""] if spec.baseline is not None else []))
            lines += [f"## {paper.dataset_label(ds_label)} (`{ds}`), {_ratio_heading(r_label)}", "",
                      md_table(header, body), ""]

    # Per-volume metrics beside the slice-pooled summary
    hd_units = sorted({u for c in cells.values() for u in c.extra.get("hd95_units", [])})
    if paper.metric == "psnr":
        header = ["Dataset", "Anno.", "Method", f"PSNR{unit} (slice-pooled)", f"PSNR{unit} per volume"]
    else:
        pct = " (%)" if paper.scale == 100 else ""
        header = ["Dataset", "Anno.", "Method", f"{'Mean Dice' if paper.metric == 'dice' else 'mIoU'}{pct} "
                  "(slice-pooled)", f"Dice{pct} per volume", f"IoU{pct} per volume",
                  f"HD95{' (' + '/'.join(hd_units) + ')' if hd_units else ''} per volume"]
    body = []
    for ds_label, _ in spec.datasets:
        for r_label, _ in spec.ratios:
            for row in spec.rows:
                c = cells[(row.label, ds_label, r_label)]
                line = [paper.dataset_label(ds_label), ratio_text(r_label), row.label, fmt_summary(c.mean, d)]
                if paper.metric == "psnr":
                    line.append(fmt_summary(c.volume_psnr, d))
                else:
                    line += [fmt_summary(c.volume_dice, d), fmt_summary(c.volume_iou, d),
                             fmt_summary(c.hd95, 2)]
                body.append(line)
    note = "Per-volume scores are averaged over the test volumes (then mean ± sd over seeds)"
    if paper.metric != "psnr":  # an HD95 column: say what it holds
        note += (f"; HD95 is the 95th-percentile Hausdorff distance {hd95_units_note(hd_units)}, as the metrics "
                 "files state (medssl.scoring), averaged over the classes where it is defined")
    lines += ["## Per-volume metrics", "", note + ".", "", md_table(header, body), ""]
    if missing:
        lines += ["## Missing inputs", "", f"{len(missing)} metrics file(s) were missing; their cells show "
                  f"'{DASH}' or use the seeds found:", ""] + [f"- `{m}`" for m in missing] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Entry points


def build_table(target: str, config: dict, metrics, csv_out, md_out, html_out=None, *,
                allow_missing: bool | None = None) -> dict:
    """Any table target: CSV for machines, Markdown for people, and (``html_out``) the same Markdown as an
    HTML page, which Snakemake's ``--report`` shows inline."""
    spec = table_spec(config, target, allow_missing=allow_missing)
    cells = collect_cells(spec, metrics, config=config)
    info = target_info(target)
    title, grid = info.title, info.grid
    write_csv(csv_out, csv_rows(spec, cells))
    markdown = render_markdown(spec, cells, title=title, grid=grid)
    write_text(md_out, markdown)
    if html_out is not None:
        write_text(html_out, render_html(markdown, title=title))
    return cells


def render_html(markdown_text: str, *, title: str) -> str:
    """A self-contained HTML page of a table's Markdown (pipe tables, headings, notes)."""
    import html

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    style = ("body{font-family:sans-serif;max-width:80em;margin:1em auto}table{border-collapse:collapse;"
             "margin:0.5em 0}th,td{border:1px solid #bbb;padding:0.2em 0.5em;text-align:left}"
             "th{background:#eee}blockquote{border-left:4px solid #c60;margin:0;padding:0 1em;background:#fff6ee}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n{body}\n</body></html>\n")
