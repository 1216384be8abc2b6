"""The papers' reference numbers (:data:`PAPER_VALUES_PATH`), normalised for lookup.

The YAML ships inside the package (``medssl/package_data/paper_values.yaml``, a link to
``config/paper_values.yaml`` in the repository, copied into wheels).

Every value comes back as ``PaperValue(mean, classes)`` in the paper's units (paper A Dice in percent,
paper B IoU as fractions, PSNR in dB); ``classes`` maps class name -> value where the paper gives them
(a single-class dataset's class value is its mean).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml

PAPER_VALUES_PATH: Path = files("medssl") / "package_data" / "paper_values.yaml"


@dataclass(frozen=True)
class PaperValue:
    mean: float
    classes: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PaperTable:
    paper: str
    table: str
    caption: str
    metric: str
    unit: str
    scale: float
    decimals: int
    rows: tuple[str, ...]
    datasets: dict  # dataset label -> {"label": display, "classes": [...]}
    values: dict  # dataset label -> ratio label -> row -> PaperValue
    extra: dict

    def value(self, dataset: str, ratio: str, row: str) -> PaperValue | None:
        return self.values.get(str(dataset), {}).get(str(ratio), {}).get(row)

    def dataset_label(self, dataset: str) -> str:
        return self.datasets.get(str(dataset), {}).get("label", str(dataset))

    def dataset_order(self) -> list[str]:
        return list(self.datasets)


def _normalise(value, classes: list[str]) -> PaperValue:
    if isinstance(value, (int, float)):
        return PaperValue(float(value), {classes[0]: float(value)} if len(classes) == 1 else {})
    per_class = value.get("classes") or []
    if per_class and len(per_class) != len(classes):
        raise ValueError(f"paper value {value!r}: {len(per_class)} class values for classes {classes}")
    return PaperValue(float(value["mean"]), {c: float(v) for c, v in zip(classes, per_class)})


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def load_paper_values(path: str | Path | None = None) -> dict:
    """The raw YAML (cached)."""
    return _load(str(path or PAPER_VALUES_PATH))


def paper_table(paper: str, table: str, path: str | Path | None = None) -> PaperTable:
    raw = load_paper_values(path)
    if paper not in raw or table not in raw[paper].get("tables", {}):
        raise KeyError(f"{path or PAPER_VALUES_PATH}: no table {paper}/{table}")
    p = raw[paper]
    t = p["tables"][table]
    datasets = {str(k): v for k, v in p.get("datasets", {}).items()}
    values: dict = {}
    for ds, by_ratio in (t.get("values") or {}).items():
        classes = list(datasets.get(str(ds), {}).get("classes", []))
        values[str(ds)] = {str(r): {row: _normalise(v, classes) for row, v in rows.items()}
                           for r, rows in by_ratio.items()}
    extra = {k: v for k, v in t.items() if k not in {"caption", "metric", "unit", "scale", "decimals", "rows",
                                                       "values"}}
    return PaperTable(
        paper=paper, table=table, caption=t.get("caption", ""), metric=t.get("metric", p["metric"]),
        unit=t.get("unit", p["unit"]), scale=float(t.get("scale", p.get("scale", 1))),
        decimals=int(t.get("decimals", p.get("decimals", 3))), rows=tuple(t.get("rows") or ()),
        datasets=datasets, values=values, extra=extra,
    )
