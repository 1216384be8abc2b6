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

:func:`resolved_config` is the other half of the plan: the config with every default the library applies
written out (per dataset, study, run and stage, method parameters included). The workflow writes it once per
experiment as ``.snakemake/medssl/<experiment>/plan.yaml``, the one file every job reads (``--config``), and
after a successful run copies it to ``results/<experiment>/plan.yaml`` for people to read and edit (as nnU-Net
writes its plans). It is a valid config, so an edited plan runs with ``snakemake --configfile``.
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


def _no_nulls(mapping: dict) -> dict:
    """``mapping`` less its None values (the schema has no null for an absent reference or subset)."""
    return {k: v for k, v in mapping.items() if v is not None}


def _resolved_dataset(config: dict, name: str) -> dict:
    ds = cfg.dataset_settings(config, name)
    synthetic = {"patients": ds.synthetic_patients, "synthetic_scale": ds.synthetic_scale} \
        if config.get("synthetic") else {}
    return _no_nulls({**(config["datasets"].get(name) or {}), "image_size": ds.image_size,
                      "slice_axis": ds.slice_axis, "ct_window": list(ds.ct_window),
                      "mri_percentiles": list(ds.mri_percentiles), "split": dict(ds.split),
                      "scans_subset": list(ds.scans_subset) if ds.scans_subset else None, **synthetic})


def _resolved_run(config: dict, study: str, run: str) -> dict:
    rs = cfg.run_settings(config, study, run)
    stages = {"finetune": cfg.stage_settings(config, study, "finetune", run)}
    if cfg.pretraining_of(config, study, run) == (study, run):  # a run that pretrains itself
        stages = {"pretrain": cfg.stage_settings(config, study, "pretrain", run), **stages}
    return _no_nulls({**{k: v for k, v in rs.items() if k != "name"}, "params": cfg.run_params(config, study, run),
                      **stages})


def _resolved_study(config: dict, study: str) -> dict:
    block = config["studies"][study]
    options = cfg.study_options(config, study)
    if options["downstream"] != "denoising":
        options.pop("noise_sigma")  # read only by a denoising study
    return _no_nulls({
        **block, **options, "seeds": list(block.get("seeds", [0])),
        "pretrain_patients": block.get("pretrain_patients", "all"),
        "label_ratios": [str(r) for r in block.get("label_ratios", cfg.DEFAULT_LABEL_RATIOS)],
        "pretrain": cfg.stage_settings(config, study, "pretrain"),
        "finetune": cfg.stage_settings(config, study, "finetune"),
        "runs": {run: _resolved_run(config, study, run) for run in block["runs"]},
    })


def resolved_config(config: dict) -> dict:
    """The plan file's content: ``config`` (validated) with every default the library applies written out.

    Each dataset entry holds its image size, slice axis, normalisation window, split (and, for a synthetic
    config, its twin's size); each study its options (:func:`medssl.config.study_options`), seeds and stage
    blocks; each run its method parameters with the method's defaults, datasets, ratios and merged stage
    blocks (:func:`medssl.config.run_settings`, :func:`~medssl.config.stage_settings`). It is itself a valid
    config, and resolving it again changes nothing (``tests/test_plan.py``), so the jobs read it in place of the
    config (``snakemake --configfile results/<experiment>/plan.yaml`` reruns an experiment from its plan,
    edited or not). Plain values only: no tuples, no YAML anchors.
    """
    data = config["data"]
    resolved = {
        **config,
        "data": {**data, "label_ratios": cfg.label_ratios(config),
                 "normalisation": {**cfg.DEFAULT_NORMALISATION, **data.get("normalisation", {})},
                 "split": cfg.merged_split(cfg.DEFAULT_SPLIT, data.get("split", {})),
                 "synthetic": {**cfg.DEFAULT_SYNTHETIC, **data.get("synthetic", {})}},
        "datasets": {name: _resolved_dataset(config, name) for name in config["datasets"]},
        "studies": {study: _resolved_study(config, study) for study in config.get("studies") or {}},
    }
    return json.loads(json.dumps(resolved))
