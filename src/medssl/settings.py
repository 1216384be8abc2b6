"""Typed views of a resolved configuration (:func:`medssl.config.resolve`): one record per dataset, study, run
and training stage, and where a job runs.

The accessors read a *resolved* config and apply no default: a key missing there is a ``KeyError``, never a
silent fallback (every default lives in the schema and is written out once, by ``resolve``). The records are
frozen dataclasses that turn into plain JSON values (:func:`as_plain`) and back (:func:`from_plain`), which is
how they travel inside a job's settings record (:mod:`medssl.jobs`).

A stage record holds the keys that decide what a job computes. The keys that say where and how it runs
(:data:`RUNTIME_KEYS`: device, threads, loader workers, checkpoint interval) are a :class:`Runtime`, handed to
a job beside its record, and the cost model's ``images_per_second`` is read by :mod:`medssl.cost` alone:
changing those reruns nothing (``tests/test_jobs.py`` checks every schema key falls in one of these groups).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

from medssl import config as cfg
from medssl import registry

#: keys that say where and how a job runs (top level: device, threads, loggers; the others: stage keys)
RUNTIME_KEYS = ("device", "threads", "loggers", "data_on_gpu", "data_on_gpu_fraction", "num_workers", "checkpoint_every",
                "compile", "gpus", "monitor_every", "monitor_samples")
#: stage keys read only by the cost estimate (medssl.cost) and the SLURM walltimes
COST_KEYS = ("images_per_second",)


# ------------------------------------------------------------------------------------ plain <-> record

def as_plain(record) -> dict:
    """A record as JSON values (tuples become lists)."""
    return _plain(dataclasses.asdict(record))


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_plain(cls, data: dict):
    """The record of type ``cls`` from :func:`as_plain`'s output; ``ValueError`` naming a missing or unknown
    field (a settings record is input like any other)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in data]
    unknown = [k for k in data if k not in names]
    if missing or unknown:
        raise ValueError(f"{cls.__name__}: " + "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "",
                              f"unknown {', '.join(unknown)}" if unknown else "") if part))
    return cls(**{n: _typed(hints[n], data[n]) for n in names})


def _typed(hint, value):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_typed(item, v) if item else v for v in value)
    if origin is dict:
        _, item = typing.get_args(hint)
        return {k: _typed(item, v) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# --------------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class DatasetSettings:
    """A dataset: its registry entry (or the config's declaration) with the resolved slicing and split
    settings."""

    spec: registry.DatasetSpec
    image_size: int
    slice_axis: str
    ct_window: tuple[float, float]
    mri_percentiles: tuple[float, float]
    split: dict
    scans_subset: tuple[int, int] | None
    sample_slices: int | None = None  # slices with foreground drawn for the store (None: all; HSSL Table 1)
    synthetic_patients: int | None = None  # a synthetic config's twin size; None for real data
    synthetic_scale: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class StudyOptions:
    """What a study's training and evaluation jobs read of it (``noise_sigma`` only for denoising)."""

    paper: str | None
    downstream: str
    slice_filter: str
    input_norm: str
    noise_sigma: float | None


@dataclass(frozen=True)
class Run:
    """A run's model: method (with every parameter), architecture and how finetuning starts from it."""

    name: str
    method: str
    arch: str
    params: dict
    transfer: str


@dataclass(frozen=True)
class PretrainStage:
    """Pretraining hyper-parameters (schema ``$defs/pretrain_stage`` less the runtime and cost keys)."""

    epochs: int
    batch_size: int
    lr: float
    lr_scaling: str
    lr_reference_batch: int
    poly_power: float
    weight_decay: float
    keep_epochs: tuple[int, ...]
    steps_per_epoch: int | None
    steps: int | None

    @property
    def scaled_lr(self) -> float:
        """``lr``, times ``batch_size / lr_reference_batch`` with ``lr_scaling: linear``."""
        if self.lr_scaling == "linear":
            return self.lr * self.batch_size / self.lr_reference_batch
        return self.lr


@dataclass(frozen=True)
class FinetuneStage:
    """Finetuning hyper-parameters (schema ``$defs/finetune_stage`` less the runtime and cost keys)."""

    epochs: int
    batch_size: int
    lr: float
    poly_power: float
    weight_decay: float
    steps_per_epoch: int | None
    steps: int | None
    val_every: int
    crop_scale: tuple[float, float]
    rotation_degrees: float


STAGES = {"pretrain": PretrainStage, "finetune": FinetuneStage}


@dataclass(frozen=True)
class Runtime:
    """Where and how a job runs: none of it changes what the job computes (on the CPU, bit for bit)."""

    device: str
    threads: int | None
    num_workers: int
    checkpoint_every: int
    loggers: tuple[str, ...] = ()
    monitor_every: int | None = None  # pretraining's representation monitor (None: finetuning, tools)
    monitor_samples: int | None = None
    gpus: int = 1  # pretraining's processes (medssl.train.distributed)
    compile: bool = False
    data_on_gpu: str = "auto"
    data_on_gpu_fraction: float = 0.25

    def args(self, stage: str | None = "finetune") -> list[str]:
        """The command-line options that hand this runtime to a ``medssl`` job of ``stage`` (a training stage
        takes loader workers, checkpoint interval, loggers, compile and data placement; pretraining the
        monitor's settings and its GPUs too)."""
        out = ["--device", self.device] + (["--threads", str(self.threads)] if self.threads else [])
        if stage:
            out += ["--num-workers", str(self.num_workers), "--checkpoint-every", str(self.checkpoint_every)]
            out += [a for logger in self.loggers for a in ("--logger", logger)]
            out += ["--data-on-gpu", self.data_on_gpu, "--data-on-gpu-fraction", str(self.data_on_gpu_fraction)]
            out += ["--compile"] if self.compile else []
        if stage == "pretrain":
            out += ["--monitor-every", str(self.monitor_every), "--monitor-samples", str(self.monitor_samples)]
            out += ["--gpus", str(self.gpus)]
        return out


# ------------------------------------------------------------------------------------------- accessors

def dataset_settings(config: dict, name: str) -> DatasetSettings:
    entry = config["datasets"][name]
    scans = entry.get("scans_subset")  # optional: absent where a dataset has no scans budget
    sample = entry.get("sample_slices")  # optional: absent keeps every slice with foreground
    return DatasetSettings(
        spec=registry.get(name, config), image_size=int(entry["image_size"]), slice_axis=entry["slice_axis"],
        ct_window=tuple(entry["ct_window"]), mri_percentiles=tuple(entry["mri_percentiles"]),
        split=dict(entry["split"]), scans_subset=tuple(scans) if scans else None,
        sample_slices=int(sample) if sample else None,
        synthetic_patients=entry["patients"] if config["synthetic"] else None,
        synthetic_scale=entry["synthetic_scale"] if config["synthetic"] else None)


def study_options(config: dict, study: str) -> StudyOptions:
    s = config["studies"][study]
    return StudyOptions(paper=s.get("paper"), downstream=s["downstream"], slice_filter=s["slice_filter"],
                        input_norm=s["input_norm"],
                        noise_sigma=float(s["noise_sigma"]) if s["downstream"] == "denoising" else None)


def run_model(config: dict, study: str, run: str) -> Run:
    r = config["studies"][study]["runs"][run]
    return Run(name=run, method=r["method"], arch=r["arch"], params=dict(r["params"]), transfer=r["transfer"])


def stage_block(config: dict, study: str, stage: str, run: str | None = None) -> dict:
    """The resolved ``pretrain``/``finetune`` block of a run (of the study when ``run`` is None), every key."""
    s = config["studies"][study]
    return s["runs"][run][stage] if run is not None else s[stage]


def stage_settings(config: dict, study: str, stage: str, run: str | None = None):
    """A run's :class:`PretrainStage` or :class:`FinetuneStage`."""
    cls = STAGES[stage]
    block = stage_block(config, study, stage, run)
    return from_plain(cls, {f.name: block[f.name] for f in dataclasses.fields(cls)})


def runtime(config: dict, study: str | None = None, stage: str | None = None, run: str | None = None) -> Runtime:
    """Where a job of ``stage`` runs; data and report jobs (no stage) take the stage keys' schema defaults."""
    block = stage_block(config, study, stage, run) if stage else cfg.stage_defaults("finetune")
    return Runtime(device=config["device"], threads=config["threads"], num_workers=block["num_workers"],
                   checkpoint_every=block["checkpoint_every"], loggers=tuple(config["loggers"]),
                   monitor_every=block.get("monitor_every"), monitor_samples=block.get("monitor_samples"),
                   gpus=int(block["gpus"]) if stage == "pretrain" else 1, compile=bool(block["compile"]),
                   data_on_gpu=config["data_on_gpu"],
                   data_on_gpu_fraction=float(config["data_on_gpu_fraction"]))


def label_ratios(config: dict) -> list[float]:
    """The label budgets every split draws (``data.label_ratios``)."""
    return list(config["data"]["label_ratios"])


def task_group_ids(config: dict, study: str, datasets: list[str]) -> tuple[dict, dict, int, int]:
    """HSSL task and group ids of ``datasets``: ``(task_of, group_of, n_tasks, n_groups)``.

    Task id = index in the study's ``pretrain_datasets`` (a dataset outside that list is appended).
    Group id = the registry's ``paper_group`` made contiguous over those datasets (sorted); a dataset without
    ``paper_group`` is grouped by (ROI, modality) instead.
    """
    names = list(config["studies"][study]["pretrain_datasets"])
    names += [d for d in datasets if d not in names]
    task_of = {d: i for i, d in enumerate(names)}

    def key(d):
        spec = registry.get(d, config)
        return ("a", spec.paper_group, "") if spec.paper_group is not None else ("b", spec.roi, spec.modality)

    keys = sorted({key(d) for d in names}, key=lambda k: (k[0], str(k[1]).zfill(8), k[2]))
    gid = {k: i for i, k in enumerate(keys)}
    group_of = {d: gid[key(d)] for d in names}
    return task_of, group_of, len(names), len(keys)
