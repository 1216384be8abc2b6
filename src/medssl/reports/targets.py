"""Report targets: what each table/figure needs (``required_metrics``); :mod:`medssl.reports.builders`
builds them.

The config's top-level ``reports`` block maps each target's paper names to config names::

    reports:
      hssl_table2:
        study: hssl                                  # default study of the run references
        runs: {TFS: tfs, Rotation: rotation, ...}    # paper row/column name -> run ("run" or "study/run")
        datasets: {"1": msd_heart, "3": msd_prostate, "5": msd_spleen}   # paper task/dataset -> config dataset
        ratios: ["5", "10", "100"]                   # or {paper label: split ratio key}
        seeds: [0, 1]                                # optional; default: each run's study seeds
        baseline: TFS                                # paired test reference: a row name or a run reference
        allow_missing: false                         # true: missing metrics -> "—" cells instead of an error

Rows and columns are printed in the paper's order (``config/paper_values.yaml``), names the paper does not
have after them in config order. Outputs (fixed names, relative to ``results/<exp>/``): tables
``tables/<target>.csv``, ``.md`` and ``.html``; figures ``figures/<target>.png``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medssl.config import ConfigError
from medssl.reports.metrics_files import Key, metrics_path
from medssl.reports.paper_values import PaperTable, paper_table
from medssl.layout import Layout


@dataclass(frozen=True)
class TargetInfo:
    """One report target: everything about it but its config block and its paper values."""

    name: str
    kind: str  # table | datasets | bars | qualitative | tsne | epochs (medssl.reports.builders: which builder)
    paper: str
    table: str  # key under paper_values' tables
    outputs: tuple[str, ...]
    title: str = ""  # tables: the heading of the Markdown/HTML (figures title themselves)
    grid: str = "method_rows"  # tables: ratio_rows (a row per dataset x ratio) | method_rows (a row per method)

    @property
    def is_table(self) -> bool:
        """A table (CSV, Markdown, HTML) rather than a figure (PNG)."""
        return self.kind in TABLE_KINDS


TABLE_KINDS = ("table", "datasets")  # datasets: paper A's Table 1, read from the stores (medssl.reports.datasets)


def _t(name, kind, paper, table, title="", grid="method_rows"):
    outs = ((f"tables/{name}.csv", f"tables/{name}.md", f"tables/{name}.html") if kind in TABLE_KINDS
            else (f"figures/{name}.png",))
    return TargetInfo(name, kind, paper, table, outs, title, grid)


TARGETS: dict[str, TargetInfo] = {t.name: t for t in (
    _t("hssl_table1", "datasets", "hssl", "table1", "HSSL Table 1: the aggregated multi-domain dataset"),
    _t("hssl_table2", "table", "hssl", "table2", "HSSL Table 2: Dice (%) of pre-training methods on Task-1/-3/-5",
       "ratio_rows"),
    _t("hssl_table3", "table", "hssl", "table3", "HSSL Table 3: Dice (%) of different models on Task-1/-3/-5"),
    _t("hssl_table4", "table", "hssl", "table4", "HSSL Table 4: ablation of the loss functions, 5% labels"),
    _t("hssl_fig3b_tsne", "tsne", "hssl", "figure3b"),
    _t("hssl_fig4_domains", "bars", "hssl", "figure4"),
    _t("hssl_fig5_qualitative", "qualitative", "hssl", "figure5"),
    _t("ssmtl_table2", "table", "ssmtl", "table2", "SSMTL Table 2: IoU on axial CT, U-Net"),
    _t("ssmtl_table3", "table", "ssmtl", "table3", "SSMTL Table 3: IoU on sagittal MRI, U-Net"),
    _t("ssmtl_table4", "table", "ssmtl", "table4", "SSMTL Table 4: IoU on CT, ResNet-FCN"),
    _t("ssmtl_table5", "table", "ssmtl", "table5", "SSMTL Table 5: IoU on sagittal MRI, ResNet-FCN"),
    _t("ssmtl_table6", "table", "ssmtl", "table6", "SSMTL Table 6: denoising PSNR (dB) on CT"),
    _t("ssmtl_fig7_epochs", "epochs", "ssmtl", "figure7"),
)}

DEFAULT_BASELINES = ("TFS", "w/o pre-training", "U-Net: w/o pre-training")


# --------------------------------------------------------------------------------------------------
# Resolved specs


@dataclass(frozen=True)
class Row:
    label: str  # paper name
    study: str
    run: str

    @property
    def ref(self) -> str:
        return f"{self.study}/{self.run}"


@dataclass
class TableSpec:
    target: str
    paper: PaperTable
    rows: list[Row]
    datasets: list[tuple[str, str]]  # (paper label, config dataset)
    ratios: list[tuple[str, str]]  # (paper label, split ratio key)
    seeds: dict[str, list[int]]  # study -> seeds
    baseline: Row | None = None
    allow_missing: bool = False
    extra: dict = field(default_factory=dict)

    def seeds_of(self, row: Row) -> list[int]:
        return self.seeds[row.study]

    def keys(self, row: Row, dataset: str, ratio: str) -> list[Key]:
        return [(row.study, row.run, dataset, ratio, s) for s in self.seeds_of(row)]


def target_info(target: str) -> TargetInfo:
    if target not in TARGETS:
        raise KeyError(f"unknown report target {target!r}; known: {', '.join(TARGETS)}")
    return TARGETS[target]


def target_config(config: dict, target: str) -> dict:
    target_info(target)
    block = (config.get("reports") or {}).get(target)
    if block is None:
        raise ConfigError(f"config key 'reports/{target}': not configured (add it to build this target)")
    return block


def studies_named(block) -> set[str]:
    """Studies a report block refers to: its ``study`` and every 'study/run' reference inside it."""
    found: set[str] = set()
    if isinstance(block, dict):
        if isinstance(block.get("study"), str):
            found.add(block["study"])
        for v in block.values():
            found |= studies_named(v)
    elif isinstance(block, list):
        for v in block:
            found |= studies_named(v)
    elif isinstance(block, str) and "/" in block:
        found.add(block.split("/", 1)[0])
    return found


def configured_targets(config: dict) -> list[str]:
    """Targets that the config's ``reports`` block defines, in :data:`TARGETS` order."""
    block = config.get("reports") or {}
    return [t for t in TARGETS if t in block]


def outputs(config: dict, target: str) -> list[Path]:
    """Output paths of ``target`` under ``results/<exp>/``."""
    return [Layout.of(config).output(o) for o in target_info(target).outputs]


def parse_run_ref(ref: str, default_study: str | None, where: str) -> tuple[str, str]:
    if "/" in ref:
        study, run = ref.split("/", 1)
    elif default_study:
        study, run = default_study, ref
    else:
        raise ConfigError(f"config key '{where}': run {ref!r} needs 'study/run' or the target's 'study'")
    return study, run


def _check_run(config: dict, study: str, run: str, where: str) -> None:
    studies = config.get("studies") or {}
    if study not in studies:
        raise ConfigError(f"config key '{where}': unknown study {study!r}")
    if run not in studies[study]["runs"]:
        raise ConfigError(f"config key '{where}': study {study!r} has no run {run!r}")


def _check_dataset(config: dict, ds: str, where: str) -> None:
    if ds not in config["datasets"]:
        raise ConfigError(f"config key '{where}': dataset {ds!r} is not listed under 'datasets'")


def _paper_sorted(items: list, known: list[str], key=lambda x: x) -> list:
    """Names the paper has first, in the paper's order; the others after them in their given order."""
    order = {name: i for i, name in enumerate(known)}
    return sorted(items, key=lambda it: (0, order[key(it)]) if key(it) in order else (1, items.index(it)))


def _ratio_sort(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    def k(p):
        try:
            return (0, float(p[0]), "")
        except ValueError:
            return (1, 0.0, p[0])
    return sorted(pairs, key=k)


def _ratios(block: dict, where: str) -> list[tuple[str, str]]:
    r = block.get("ratios")
    if r is None:
        raise ConfigError(f"config key '{where}/ratios': required")
    pairs = [(str(k), str(v)) for k, v in r.items()] if isinstance(r, dict) else [(str(x), str(x)) for x in r]
    return _ratio_sort(pairs)


def _seeds(config: dict, block: dict, studies: set[str]) -> dict[str, list[int]]:
    out = {}
    for s in studies:
        seeds = block.get("seeds", config["studies"][s]["seeds"])
        out[s] = [int(x) for x in seeds]
    return out


def table_spec(config: dict, target: str, *, allow_missing: bool | None = None) -> TableSpec:
    """Resolve ``reports/<target>`` of a table-like target (tables and the Figure 4 bars)."""
    info = target_info(target)
    if info.kind not in ("table", "bars"):
        raise ValueError(f"{target} is not a table-like target")
    block = target_config(config, target)
    where = f"reports/{target}"
    paper = paper_table(info.paper, info.table)
    study = block.get("study")
    rows = []
    for label, ref in (block.get("runs") or {}).items():
        s, r = parse_run_ref(str(ref), study, f"{where}/runs/{label}")
        _check_run(config, s, r, f"{where}/runs/{label}")
        rows.append(Row(str(label), s, r))
    if not rows:
        raise ConfigError(f"config key '{where}/runs': at least one run is required")
    rows = _paper_sorted(rows, list(paper.rows), key=lambda row: row.label)
    datasets = [(str(k), str(v)) for k, v in (block.get("datasets") or {}).items()]
    if not datasets:
        raise ConfigError(f"config key '{where}/datasets': at least one dataset is required")
    for label, ds in datasets:
        _check_dataset(config, ds, f"{where}/datasets/{label}")
    datasets = _paper_sorted(datasets, paper.dataset_order(), key=lambda p: p[0])
    ratios = _ratios(block, where)
    baseline = None
    base = block.get("baseline", "__default__")
    if base == "__default__":
        base = next((r.label for r in rows if r.label in DEFAULT_BASELINES), None)
    if base is not None:
        match = [r for r in rows if r.label == base]
        if match:
            baseline = match[0]
        else:
            s, r = parse_run_ref(str(base), study, f"{where}/baseline")
            _check_run(config, s, r, f"{where}/baseline")
            same = [row for row in rows if (row.study, row.run) == (s, r)]
            method = config["studies"][s]["runs"][r]["method"]
            baseline = same[0] if same else Row(f"TFS ({s}/{r})" if method == "tfs" else f"{s}/{r}", s, r)
    studies = {r.study for r in rows} | ({baseline.study} if baseline else set())
    am = block.get("allow_missing", (config.get("reports") or {}).get("allow_missing", False))
    return TableSpec(target=target, paper=paper, rows=rows, datasets=datasets, ratios=ratios,
                     seeds=_seeds(config, block, studies), baseline=baseline,
                     allow_missing=bool(am if allow_missing is None else allow_missing))


@dataclass
class QualitativePanel:
    """One panel of Figure 5: every run x ratio of it (columns) on test slices of each dataset (rows)."""

    title: str
    rows: list[Row]  # the runs, in the paper's order
    datasets: list[tuple[str, str]]  # (paper task id, config dataset)
    ratios: list[str]  # split ratio keys
    max_rows: int  # test slices shown per dataset

    def columns(self) -> list[tuple[str, Row, str]]:
        """(column title, run, ratio) in drawing order: runs outer, ratios inner."""
        many = len(self.ratios) > 1
        return [(f"{row.label}, {percent_label(r)}" if many else row.label, row, r) for row in self.rows for r in self.ratios]


def percent_label(ratio: str) -> str:
    """A label ratio as people read it: '5' -> '5%'; other split keys ('scans') unchanged."""
    try:
        float(ratio)
        return f"{ratio}%"
    except ValueError:
        return ratio


@dataclass
class QualitativeSpec:
    """Figure 5 (paper A): panels drawn top to bottom, all from one finetuning seed.

    Config (``reports/hssl_fig5_qualitative``): ``panels: {title: {runs, datasets, ratios[, max_rows,
    study]}}`` with ``seed``, ``max_rows``, ``study`` and ``allow_missing`` defaults at the top; or the
    single-panel form ``runs`` + ``dataset`` + ``ratio`` (one panel, the paper's (a)-top).
    """

    target: str
    panels: list[QualitativePanel]
    seed: int
    allow_missing: bool

    def keys(self) -> list[Key]:
        keys = [(row.study, row.run, ds, ratio, self.seed)
                for p in self.panels for _, ds in p.datasets for _, row, ratio in p.columns()]
        return list(dict.fromkeys(keys))


def _fig5_rows(config: dict, runs: dict, study: str | None, where: str) -> list[Row]:
    rows = []
    for label, ref in (runs or {}).items():
        s, r = parse_run_ref(str(ref), study, f"{where}/runs/{label}")
        _check_run(config, s, r, f"{where}/runs/{label}")
        rows.append(Row(str(label), s, r))
    if not rows:
        raise ConfigError(f"config key '{where}/runs': at least one run is required")
    # the paper's order: Table 2's (methods) or, for a panel of models, Table 3's (UNet, UNet3+, HSSL)
    orders = [list(paper_table("hssl", t).rows) for t in ("table2", "table3")]
    known = next((o for o in orders if {r.label for r in rows} <= set(o)), orders[0])
    return _paper_sorted(rows, known, key=lambda row: row.label)


def qualitative_spec(config: dict, target: str = "hssl_fig5_qualitative") -> QualitativeSpec:
    block = target_config(config, target)
    where = f"reports/{target}"
    study = block.get("study")
    max_rows = int(block.get("max_rows", 2))
    if "panels" in block:
        raw = {str(t): p for t, p in block["panels"].items()}
    else:  # single-panel form
        if not block.get("dataset"):
            raise ConfigError(f"config key '{where}/dataset': required (or give 'panels')")
        raw = {"": {"runs": block.get("runs"), "datasets": {"": block["dataset"]},
                    "ratios": [str(block.get("ratio", "10"))]}}
    panels = []
    for title, p in raw.items():
        pw = f"{where}/panels/{title}" if title else where
        rows = _fig5_rows(config, p.get("runs"), p.get("study", study), pw)
        datasets = [(str(k), str(v)) for k, v in (p.get("datasets") or {}).items()]
        if not datasets:
            raise ConfigError(f"config key '{pw}/datasets': at least one dataset is required")
        ratios = [str(r) for r in p.get("ratios") or []]
        if not ratios:
            raise ConfigError(f"config key '{pw}/ratios': at least one ratio is required")
        for _, ds in datasets:
            _check_dataset(config, ds, f"{pw}/datasets")
        panels.append(QualitativePanel(title, rows, datasets, ratios, int(p.get("max_rows", max_rows))))
    seed = block.get("seed")
    if seed is None:
        seed = config["studies"][panels[0].rows[0].study]["seeds"][0]
    am = block.get("allow_missing", (config.get("reports") or {}).get("allow_missing", False))
    return QualitativeSpec(target, panels, int(seed), bool(am))


@dataclass
class EpochSeries:
    label: str
    dataset: str
    points: list[tuple[int, Row]]  # (pretraining epochs, run finetuned from that checkpoint)


@dataclass
class EpochsSpec:
    target: str
    series: list[EpochSeries]
    ratio: str
    seeds: dict[str, list[int]]
    allow_missing: bool
    metric: str


def epochs_spec(config: dict, target: str = "ssmtl_fig7_epochs", *, allow_missing: bool | None = None
                ) -> EpochsSpec:
    block = target_config(config, target)
    where = f"reports/{target}"
    study = block.get("study")
    series = []
    for label, s in (block.get("series") or {}).items():
        ds = s.get("dataset")
        _check_dataset(config, ds, f"{where}/series/{label}/dataset")
        pts = []
        for epoch, ref in (s.get("runs") or {}).items():
            st, r = parse_run_ref(str(ref), s.get("study", study), f"{where}/series/{label}/runs/{epoch}")
            _check_run(config, st, r, f"{where}/series/{label}/runs/{epoch}")
            pts.append((int(epoch), Row(f"{label} @ {epoch}", st, r)))
        if not pts:
            raise ConfigError(f"config key '{where}/series/{label}/runs': at least one epoch is required")
        series.append(EpochSeries(str(label), ds, sorted(pts, key=lambda p: p[0])))
    if not series:
        raise ConfigError(f"config key '{where}/series': at least one series is required")
    studies = {row.study for s in series for _, row in s.points}
    am = block.get("allow_missing", (config.get("reports") or {}).get("allow_missing", False))
    return EpochsSpec(target, series, str(block.get("ratio", "scans")), _seeds(config, block, studies),
                      bool(am if allow_missing is None else allow_missing), str(block.get("metric", "miou")))


def datasets_spec(config: dict, target: str = "hssl_table1") -> list[tuple[str, str]]:
    """``reports/<target>/datasets`` of a dataset table: (paper task id, config dataset) in task order."""
    where = f"reports/{target}/datasets"
    pairs = [(str(k), str(v)) for k, v in (target_config(config, target).get("datasets") or {}).items()]
    if not pairs:
        raise ConfigError(f"config key '{where}': at least one dataset is required")
    for _, ds in pairs:
        _check_dataset(config, ds, where)
    return _ratio_sort(pairs)  # numeric task ids in order, other labels after them


@dataclass
class TsneSpec:
    target: str
    study: str
    run: str
    features: Path
    per_task: int
    perplexity: float
    seed: int
    generic: str = "vgg19"  # Figure 3b's first panel: vgg19 (the paper's) or pixels


def tsne_spec(config: dict, target: str = "hssl_fig3b_tsne") -> TsneSpec:
    block = target_config(config, target)
    where = f"reports/{target}"
    study, run = parse_run_ref(str(block.get("run", "hssl")), block.get("study"), f"{where}/run")
    _check_run(config, study, run, f"{where}/run")
    default = Layout.of(config).features(study, run)
    return TsneSpec(target, study, run, Path(block.get("features", default)), int(block.get("per_task", 100)),
                    float(block.get("perplexity", 30.0)), int(block.get("seed", 0)), str(block.get("generic", "vgg19")))


# --------------------------------------------------------------------------------------------------
# What a target needs


def required_metrics(config: dict, target: str) -> list[Key]:
    """The (study, run, dataset, ratio, seed) evaluations ``target`` reads, without duplicates, in order.

    Tables, Figure 4 and Figure 7 read ``seed<N>.json``; Figure 5 reads ``seed<N>_pred.npz`` (written by the
    same evaluation job); Figure 3b reads no metrics (see :func:`required_files`).
    """
    kind = target_info(target).kind
    keys: list[Key] = []
    if kind in ("table", "bars"):
        spec = table_spec(config, target)
        rows = list(spec.rows) + ([spec.baseline] if spec.baseline and spec.baseline not in spec.rows else [])
        for _, ds in spec.datasets:
            for _, ratio in spec.ratios:
                for row in rows:
                    keys += spec.keys(row, ds, ratio)
    elif kind == "qualitative":
        keys = qualitative_spec(config, target).keys()
    elif kind == "epochs":
        e = epochs_spec(config, target)
        for s in e.series:
            for _, row in s.points:
                keys += [(row.study, row.run, s.dataset, e.ratio, seed) for seed in e.seeds[row.study]]
    return list(dict.fromkeys(keys))


def required_files(config: dict, target: str) -> list[Path]:
    """The input files of ``target`` (paths under ``results/<exp>/``), for the Snakefile's ``input:``."""
    kind = target_info(target).kind
    if kind == "tsne":
        return [tsne_spec(config, target).features]
    if kind == "datasets":  # each dataset's slice store (a folder) and split file
        layout = Layout.of(config)
        return [p for _, ds in datasets_spec(config, target) for p in (layout.store(ds), layout.split(ds))]
    file_kind = "pred" if kind == "qualitative" else "json"
    return [metrics_path(config, k, file_kind) for k in required_metrics(config, target)]


def check_reports(config: dict) -> None:
    """Resolve every configured target (raises :class:`ConfigError` naming the bad key)."""
    for t in configured_targets(config):
        required_files(config, t)
