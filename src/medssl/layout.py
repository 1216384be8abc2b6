"""Where every file of an experiment lives: one object, the only place paths are spelled.

``Layout.of(config)`` gives the paths of one experiment, relative to the workflow directory (the folder
``snakemake`` runs in)::

    resources/                                   downloads and sources (config ``resources``), shared by experiments
      synthetic/<dataset>/<digest>/              phantom twin, MSD layout
      ready/<dataset>/<digest>.json              a fetched or checked real source (its root)
      logs/<rule>/<dataset>/<digest>.log         the log of the job that wrote a source
    results/<experiment>/                        everything the workflow writes (config ``experiment``)
      data/<dataset>/                            slice store
      splits/<dataset>.json                      patient split and label subsets
      <study>/pretrain/<run>/<pool>/model.pt     pretrained model (log.csv, progress.png, epoch<E>.pt beside it)
      <study>/finetune/<run>/<D>/<ratio>/seed<N>/        finetuning log.csv, progress.png (model.pt when kept)
      <study>/metrics/<run>/<D>/<ratio>/seed<N>.json     test metrics; seed<N>_pred.npz: predictions
      <study>/features/<run>.npz                 Figure 3b's features
      tables/<target>.{csv,md,html}, figures/<target>.png
      logs/<rule>/..., benchmarks/<rule>/...     one log and one benchmark file per job
      config.yaml, plan.yaml                     the last successful run's config and plan (every default applied)
      cost/throughput.yaml                       training images/s measured by `medssl cost --measure`

The workflow builds its patterns from the same methods with wildcards as arguments
(``layout.metrics("{study}", "{run}", "{dataset}", "{ratio}", "{seed}")``), so a rule's output and the
library's reader are the same string. What is shared between experiments (the sources under ``resources/``)
is named by the digest of the settings record of the job that writes it (:meth:`medssl.jobs.Job.digest`):
two experiments that agree on a twin share it, two that differ get one each, and neither rewrites the
other's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRED_SUFFIX = "_pred.npz"  # predictions beside a metrics file: seed0.json -> seed0_pred.npz


@dataclass(frozen=True)
class Layout:
    """The paths of one experiment (module docstring)."""

    root: Path  # results/<experiment>
    resources: Path = Path("resources")

    @classmethod
    def of(cls, config: dict) -> Layout:
        return cls(Path("results") / config["experiment"], Path(config["resources"]))

    # ---------------------------------------------------------------- sources (under resources/)
    def synthetic(self, dataset: str, digest: str) -> Path:
        """The phantom twin of ``dataset`` written with the settings whose record has ``digest``."""
        return self.resources / "synthetic" / dataset / digest

    def ready(self, dataset: str, digest: str) -> Path:
        """The ready file of a real source put in place with the settings whose record has ``digest``."""
        return self.resources / "ready" / dataset / f"{digest}.json"

    def source_log(self, rule: str, dataset: str, digest: str) -> Path:
        """The log of the job that wrote a shared source (beside the sources, not in one experiment's logs)."""
        return self.resources / "logs" / rule / dataset / f"{digest}.log"

    # ---------------------------------------------------------------- data stage
    def store(self, dataset: str) -> Path:
        return self.root / "data" / dataset

    def split(self, dataset: str) -> Path:
        return self.root / "splits" / f"{dataset}.json"

    # ---------------------------------------------------------------- training stage
    def pretrain_dir(self, study: str, run: str, pool: str) -> Path:
        return self.root / study / "pretrain" / run / pool

    def pretrained_model(self, study: str, run: str, pool: str, epoch: int | str | None = None) -> Path:
        """The final ``model.pt``, or the checkpoint kept at ``epoch`` (``keep_epochs``) beside it."""
        return self.pretrain_dir(study, run, pool) / (f"epoch{epoch}.pt" if epoch else "model.pt")

    def finetune_dir(self, study: str, run: str, dataset: str, ratio, seed) -> Path:
        return self.root / study / "finetune" / run / dataset / str(ratio) / f"seed{seed}"

    @staticmethod
    def progress(job_dir: str | Path) -> Path:
        """A training job's curves, beside its log.csv (:mod:`medssl.train.progress`)."""
        return Path(job_dir) / "progress.png"

    def metrics(self, study: str, run: str, dataset: str, ratio, seed) -> Path:
        return self.root / self.relative_metrics(study, run, dataset, ratio, seed)

    @staticmethod
    def relative_metrics(study: str, run: str, dataset: str, ratio, seed) -> Path:
        """A metrics file's path below the experiment folder (report inputs may sit under another root)."""
        return Path(study) / "metrics" / run / dataset / str(ratio) / f"seed{seed}.json"

    @staticmethod
    def predictions(metrics: str | Path) -> Path:
        """The ``_pred.npz`` written beside a metrics file."""
        metrics = Path(metrics)
        return metrics.with_name(metrics.stem + PRED_SUFFIX)

    @staticmethod
    def metrics_beside(predictions: str | Path) -> Path | None:
        """The metrics file a ``_pred.npz`` was written beside (None for another name)."""
        predictions = Path(predictions)
        if not predictions.name.endswith(PRED_SUFFIX):
            return None
        return predictions.with_name(predictions.name[: -len(PRED_SUFFIX)] + ".json")

    # ---------------------------------------------------------------- reports
    def features(self, study: str, run: str) -> Path:
        return self.root / study / "features" / f"{run}.npz"

    def output(self, relative: str | Path) -> Path:
        """A report target's output (``tables/<target>.md``, ``figures/<target>.png``)."""
        return self.root / relative

    def log(self, rule: str, *parts: str) -> Path:
        """``logs/<rule>/<part>/.../<last part>.log``: one log per job."""
        return self.root / "logs" / rule / Path(*parts[:-1]) / f"{parts[-1]}.log"

    def benchmark(self, rule: str, *parts: str) -> Path:
        """``benchmarks/<rule>/<part>/.../<last part>.tsv``: one Snakemake benchmark file per job."""
        return self.root / "benchmarks" / rule / Path(*parts[:-1]) / f"{parts[-1]}.tsv"

    def recorded_config(self) -> Path:
        """The config of the last successful run, for people to read (no job reads it)."""
        return self.root / "config.yaml"

    def recorded_plan(self) -> Path:
        """The plan of the last successful run (:func:`medssl.config.resolve`), for people to read, edit and
        run with ``--configfile`` (no job reads it: each reads its own settings record)."""
        return self.root / "plan.yaml"

    def throughput(self) -> Path:
        """Training throughput measured by ``medssl cost --measure`` (:mod:`medssl.cost`); read by the cost
        estimate and the SLURM walltimes, never by a job."""
        return self.root / "cost" / "throughput.yaml"
