"""The experiment grid, expanded once from the config: what ``snakemake all`` builds and every job it needs.

:meth:`Plan.of` resolves the config's report targets (``reports:``) and the studies no report names (each
gets a generic summary reading its whole grid, :mod:`medssl.reports.summary`) into:

* ``inputs``: the files each report target reads (metrics JSONs, ``_pred.npz`` for Figure 5, the features
  ``.npz`` for Figure 3b), paths from :class:`~medssl.layout.Layout`;
* ``evaluations``: one finetuning job (which also evaluates) per (study, run, dataset, ratio, seed) read;
* ``features``: one t-SNE feature job per (study, run) whose features file the workflow makes;
* ``pretrains``: one pretraining job per (study, run, pool) those need (:func:`medssl.config.pretraining_of`:
  none for ``tfs``, another run's for ``pretrain_run``; pool ``all`` for ``domain: multi``, else the dataset).

The workflow's input functions (``workflow/rules/common.smk``) and the cost estimate (:mod:`medssl.cost`) both
read this one expansion; ``tests/test_cost.py`` checks its job counts against ``snakemake -n``.

:func:`resolved_settings` is the other half of the plan: every setting a job reads, with all defaults
applied, per dataset, study and run. The workflow writes it beside the job config and, after a successful
run, as ``results/<experiment>/plan.yaml``, for people to read (as nnU-Net writes its plans); the jobs
resolve their settings through the same functions (:mod:`medssl.config`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medssl import config as cfg
from medssl.layout import Layout

Key = tuple[str, str, str, str, int]  # study, run, dataset, ratio, seed


@dataclass(frozen=True)
class Plan:
    """One config's grid (module docstring)."""

    layout: Layout
    datasets: tuple[str, ...]
    reports: tuple[str, ...]  # configured report targets
    summaries: tuple[str, ...]  # studies with a generic summary
    inputs: dict[str, tuple[Path, ...]]  # report target or "summary_<study>" -> the files it reads
    evaluations: tuple[Key, ...]
    features: tuple[tuple[str, str], ...]
    pretrains: tuple[tuple[str, str, str], ...]

    @classmethod
    def of(cls, config: dict) -> Plan:
        from medssl.reports import summary as report_summary
        from medssl.reports import targets as report_targets

        layout = Layout.of(config)
        reports = report_targets.configured_targets(config)
        summaries = report_summary.summary_studies(config)
        inputs: dict[str, tuple[Path, ...]] = {}
        keys: list[Key] = []
        features: list[tuple[str, str]] = []
        for target in reports:
            if report_targets.target_info(target).kind == "tsne":
                spec = report_targets.tsne_spec(config, target)
                inputs[target] = (Path(spec.features),)
                if Path(spec.features) == layout.features(spec.study, spec.run):  # else a file of the user's
                    features.append((spec.study, spec.run))
                continue
            read = [tuple(k) for k in report_targets.required_metrics(config, target)]
            pred = report_targets.target_info(target).kind == "qualitative"  # Figure 5 reads the predictions
            inputs[target] = tuple(layout.predictions(layout.metrics(*k)) if pred else layout.metrics(*k)
                                   for k in read)
            keys += read
        for study in summaries:
            seeds = config["studies"][study].get("seeds", [0])
            read = [(study, run, d, r, int(s)) for run, d, r in report_summary.study_grid(config, study)
                    for s in seeds]
            inputs[f"summary_{study}"] = tuple(layout.metrics(*k) for k in read)
            keys += read
        keys = list(dict.fromkeys(keys))
        pretrains = []
        for study, run, dataset, _, _ in keys:
            source = cfg.pretraining_of(config, study, run)
            if source is not None:
                pretrains.append((*source, cfg.pretrain_pool(config, *source, dataset)))
        features = list(dict.fromkeys(features))
        pretrains += [(study, run, cfg.features_pool(config, study, run)) for study, run in features]
        return cls(layout, tuple(config["datasets"]), tuple(reports), tuple(summaries), inputs, tuple(keys),
                   tuple(features), tuple(dict.fromkeys(pretrains)))

    def outputs_of(self, target: str) -> list[Path]:
        """The files of one report target (a table's CSV, Markdown and HTML; a figure's PNG)."""
        from medssl.reports import targets as report_targets

        return [self.layout.output(p) for p in report_targets.target_info(target).outputs]

    def report_files(self) -> list[Path]:
        """Every table and figure: the configured targets' and the generic summaries'."""
        from medssl.reports import summary as report_summary

        files = [p for t in self.reports for p in self.outputs_of(t)]
        return files + [self.layout.output(p) for s in self.summaries for p in report_summary.summary_outputs(s)]

    def targets(self) -> list[Path]:
        """What ``snakemake all`` asks for: every split, table and figure."""
        return [self.layout.split(d) for d in self.datasets] + self.report_files()


def resolved_settings(config: dict) -> dict:
    """The resolved settings of every dataset, study and run (module docstring): plain YAML-able values."""
    datasets = {}
    for name in config["datasets"]:
        ds = cfg.dataset_settings(config, name)
        datasets[name] = {
            "title": ds.spec.title, "modality": ds.spec.modality, "classes": ds.spec.class_names,
            "image_size": ds.image_size, "slice_axis": ds.slice_axis, "ct_window": list(ds.ct_window),
            "mri_percentiles": list(ds.mri_percentiles), "split": dict(ds.split),
            "scans_subset": list(ds.scans_subset) if ds.scans_subset else None,
            **({"synthetic": {"patients": ds.synthetic_patients, "scale": ds.synthetic_scale,
                              "seed": ds.synthetic_seed}} if config.get("synthetic") else {}),
        }
    studies = {}
    for study, block in (config.get("studies") or {}).items():
        runs = {}
        for run in block["runs"]:
            rs = cfg.run_settings(config, study, run)
            source = cfg.pretraining_of(config, study, run)
            stages = {"finetune": cfg.stage_settings(config, study, "finetune", run)}
            if source == (study, run):  # a run that pretrains itself (not tfs, not another run's model)
                stages = {"pretrain": cfg.stage_settings(config, study, "pretrain", run), **stages}
            runs[run] = {**{k: v for k, v in rs.items() if k != "name"},
                         "pretrained_by": "/".join(source) if source else None, **stages}
        studies[study] = {"options": cfg.study_options(config, study), "seeds": list(block.get("seeds", [0])),
                          "pretrain_datasets": list(block["pretrain_datasets"]), "runs": runs}
    resolved = {"experiment": config["experiment"], "synthetic": bool(config.get("synthetic", False)),
                "device": config.get("device", "auto"), "model_width": float(config.get("model_width", 1.0)),
                "datasets": datasets, "studies": studies}
    return json.loads(json.dumps(resolved))  # plain values, no shared objects (no YAML anchors)
