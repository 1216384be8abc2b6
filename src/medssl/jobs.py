"""Settings records: each workflow job is handed one record holding every setting it reads, and reads nothing
else.

A record is a frozen dataclass built from the resolved config (:func:`medssl.config.resolve`) by its
``of(config, **wildcards)``. The workflow passes it to the job as JSON (``medssl <job> --settings <JSON>``)
through a rule ``params`` entry, so Snakemake's params trigger reruns a job exactly when its record changes:
what a job is given is what decides whether it reruns, by construction, with no second list to keep in step.
The ``medssl`` command turns the JSON back into the record (:meth:`Job.from_json`) and calls the library with
it; no job opens a config or a plan file. Paths are not settings: they arrive as the job's declared inputs
and outputs.

Left out of every record: where a job runs (:class:`medssl.settings.Runtime`, handed as separate options
derived from the rule's ``threads``, which Snakemake does not count as a params change), the cost model's
throughputs, and, for jobs that do not show them, display labels.

Jobs that write shared files under ``resources/`` (a synthetic twin, a fetched source) carry only that
dataset's settings, never the experiment's, and their outputs are named by their record's digest
(:meth:`Job.digest`), so two experiments never rewrite each other's sources.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from medssl import config as cfg
from medssl import registry
from medssl import settings as st
from medssl.settings import FinetuneStage, PretrainStage, Run, StudyOptions, as_plain, from_plain


class Job:
    """Mixin of every settings record: JSON in and out, and a digest."""

    kind: ClassVar[str]

    def to_json(self) -> str:
        """The record as canonical JSON (sorted keys, no spaces): what the workflow hands the job."""
        return json.dumps(as_plain(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str):
        """The record in ``text`` (JSON, as :meth:`to_json` writes it); ``ValueError`` naming what is wrong."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--settings of {cls.kind}: not a JSON settings record ({err.msg} at character "
                             f"{err.pos})") from None
        try:
            return from_plain(cls, data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"--settings of {cls.kind}: {err}") from None

    @classmethod
    def wildcards(cls) -> tuple[str, ...]:
        """The names that pick one job of this kind: the arguments of ``of`` after the config."""
        return tuple(inspect.signature(cls.of).parameters)[1:]

    def digest(self) -> str:
        """A short, stable hash of the record (16 hex digits)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def readable(self) -> str:
        """The record as YAML, one key a line, for the job's log."""
        import yaml

        return yaml.safe_dump(as_plain(self), sort_keys=False, default_flow_style=None, width=100).rstrip()


def _declaration(config: dict, dataset: str) -> dict:
    """A dataset of one's own: its declaration (``path``, ``modality``, ``classes``, ...), from which its
    registry entry is built; {} for a registered dataset (the registry holds its facts)."""
    entry = config["datasets"][dataset]
    return {k: entry[k] for k in registry.DECLARATION_KEYS if k in entry} | (
        {"slice_axis": entry["slice_axis"]} if "path" in entry else {})


def dataset_spec(dataset: str, declaration: dict) -> registry.DatasetSpec:
    """The registry entry of ``dataset``, or the one its declaration makes."""
    return registry.get(dataset, {"datasets": {dataset: declaration}})


# ------------------------------------------------------------------------------------------ data stage

@dataclass(frozen=True)
class DatasetJob(Job):
    """A record of the data stage: its dataset and, for a dataset of one's own, the declaration."""

    dataset: str
    declaration: dict

    @property
    def spec(self) -> registry.DatasetSpec:
        return dataset_spec(self.dataset, self.declaration)


@dataclass(frozen=True)
class SynthesizeJob(DatasetJob):
    """A dataset's phantom twin (:func:`medssl.data.phantoms.write_phantom_dataset`)."""

    kind: ClassVar[str] = "synthesize"
    patients: int
    scale: float
    seed: int

    @classmethod
    def of(cls, config: dict, dataset: str) -> SynthesizeJob:
        entry = config["datasets"][dataset]
        return cls(dataset=dataset, declaration=_declaration(config, dataset), patients=entry["patients"],
                   scale=entry["synthetic_scale"], seed=config["data"]["synthetic"]["seed"])


@dataclass(frozen=True)
class FetchJob(DatasetJob):
    """A real source put in place: downloaded (md5-checked), or checked where the user placed it."""

    kind: ClassVar[str] = "fetch"
    resources: str

    @classmethod
    def of(cls, config: dict, dataset: str) -> FetchJob:
        return cls(dataset=dataset, declaration=_declaration(config, dataset), resources=config["resources"])


@dataclass(frozen=True)
class SliceJob(DatasetJob):
    """A dataset's volumes cut into its slice store (:func:`medssl.data.slicing.slice_dataset`)."""

    kind: ClassVar[str] = "slice"
    synthetic: bool  # the source is a phantom twin (MSD layout); results say "synthetic"
    image_size: int
    slice_axis: str
    ct_window: tuple[float, float]
    mri_percentiles: tuple[float, float]
    sample_slices: int | None  # draw this many slices with foreground (HSSL Table 1); None: keep all

    @classmethod
    def of(cls, config: dict, dataset: str) -> SliceJob:
        ds = st.dataset_settings(config, dataset)
        return cls(dataset=dataset, declaration=_declaration(config, dataset), synthetic=config["synthetic"],
                   image_size=ds.image_size, slice_axis=ds.slice_axis, ct_window=ds.ct_window,
                   mri_percentiles=ds.mri_percentiles, sample_slices=ds.sample_slices)

    @property
    def name(self) -> str:
        return self.dataset

    @property
    def source_format(self) -> str:
        """How the source's files are arranged: twins are in MSD layout, real data in their release's."""
        return "msd" if self.synthetic else self.spec.source_format


@dataclass(frozen=True)
class SplitJob(Job):
    """A dataset's patient split and label subsets (:func:`medssl.data.splits.make_split`)."""

    kind: ClassVar[str] = "split"
    dataset: str
    split: dict
    scans_subset: tuple[int, ...] | None
    label_ratios: tuple[float, ...]

    @classmethod
    def of(cls, config: dict, dataset: str) -> SplitJob:
        ds = st.dataset_settings(config, dataset)
        return cls(dataset=dataset, split=ds.split, scans_subset=ds.scans_subset,
                   label_ratios=tuple(float(r) for r in st.label_ratios(config)))

    @property
    def name(self) -> str:
        return self.dataset


# -------------------------------------------------------------------------------------- training stage

def _pool_ids(config: dict, study: str, datasets: list[str]) -> dict:
    """HSSL task and group ids of a pool's datasets, with the names figures give them."""
    task_of, group_of, n_tasks, n_groups = st.task_group_ids(config, study, datasets)
    task_labels, group_labels = [""] * n_tasks, [""] * n_groups
    members: dict[int, list] = {}  # group id -> its datasets' specs: a group is named by what it holds
    for d, t in task_of.items():
        spec = registry.get(d, config)
        task_labels[t] = f"T{spec.paper_task or t + 1} {spec.roi} {spec.modality}"
        members.setdefault(group_of[d], []).append(spec)
    for g, specs in members.items():
        rois = ", ".join(dict.fromkeys(s.roi for s in specs))
        modalities = "/".join(dict.fromkeys(s.modality for s in specs))
        group_labels[g] = f"G{specs[0].paper_group or g + 1} {rois} {modalities}"
    return {"tasks": {d: task_of[d] for d in datasets}, "groups": {d: group_of[d] for d in datasets},
            "task_labels": tuple(task_labels), "group_labels": tuple(group_labels)}


@dataclass(frozen=True)
class PoolIds:
    """The datasets of a pretraining pool with their HSSL task and group ids (``tasks``/``groups`` map each
    pool dataset; the label tuples name every id of the study)."""

    datasets: tuple[str, ...]
    tasks: dict[str, int]
    groups: dict[str, int]
    task_labels: tuple[str, ...]
    group_labels: tuple[str, ...]

    @classmethod
    def of(cls, config: dict, study: str, pool: str) -> PoolIds:
        datasets = cfg.pool_datasets(config, study, pool)
        return cls(datasets=tuple(datasets), **_pool_ids(config, study, datasets))

    @property
    def n_tasks(self) -> int:
        return len(self.task_labels)

    @property
    def n_groups(self) -> int:
        return len(self.group_labels)


@dataclass(frozen=True)
class PretrainJob(Job):
    """One run's self-supervised pretraining on one pool (:func:`medssl.train.pretrain.pretrain`)."""

    kind: ClassVar[str] = "pretrain"
    study: str
    pool: str
    ids: PoolIds
    run: Run
    stage: PretrainStage
    options: StudyOptions
    patients: str  # "all" or "train" (the study's pretrain_patients)
    width: float  # model_width

    @classmethod
    def of(cls, config: dict, study: str, run: str, pool: str) -> PretrainJob:
        return cls(study=study, pool=pool, ids=PoolIds.of(config, study, pool),
                   run=st.run_model(config, study, run), stage=st.stage_settings(config, study, "pretrain", run),
                   options=st.study_options(config, study),
                   patients=config["studies"][study]["pretrain_patients"], width=config["model_width"])


@dataclass(frozen=True)
class Pretrained:
    """The pretraining a finetuning starts from: its study, run and pool, and the kept epoch (None: the final
    model). The job checks the model file it is handed against it."""

    study: str
    run: str
    pool: str
    epoch: int | None

    @classmethod
    def of(cls, config: dict, study: str, run: str, dataset: str) -> Pretrained | None:
        source = cfg.pretraining_of(config, study, run)
        if source is None:
            return None
        epoch = config["studies"][study]["runs"][run].get("pretrain_epoch")  # optional: None = the final model
        return cls(study=source[0], run=source[1], pool=cfg.pretrain_pool(config, *source, dataset), epoch=epoch)


@dataclass(frozen=True)
class FinetuneJob(Job):
    """One run finetuned on one dataset, label budget and seed, then evaluated on the test patients
    (:func:`medssl.train.finetune.finetune`, :func:`medssl.train.evaluate.evaluate`)."""

    kind: ClassVar[str] = "finetune"
    study: str
    dataset: str
    ratio: str
    seed: int
    run: Run
    pretrained: Pretrained | None
    stage: FinetuneStage
    options: StudyOptions
    width: float

    @classmethod
    def of(cls, config: dict, study: str, run: str, dataset: str, ratio: str, seed) -> FinetuneJob:
        return cls(study=study, dataset=dataset, ratio=str(ratio), seed=int(seed),
                   run=st.run_model(config, study, run), pretrained=Pretrained.of(config, study, run, dataset),
                   stage=st.stage_settings(config, study, "finetune", run),
                   options=st.study_options(config, study), width=config["model_width"])


# -------------------------------------------------------------------------------------------- reports

@dataclass(frozen=True)
class FeaturesJob(Job):
    """Figure 3b's features of a pretrained model (:func:`medssl.reports.extract.extract_features`)."""

    kind: ClassVar[str] = "features"
    study: str
    pool: str
    ids: PoolIds
    run: Run
    per_task: int
    seed: int
    generic: str  # the first panel's features: vgg19 (the weight file is an input) or pixels

    @classmethod
    def of(cls, config: dict, study: str, run: str) -> FeaturesJob:
        from medssl.reports.targets import tsne_spec

        spec = tsne_spec(config)
        pool = cfg.features_pool(config, study, run)
        return cls(study=study, pool=pool, ids=PoolIds.of(config, study, pool), run=st.run_model(config, study, run),
                   per_task=spec.per_task, seed=spec.seed, generic=spec.generic)


@dataclass(frozen=True)
class WeightsJob(Job):
    """A published weight file put in place: downloaded, or checked where the user put it, by its SHA-256
    (:mod:`medssl.data.weights`); shared by experiments, named by the file's own hash."""

    kind: ClassVar[str] = "weights"
    name: str

    @classmethod
    def of(cls, config: dict, name: str) -> WeightsJob:
        return cls(name=name)


_RUN_SHOWN = ("method", "arch", "label", "finetune_datasets", "label_ratios")  # what tables and summaries show
_STUDY_SHOWN = ("title", "paper", "downstream", "seeds")


def shown_config(config: dict, studies, reports: dict) -> dict:
    """The part of the config a report reads: the named studies as tables show them, every dataset's name, the
    report blocks, and whether the data are synthetic. A config itself (to the report code), not a valid one."""
    return {"experiment": config["experiment"], "resources": config["resources"], "synthetic": config["synthetic"],
            "datasets": {d: {} for d in config["datasets"]},
            "studies": {s: {**{k: config["studies"][s][k] for k in _STUDY_SHOWN if k in config["studies"][s]},
                            "runs": {r: {k: v[k] for k in _RUN_SHOWN}
                                     for r, v in config["studies"][s]["runs"].items()}}
                        for s in studies},
            "reports": reports}


@dataclass(frozen=True)
class ReportJob(Job):
    """One table or figure of a paper (:func:`medssl.reports.builders.build`)."""

    kind: ClassVar[str] = "report"
    target: str
    config: dict = field(repr=False)

    @classmethod
    def of(cls, config: dict, target: str) -> ReportJob:
        from medssl.reports.targets import studies_named

        reports = config.get("reports") or {}
        studies = sorted(s for s in studies_named(reports.get(target)) if s in config["studies"])
        shown = {target: reports[target], **({"allow_missing": reports["allow_missing"]}
                                             if "allow_missing" in reports else {})}
        return cls(target=target, config=shown_config(config, studies, shown))


@dataclass(frozen=True)
class SummaryJob(Job):
    """The generic summary of a study no paper report names (:func:`medssl.reports.summary.build_summary`)."""

    kind: ClassVar[str] = "summary"
    study: str
    config: dict = field(repr=False)

    @classmethod
    def of(cls, config: dict, study: str) -> SummaryJob:
        return cls(study=study, config=shown_config(config, [study], {}))


JOBS: dict[str, type[Job]] = {cls.kind: cls for cls in (SynthesizeJob, FetchJob, WeightsJob, SliceJob, SplitJob,
                                                          PretrainJob, FinetuneJob, FeaturesJob, ReportJob,
                                                          SummaryJob)}


def record(config: dict, kind: str, **wildcards) -> Job:
    """The settings record of job ``kind`` (a key of :data:`JOBS`) with ``wildcards``, from the resolved
    ``config``."""
    return JOBS[kind].of(config, **wildcards)


def file_digest(*paths: str | Path) -> str:
    """A short hash of the bytes of ``paths`` (files, or every file below a folder, in name order): what a
    resume checkpoint was made from, beside the record (a rerun input invalidates an old checkpoint)."""
    h = hashlib.sha256()
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]
