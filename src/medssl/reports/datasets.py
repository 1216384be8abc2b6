"""Paper A's Table 1, the aggregated multi-domain dataset, as this run built it.

One row per dataset of ``reports/hssl_table1/datasets`` (paper task id -> config dataset), read only from the
job's inputs: each dataset's slice store (``meta.json``: task, group, ROI, modality, classes, source, Table 1's
count; ``index.csv``: slices, slices with foreground, the sample, :func:`medssl.data.store.draw_sample`) and its
split file (patients per split). Besides the paper's columns it shows the store's own counts, so a release
that differs from the paper's (or a sample that could not reach Table 1's count) is visible on the table;
the sample's slices per split show that they follow the patient split. Phantom twins give the demo's own
counts and the table says so.
"""

from __future__ import annotations

import json
from pathlib import Path

from medssl.data.store import SliceStore
from medssl.io import write_text
from medssl.reports.tables import md_table, render_html, write_csv
from medssl.reports.targets import datasets_spec, target_info

SPLITS = ("train", "val", "test")
CSV_FIELDS = ["target", "synthetic", "task", "group", "dataset", "roi_type", "classes", "table1_slices", "slices",
              "foreground_slices", "sampled_slices", *(f"patients_{s}" for s in SPLITS),
              *(f"sampled_{s}" for s in SPLITS), "source"]


def _read_inputs(inputs) -> tuple[dict[str, SliceStore], dict[str, dict]]:
    """The stores (folders) and split files (``.json``) among ``inputs``, each by the dataset it names."""
    stores, splits = {}, {}
    for path in map(Path, inputs):
        if path.is_dir():
            store = SliceStore(path)
            stores[store.meta["dataset"]] = store
        else:
            with open(path) as f:
                split = json.load(f)
            splits[split["dataset"]] = split
    return stores, splits


def dataset_row(target: str, label: str, store: SliceStore, split: dict) -> dict:
    """The CSV row of one dataset (``label``: its paper task id)."""
    meta, index = store.meta, store.index
    sampled = store.sampled
    patients = {s: split["patients"].get(s, []) for s in SPLITS}
    in_split = {s: index["patient"].isin(p).to_numpy() for s, p in patients.items()}
    group = meta.get("group")
    return {
        "target": target, "synthetic": str(bool(meta.get("synthetic"))).lower(), "task": label,
        "group": "" if group is None else group, "dataset": meta["dataset"],
        "roi_type": f"{str(meta.get('roi') or meta['dataset']).capitalize()}-{meta['modality']}",
        "classes": ", ".join(f"{k}: {c}" for k, c in enumerate(meta["classes"], 1)),
        "table1_slices": meta.get("paper_slices") or "", "slices": len(index),
        "foreground_slices": int(index["fg"].astype(bool).sum()), "sampled_slices": int(sampled.sum()),
        **{f"patients_{s}": len(p) for s, p in patients.items()},
        **{f"sampled_{s}": int((sampled & in_split[s]).sum()) for s in SPLITS},
        "source": meta.get("reference") or meta.get("title", ""),
    }


def _total(rows: list[dict], key: str) -> int | str:
    values = [r[key] for r in rows]
    return sum(values) if values and all(isinstance(v, int) for v in values) else ""


def render_markdown(rows: list[dict], *, title: str) -> str:
    synthetic = any(r["synthetic"] == "true" for r in rows)
    lines = [f"# {title}{' — synthetic data' if synthetic else ''}", ""]
    if synthetic:
        lines += ["> **Synthetic data.** The slice and patient counts are those of the demo's phantom twins "
                  "(written in the datasets' own layout); Table 1's column gives the paper's counts for reference.",
                  ""]
    lines += ["Paper: details of the data from public sources; the left two columns are the task and group "
              "classes of the aggregation (task and group labels of L_task and L_group).", "",
              "**Table 1** is the paper's slice count; **slices** counts every slice of this store along its "
              "slicing axis. **Foreground** counts this store's slices with a labelled "
              "structure; **sample** is what the jobs use: `datasets.<name>.sample_slices` of them (config/paper.yaml: "
              "Table 1's count) drawn before the patient split, spread over the patients in proportion to their "
              "slices with foreground, seeded; all of them without `sample_slices`. Patients and sampled slices "
              "are given per split (train/val/test).", ""]
    header = ["Task ID", "Group ID", "ROI-Type", "Segmentation class", "Table 1", "Slices", "Foreground", "Sample",
              "Patients (train/val/test)", "Sample (train/val/test)", "Source"]
    body = [[r["task"], r["group"], r["roi_type"], r["classes"], r["table1_slices"] or "—", r["slices"],
             r["foreground_slices"], r["sampled_slices"], "/".join(str(r[f"patients_{s}"]) for s in SPLITS),
             "/".join(str(r[f"sampled_{s}"]) for s in SPLITS), r["source"]] for r in rows]
    body.append(["**All**", "", "", "", _total(rows, "table1_slices") or "—", _total(rows, "slices"),
                 _total(rows, "foreground_slices"),
                 _total(rows, "sampled_slices"), "/".join(str(_total(rows, f"patients_{s}")) for s in SPLITS),
                 "/".join(str(_total(rows, f"sampled_{s}")) for s in SPLITS), ""])
    return "\n".join(lines + [md_table(header, body), ""])


def build_hssl_table1(target: str, config: dict, inputs, csv_out, md_out, html_out=None) -> list[dict]:
    """Paper A's Table 1 from the stores and split files in ``inputs`` (module docstring)."""
    stores, splits = _read_inputs(inputs)
    rows = []
    for label, dataset in datasets_spec(config, target):
        if dataset not in stores or dataset not in splits:
            raise FileNotFoundError(f"{target}: the inputs hold no {'slice store' if dataset not in stores else 'split file'} "
                                    f"of dataset {dataset!r}")
        rows.append(dataset_row(target, label, stores[dataset], splits[dataset]))
    title = target_info(target).title
    write_csv(csv_out, rows, CSV_FIELDS)
    markdown = render_markdown(rows, title=title)
    write_text(md_out, markdown)
    if html_out is not None:
        write_text(html_out, render_html(markdown, title=title))
    return rows
