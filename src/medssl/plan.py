"""The experiment grid, expanded once from the config: what ``snakemake all`` builds and every job it needs.

:meth:`Plan.of` resolves the config's report targets (``reports:``) and the studies no report names (each
gets a generic summary reading its whole grid, :mod:`medssl.reports.summary`) into:

* ``inputs``: the files each report target reads (metrics JSONs, ``_pred.npz`` for Figure 5, the features
  ``.npz`` for Figure 3b, slice stores and split files for paper A's Table 1), paths from
  :class:`~medssl.layout.Layout`;
* ``evaluations``: one finetuning job (which also evaluates) per (study, run, dataset, ratio, seed) read;
* ``features``: one t-SNE feature job per (study, run) whose features file the workflow makes;
* ``pretrains``: one pretraining job per (study, run, pool) those need (:func:`medssl.config.pretraining_of`:
  none for ``tfs``, another run's for ``pretrain_run``; pool ``all`` for ``domain: multi``, else the dataset).

The workflow's input functions (``workflow/rules/common.smk``) and the cost estimate (:mod:`medssl.cost`) both
read this one expansion of the resolved config (:func:`medssl.config.resolve`); ``tests/test_cost.py``
checks its job counts against ``snakemake -n``.
"""

from __future__ import annotations

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
            if report_targets.target_info(target).kind == "datasets":  # Table 1: stores and split files
                inputs[target] = tuple(report_targets.required_files(config, target))
                continue
            read = [tuple(k) for k in report_targets.required_metrics(config, target)]
            pred = report_targets.target_info(target).kind == "qualitative"  # Figure 5 reads the predictions
            inputs[target] = tuple(layout.predictions(layout.metrics(*k)) if pred else layout.metrics(*k)
                                   for k in read)
            keys += read
        for study in summaries:
            seeds = config["studies"][study]["seeds"]
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
