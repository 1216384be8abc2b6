"""Figure builders (matplotlib, Agg backend). Sizes are fixed by the layout (``DPI`` dots per inch, no tight
bounding box), so a figure's pixel size is predictable:

- ``hssl_fig3b_tsne``: 2 rows (coloured by task, by group) x one column per feature; (3.6 * F + 1.8) x 7.4 in.
- ``hssl_fig4_domains``: one panel per task, two a row (C = min(2, T) columns, R = ceil(T / 2) rows);
  (5.2 * C + 0.4) x (4.2 * R + 1.0) in.
- ``hssl_fig5_qualitative``: one band per panel, rows = test slices, columns = image, ground truth, each
  run x ratio; ``CELL * (2 + C)`` x (sum over panels of ``CELL * R + PANEL_HEAD``, plus ``FIG_HEAD``) in.
- ``ssmtl_fig7_epochs``: 7.5 x 4.8 in.

Entry points: ``build_<target>(config, inputs, png_out, ...)``; ``inputs`` is the results folder or a list
of files (Figure 3b: the features .npz path).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from medssl.io import atomic_path  # noqa: E402
from medssl.reports.metrics_files import MetricsSource, MissingInputError, read_metrics  # noqa: E402
from medssl.reports.paper_values import paper_table  # noqa: E402
from medssl.reports.targets import epochs_spec, percent_label, qualitative_spec, table_spec, tsne_spec  # noqa: E402

DPI = 100
SYNTH = " (synthetic data)"
plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9})


# t-SNE colours: tasks in tab10's bright hues (circles), groups in tab20b's dark shades (own marker shapes), so
# no group is drawn like a task.
TASK_COLOURS = plt.get_cmap("tab10").colors
GROUP_COLOURS = tuple(plt.get_cmap("tab20b").colors[i] for i in (0, 4, 8, 12, 16))
GROUP_MARKERS = "^sDvP"


def spread_note(n_seeds: int, what: str = "bars") -> str:
    """How a figure's error bars read: sd over seeds, or none with a single seed."""
    if n_seeds <= 1:
        return f"{what}: {n_seeds} seed, no error bars"
    return f"{what}: mean over {n_seeds} seeds, error bars: sd"


def _value_axis_top(values, *, cap: float) -> float:
    """A y-axis top from 0 that shows the largest bar or marker (+15 %), at most ``cap``."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    top = max(finite, default=cap) * 1.15
    step = 10.0 if cap >= 100 else 0.1
    return float(min(cap, max(step, np.ceil(top / step) * step)))


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------
# Figure 4: TFS vs single-domain CL vs multi-domain CL vs HSSL


def build_hssl_fig4_domains(config, metrics, png_out, *, allow_missing=None, target="hssl_fig4_domains"):
    from medssl.reports.tables import collect_cells

    spec = table_spec(config, target, allow_missing=allow_missing)
    cells = collect_cells(spec, metrics, config=config)
    synthetic = any(c.synthetic for c in cells.values())
    paper = spec.paper
    same_as = paper.extra.get("same_as") or {}
    ref = paper_table(paper.paper, same_as["table"]) if same_as else None
    aliases = same_as.get("rows", {})

    n_panels = len(spec.datasets)
    n_cols = min(2, n_panels)  # two panels a row: the value labels stay readable where a report shrinks it
    n_grid_rows = -(-n_panels // n_cols)
    fig, grid = plt.subplots(n_grid_rows, n_cols, figsize=(5.2 * n_cols + 0.4, 4.2 * n_grid_rows + 1.0), dpi=DPI,
                             squeeze=False, sharey=True, layout="constrained")
    for ax in grid.flat[n_panels:]:
        ax.set_visible(False)
    axes = [list(grid.flat[:n_panels])]
    colours = plt.get_cmap("tab10").colors
    n_rows = len(spec.rows)
    width = 0.8 / n_rows
    x = np.arange(len(spec.ratios))
    text_values = paper.extra.get("text_values") or {}  # numbers the paper states in its text
    n_seeds = max((len(c.seeds) for c in cells.values()), default=0)
    drawn: list[float] = []
    for ax, (ds_label, ds) in zip(axes[0], spec.datasets):
        for i, row in enumerate(spec.rows):
            means = [cells[(row.label, ds_label, r)].mean.mean for r, _ in spec.ratios]
            sds = [cells[(row.label, ds_label, r)].mean.sd or 0.0 for r, _ in spec.ratios]
            xs = x - 0.4 + width * (i + 0.5)
            heights = [np.nan if m is None else m for m in means]
            bars = ax.bar(xs, heights, width * 0.92, yerr=sds if n_seeds > 1 else None, capsize=2,
                          color=colours[i % 10], label=row.label, error_kw={"elinewidth": 0.8})
            ax.bar_label(bars, labels=["" if m is None else f"{m:.0f}" for m in means], fontsize=8, padding=1)
            drawn += [m + sd for m, sd in zip(means, sds) if m is not None]
            ys = [np.nan] * len(spec.ratios)
            if ref is not None and row.label in aliases:
                pv = [ref.value(ds_label, r, aliases[row.label]) for r, _ in spec.ratios]
                ys = [np.nan if p is None else p.mean for p in pv]
            stated = text_values.get(str(ds_label), {})
            ys = [float(stated[str(r)][row.label]) if row.label in stated.get(str(r), {}) else y
                  for y, (r, _) in zip(ys, spec.ratios)]
            if not all(np.isnan(ys)):
                ax.scatter(xs, ys, marker="_", s=120, linewidths=2.2, color="black", zorder=3, label="paper")
                drawn += [y for y in ys if not np.isnan(y)]
        ax.set_xticks(x, [percent_label(r) for r, _ in spec.ratios])
        ax.set_title(f"{paper.dataset_label(ds_label)}\n[{ds}]", fontsize=10)
        ax.set_xlabel("Labelled training images")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylim(0, _value_axis_top(drawn, cap=100.0))  # shared y: all panels
    for row_axes in grid:
        row_axes[0].set_ylabel("Mean Dice (%), test")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"HSSL Fig. 4: single- vs multi-domain pre-training{SYNTH if synthetic else ''}\n"
                 f"{spread_note(n_seeds)}; paper: Table 2's values of the same runs and the text's", fontsize=11)
    return _save(fig, png_out)


# --------------------------------------------------------------------------------------------------
# Figure 5: qualitative comparison


def _dice(pred: np.ndarray, label: np.ndarray) -> float | None:
    scores = []
    for c in np.union1d(np.unique(label), np.unique(pred)):
        if c == 0:
            continue
        p, g = pred == c, label == c
        denom = p.sum() + g.sum()
        if denom:
            scores.append(2.0 * (p & g).sum() / denom)
    return float(np.mean(scores)) if scores else None


CELL = 1.7  # Figure 5: inches per image
PANEL_HEAD = 0.8  # Figure 5: inches per panel for its title and class legend
FIG_HEAD = 0.7  # Figure 5: inches for the figure title


def class_colour(c: int):
    """Contour colour of class id ``c`` (1-based), the same in every panel."""
    return plt.get_cmap("tab10").colors[(int(c) - 1) % 10]


def _contours(ax, image, mask, n_classes: int, *, linewidth: float = 1.2):
    """``image`` in grey with each class of ``mask`` drawn as its outline (contours read better than fills)."""
    ax.imshow(image, cmap="gray", interpolation="nearest")
    if mask is not None:
        for c in range(1, n_classes + 1):
            m = np.asarray(mask) == c
            if m.any() and not m.all():
                ax.contour(m.astype(float), levels=[0.5], colors=[class_colour(c)], linewidths=linewidth)
    ax.set_xticks([])
    ax.set_yticks([])


def _note(ax, text):
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)


def _load_preds(spec, source):
    """{(study, run, dataset, ratio): arrays of seed<N>_pred.npz}, {dataset: classes}, synthetic flags,
    missing paths."""
    preds, classes, synthetic, missing = {}, {}, [], []
    for key in spec.keys():
        path = source.path(key, "pred")
        if not source.exists(key, "pred"):
            missing.append(str(path))
            continue
        with np.load(path) as z:
            preds[key[:4]] = {k: z[k] for k in z.files}
        js = path.with_name(f"seed{spec.seed}.json")  # the evaluation's metrics beside its predictions
        if js.is_file():
            m = read_metrics(js)
            synthetic.append(bool(m.get("synthetic")))
            if m.get("classes"):
                classes.setdefault(key[2], list(m["classes"]))
    return preds, classes, synthetic, missing


def build_hssl_fig5_qualitative(config, metrics, png_out, *, allow_missing=None,
                                target="hssl_fig5_qualitative"):
    """Paper A's Figure 5: one band per panel ((a) top: methods on Task-5; (a) bottom: HSSL at each label
    ratio; (b) Task-2/-3/-6/-7; (c) UNet / UNet3+ / HSSL on Task-1), each a grid of test slices (rows, up to
    ``max_rows`` per dataset: the slices with the most foreground of different test patients, as chosen by the
    evaluation) x (image, ground truth, each run x ratio). Classes are drawn as contours over the image; the
    box gives the slice's Dice. Size: ``CELL`` x (2 + widest panel's columns) wide, the sum over panels of
    ``CELL`` x rows + ``PANEL_HEAD``, plus ``FIG_HEAD``, tall."""
    from matplotlib.lines import Line2D

    spec = qualitative_spec(config, target)
    allow = spec.allow_missing if allow_missing is None else bool(allow_missing)
    source = MetricsSource.from_inputs(config, metrics)
    preds, classes, synth_flags, missing = _load_preds(spec, source)
    if missing and (not allow or not preds):
        raise MissingInputError(target, missing)
    synthetic = any(synth_flags) if synth_flags else bool(config.get("synthetic"))
    t2 = paper_table("hssl", "table2")

    n_cols = max(2 + len(p.columns()) for p in spec.panels)
    heights = [CELL * p.max_rows * len(p.datasets) + PANEL_HEAD for p in spec.panels]
    fig = plt.figure(figsize=(CELL * n_cols, sum(heights) + FIG_HEAD), dpi=DPI, layout="constrained")
    subs = fig.subfigures(len(spec.panels), 1, height_ratios=heights, squeeze=False)[:, 0]
    for sub, panel in zip(subs, spec.panels):
        cols = panel.columns()
        axes = sub.subplots(panel.max_rows * len(panel.datasets), n_cols, squeeze=False)
        handles, names = [], []
        for d, (task, ds) in enumerate(panel.datasets):
            found = [preds[(row.study, row.run, ds, r)] for _, row, r in cols if (row.study, row.run, ds, r) in preds]
            ref = found[0] if found else None
            ref_rows = list(np.asarray(ref.get("rows", np.arange(len(ref["image"]))))) if ref else []
            n_cls = max([len(classes.get(ds, []))] + [int(max(f["label"].max(), f["pred"].max())) for f in found])
            tag = t2.dataset_label(task) if task else ds
            for c, name in enumerate(classes.get(ds) or [f"class {k}" for k in range(1, n_cls + 1)], start=1):
                handles.append(Line2D([], [], color=class_colour(c), linewidth=2))
                names.append(f"{tag}: {name}" if len(panel.datasets) > 1 else name)
            for i in range(panel.max_rows):
                line = axes[d * panel.max_rows + i]
                for ax in line[2 + len(cols):]:
                    ax.axis("off")
                if i >= len(ref_rows):
                    for ax in line[:2 + len(cols)]:
                        _note(ax, "no test slice" if ref is not None else "missing")
                    continue
                rid = ref_rows[i]
                _contours(line[0], ref["image"][i], None, n_cls)
                _contours(line[1], ref["image"][i], ref["label"][i], n_cls)
                line[0].set_ylabel(f"{tag}\n[{ds}] slice {rid}", fontsize=8)
                for ax, (_, row, r) in zip(line[2:], cols):
                    p = preds.get((row.study, row.run, ds, r))
                    if p is None:
                        _note(ax, "missing")
                        continue
                    match = np.flatnonzero(np.asarray(p.get("rows", np.arange(len(p["pred"])))) == rid)
                    if not len(match):
                        _note(ax, "slice not\npredicted")
                        continue
                    k = int(match[0])
                    _contours(ax, p["image"][k], p["pred"][k], n_cls)
                    dice = _dice(p["pred"][k], p["label"][k])
                    ax.text(0.03, 0.03, "Dice —" if dice is None else f"Dice {100 * dice:.1f}",
                            transform=ax.transAxes, color="white", fontsize=7, va="bottom",
                            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "edgecolor": "none"})
        for j, name in enumerate(["Image", "Ground truth"] + [c[0] for c in cols]):
            axes[0][j].set_title(name, fontsize=9)
        sub.suptitle(panel.title or f"{', '.join(ds for _, ds in panel.datasets)}", fontsize=10, x=0.01,
                     ha="left")
        sub.legend(handles, names, loc="outside lower center", ncol=min(len(names), 6), frameon=False,
                   fontsize=8)
    fig.suptitle(f"HSSL Fig. 5: qualitative comparison on test slices, seed {spec.seed}"
                 f"{SYNTH if synthetic else ''}\ncontours: classes of the ground truth / the prediction; "
                 f"box: Dice (%) of the slice", fontsize=10)
    return _save(fig, png_out)


# --------------------------------------------------------------------------------------------------
# Figure 3b: t-SNE of features


def build_hssl_fig3b_tsne(config, features, png_out, *, target="hssl_fig3b_tsne"):
    from medssl.reports.features import load_features, subsample, tsne_embed

    spec = tsne_spec(config, target)
    path = features if isinstance(features, (str, Path)) and not Path(features).is_dir() else spec.features
    if isinstance(features, (list, tuple)):
        path = next((Path(f) for f in features if str(f).endswith(".npz")), spec.features)
    feats, task, group, meta = load_features(path)
    synthetic = meta["synthetic"] if meta["synthetic"] is not None else bool(config.get("synthetic"))
    keep = subsample(task, spec.per_task, spec.seed)
    task_labels = meta["task_labels"] or [f"Task {t + 1}" for t in range(int(task.max()) + 1)]
    group_labels = meta["group_labels"] or [f"Group {g + 1}" for g in range(int(group.max()) + 1)]
    n_f = len(feats)
    fig, axes = plt.subplots(2, n_f, figsize=(3.6 * n_f + 1.8, 7.4), dpi=DPI, squeeze=False, layout="constrained")
    for j, (name, x) in enumerate(feats.items()):
        emb = tsne_embed(x[keep], perplexity=spec.perplexity, seed=spec.seed)
        for i, (ids, labels, colours, markers) in enumerate(((task[keep], task_labels, TASK_COLOURS, "o"),
                                                             (group[keep], group_labels, GROUP_COLOURS,
                                                              GROUP_MARKERS))):
            ax = axes[i][j]
            for c in np.unique(ids):
                sel = ids == c
                ax.scatter(emb[sel, 0], emb[sel, 1], s=8, alpha=0.75, color=colours[int(c) % len(colours)],
                           marker=markers[int(c) % len(markers)],
                           label=labels[int(c)] if int(c) < len(labels) else str(c), linewidths=0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
            ax.set_title(f"{name} — by {'task' if i == 0 else 'group'}", fontsize=10)
        for i in range(2):
            if j == n_f - 1:
                axes[i][j].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), markerscale=2.5, frameon=False,
                                  title="task" if i == 0 else "group")
    fig.suptitle(f"HSSL Fig. 3b: t-SNE of features{SYNTH if synthetic else ''}\n"
                 f"{len(keep)} images, pre-trained model {spec.study}/{spec.run}", fontsize=11)
    return _save(fig, png_out)


# --------------------------------------------------------------------------------------------------
# Figure 7: downstream mIoU against pretraining epochs


def build_ssmtl_fig7_epochs(config, metrics, png_out, *, allow_missing=None, target="ssmtl_fig7_epochs"):
    from medssl.reports.stats import summarise
    from medssl.reports.tables import summary_value

    spec = epochs_spec(config, target, allow_missing=allow_missing)
    source = MetricsSource.from_inputs(config, metrics)
    metric = {"miou": "iou", "mean_dice": "dice"}.get(spec.metric, spec.metric)
    scale = 100.0 if metric == "dice" else 1.0
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=DPI, layout="constrained")
    missing, synthetic, n_seeds = [], False, 0
    drawn: list[float] = []
    markers = "osD^v<>"
    for i, s in enumerate(spec.series):
        xs, ys, sds = [], [], []
        for epoch, row in s.points:
            vals = []
            for seed in spec.seeds[row.study]:
                key = (row.study, row.run, s.dataset, spec.ratio, seed)
                p = source.path(key)
                if not source.exists(key):
                    missing.append(str(p))
                    continue
                m = read_metrics(p)
                synthetic |= bool(m.get("synthetic"))
                v = summary_value(m, metric, list(m.get("classes") or []))
                vals.append(None if v is None else v * scale)
            sm = summarise(vals)
            n_seeds = max(n_seeds, sm.n)
            if sm.mean is not None:
                xs.append(epoch)
                ys.append(sm.mean)
                sds.append(sm.sd or 0.0)
        ax.errorbar(xs, ys, yerr=sds if n_seeds > 1 else None, marker=markers[i % len(markers)], capsize=3,
                    label=f"{s.label} [{s.dataset}]")
        drawn += [y + sd for y, sd in zip(ys, sds)]
    if missing and not spec.allow_missing:
        plt.close(fig)
        raise MissingInputError(target, missing)
    epochs = sorted({e for s in spec.series for e, _ in s.points})
    ax.set_xticks(epochs, [str(e) for e in epochs])
    ax.set_xlabel("Pre-training epochs (0 = no pre-training)")
    ax.set_ylabel("mIoU, test" if metric == "iou" else "Mean Dice (%), test")
    ax.grid(alpha=0.3)
    ax.set_ylim(0, _value_axis_top(drawn, cap=100.0 if metric == "dice" else 1.0))  # from 0: no noise as trend
    ax.legend(loc="lower right")
    ax.set_title(f"SSMTL Fig. 7: downstream {'mIoU' if metric == 'iou' else 'Dice'} vs pre-training epochs"
                 f"{SYNTH if synthetic else ''}\n{spread_note(n_seeds, 'points')}", fontsize=11)
    return _save(fig, png_out)
