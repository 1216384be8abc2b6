"""Cost estimate of a config: how many jobs of each rule its DAG holds and the GPU-hours they need.

``medssl cost --config C`` prints one row per rule (jobs, GPU-hours, where the throughput comes from) and a
total, before anything runs; ``--measure`` first times the config's networks on this machine and writes the
figures where the estimate and the SLURM walltimes read them.

Jobs (:func:`dag_jobs`): those of :class:`medssl.plan.Plan` (finetunes, pretrainings, t-SNE features, one
``report_table`` or ``report_figure`` per configured target, one ``report_summary`` per summarised study), the grid the
workflow's input functions read too, plus per dataset one ``synthesize_dataset`` (``synthetic: true``) or
``fetch_dataset``, one ``slice_dataset`` and one ``split_dataset``, and one ``all``. ``tests/test_cost.py``
checks these counts against ``snakemake -n``.

GPU time of a training job = images it pushes through the network / throughput + :data:`JOB_OVERHEAD_S`:

* ``pretrain``: ``epochs`` x images per epoch (the pool's slices, filtered like the training core
  (``slice_filter``), in full batches, capped at ``steps_per_epoch`` x ``batch_size``), times the method's
  backbone passes per image (:data:`METHOD_PASSES`: two augmented views for the contrastive methods).
* ``finetune``: ``epochs`` x the labelled subset (ratio % of the training patients' foreground slices, or
  ``scans_subset`` = scans x slices), capped by ``steps_per_epoch``; plus validation (every ``val_every``
  epochs and the last) over all slices of the validation patients, a forward pass costing
  :data:`VALIDATION_COST` of a training image, and the test evaluation at the end (one such pass over the
  test patients' slices).
* The data and report rules run on CPU nodes: no GPU-hours.

Throughput (training images/s of one job, :func:`images_per_second`), first source that has it:

1. ``config``: the stage setting ``images_per_second`` (study block or run override) when set: the user's
   word for that stage, method included, wins over everything.
2. ``measured``: the experiment's throughput file (:meth:`medssl.layout.Layout.throughput`,
   ``results/<experiment>/cost/throughput.yaml``), which ``medssl cost --config C --measure`` writes on the
   machine it runs on (a GPU node: :func:`measure`; ``--pack K``: K jobs side by side on it,
   :func:`measure_packed`). One record per architecture, stage and image size:
   device, date, supervised training images/s, the backbone passes per image it assumed for each method
   (the pretraining throughput is images/s divided by them) and the jobs that shared the GPU (``pack``; a
   job's GPU-hours are its walltime / pack). No job reads the file, so a new measurement reruns nothing; the
   cost estimate and the SLURM walltimes (:func:`runtime_minutes`) do. Parsed with ``yaml.safe_load`` and
   validated (:func:`read_measurements`): a bad file is a one-line ``ValueError`` naming it.
3. ``assumed``: :data:`DEFAULT_IMAGES_PER_SECOND` of the architecture at 192 px scaled by
   ``(192 / image_size)^2`` and divided by the method's passes: ASSUMED figures for one A100-class GPU (bf16
   autocast, channels_last, batch 16-30), not measurements.

The printed report says for every rule and run which source its figures come from, with the config key, or
the device and date of the measurement.

Slice counts (:func:`dataset_size`), best source first: the slice store of the experiment on disk
(``results/<experiment>/data/<D>/index.csv``, exact: its sample of slices with foreground, the ``sampled``
column) with its split file (exact label subsets); for
``synthetic: true`` the phantom geometry (:func:`medssl.data.phantoms.geometry`; every slice counted as
foreground); for real data the registry's ``paper_slices`` (HSSL Table 1, foreground slices) with the
patients and total slices of the entry's ``release`` (:class:`medssl.registry.Release`; for MM-WHS estimates:
CT ~20 scans x ~270 axial slices, MRI ~20 scans x ~150 sagittal slices, of which paper B's split uses 14); a
dataset's ``sample_slices`` caps its slices with foreground (the sample the jobs train on).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import platform
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from medssl import config as cfg
from medssl import settings as st
from medssl.io import write_text
from medssl.layout import Layout
from medssl.plan import Plan
from medssl.registry import Release

# Rules of the workflow in DAG order; GPU rules declare `gpu=1` (workflow/rules/train.smk).
RULES = ("synthesize_dataset", "fetch_dataset", "fetch_weights", "slice_dataset", "split_dataset", "pretrain",
         "finetune", "tsne_features", "report_table", "report_figure", "report_summary", "all")
GPU_RULES = ("pretrain", "finetune")
STAGES = GPU_RULES  # a training job's rule is its stage

# ASSUMED training throughput (images/s at 192x192, forward + backward + Adam step, bf16 autocast,
# channels_last) on one A100-class GPU. `medssl cost --measure` replaces them with your GPU's (module docstring).
DEFAULT_IMAGES_PER_SECOND = {
    "hssl_net": 1000.0,      # ResNet-34 encoder, light DeConv decoder (22.07 M)
    "unet": 300.0,           # 64-channel full-resolution decoder (39.40 M)
    "unet3plus": 150.0,      # full-scale skips at full resolution (26.97 M)
    "resnet50_fcn": 600.0,   # ResNet-50 + FCN-8s decoder (24.6 M)
}
FALLBACK_IMAGES_PER_SECOND = 300.0
REFERENCE_SIZE = 192

# Backbone forward+backward passes per pretraining image, relative to one supervised step.
METHOD_PASSES = {"simclr": 2.0, "hssl": 2.0, "moco": 1.5, "mocov2": 1.5, "ssmtl_plus": 1.5}
DEFAULT_PASSES = 1.0
VALIDATION_COST = 1.0 / 3.0       # a no-grad forward pass, relative to a training image
JOB_OVERHEAD_S = 60.0             # per GPU job: start-up, data loading, CUDA init, checkpoints
# ASSUMED share of linear speed-up a pretraining on N GPUs reaches (bench/gpu_check.sh measures 1 vs 2 GPUs)
SCALING_EFFICIENCY = 0.9


# A real dataset the registry gives no release size for (declared in a config): a generic guess.
GENERIC_REAL = Release(30, 30 * 100, 30 * 60, "generic estimate: 30 scans x 100 slices")


# --------------------------------------------------------------------------------------------------
# The DAG (the jobs of medssl.plan's expansion, which the workflow's input functions read too)


def dag_jobs(config: dict) -> dict[str, list[dict]]:
    """Wildcards of every job of ``snakemake all`` from scratch, per rule (rules without jobs left out)."""
    plan = Plan.of(config)
    jobs: dict[str, list[dict]] = {rule: [] for rule in RULES}
    source = "synthesize_dataset" if config["synthetic"] else "fetch_dataset"
    for dataset in plan.datasets:
        for rule in (source, "slice_dataset", "split_dataset"):
            jobs[rule].append({"dataset": dataset})
    jobs["finetune"] = [{"study": st, "run": r, "dataset": d, "ratio": str(ratio), "seed": int(seed)}
                        for st, r, d, ratio, seed in plan.evaluations]
    jobs["tsne_features"] = [{"study": st, "run": r} for st, r in plan.features]
    from medssl.reports.targets import target_info, tsne_spec

    if plan.features and tsne_spec(config).generic == "vgg19":  # the VGG-19 weight file, fetched once
        jobs["fetch_weights"].append({})
    jobs["pretrain"] = [{"study": st, "run": r, "pool": p} for st, r, p in plan.pretrains]
    for target in plan.reports:
        jobs["report_table" if target_info(target).is_table else "report_figure"].append({"target": target})
    jobs["report_summary"] = [{"study": study} for study in plan.summaries]
    jobs["all"].append({})
    return {rule: js for rule, js in jobs.items() if js}


def job_counts(config: dict) -> dict[str, int]:
    return {rule: len(js) for rule, js in dag_jobs(config).items()}


# --------------------------------------------------------------------------------------------------
# Slice counts


@dataclass
class DatasetSize:
    """Patients and slices of one dataset, and its train/val/test patients and label subset sizes."""

    name: str
    patients: int
    slices: int
    fg_slices: int
    source: str
    split_patients: tuple[int, int, int] = (0, 0, 0)
    cases_per_patient: int = 1
    label_subsets: dict = field(default_factory=dict)   # ratio key -> slices (exact, from the split file)
    val_slices: int | None = None                       # exact, from the store + split
    test_slices: int | None = None                      # exact, from the store + split

    def fraction(self, part: int) -> float:
        return self.split_patients[part] / max(self.patients, 1)


def _split_patients(settings: st.DatasetSettings, patients: int) -> tuple[int, int, int]:
    split = settings.split
    if split.get("counts"):
        c = [int(x) for x in split["counts"]]
        return (min(c[0], patients), min(c[1], max(patients - c[0], 0)),
                min(c[2], max(patients - c[0] - c[1], 0)))
    from medssl.data.splits import split_counts

    try:
        return tuple(split_counts(patients, split["ratios"]))
    except ValueError:
        return (patients, 0, 0)


def _from_store(config: dict, name: str, root: Path) -> DatasetSize | None:
    store = root / Layout.of(config).store(name)
    if not (store / "index.csv").exists():
        return None
    import pandas as pd

    index = pd.read_csv(store / "index.csv", dtype={"case": str, "patient": str})
    settings = st.dataset_settings(config, name)
    patients = int(index["patient"].nunique())
    sampled = index["sampled" if "sampled" in index.columns else "fg"].astype(bool)
    size = DatasetSize(name, patients, len(index), int(sampled.sum()), "slice store",
                       _split_patients(settings, patients),
                       max(1, round(index["case"].nunique() / max(patients, 1))))
    split_path = root / Layout.of(config).split(name)
    if split_path.exists():
        with open(split_path) as f:
            split = json.load(f)
        pats = split["patients"]
        size.split_patients = tuple(len(pats.get(k, [])) for k in ("train", "val", "test"))
        size.label_subsets = {k: len(v) for k, v in split.get("label_subsets", {}).items()}
        size.val_slices = int(index["patient"].isin(pats.get("val", [])).sum())
        size.test_slices = int(index["patient"].isin(pats.get("test", [])).sum())
        size.source = "slice store + split"
    return size


def dataset_size(config: dict, name: str, root: str | Path = ".") -> DatasetSize:
    """Slice counts of ``name`` (see the module docstring for the sources, best first)."""
    found = _from_store(config, name, Path(root))
    if found is not None:
        return found
    settings = st.dataset_settings(config, name)
    spec = settings.spec
    if config["synthetic"]:
        from medssl.data.phantoms import geometry

        geo = geometry(spec, float(settings.synthetic_scale))
        cases = max(1, len(spec.frames))
        patients = settings.synthetic_patients
        slices = patients * cases * int(geo.size[geo.slice_axis])
        return DatasetSize(name, patients, slices, min(slices, settings.sample_slices or slices), "phantom geometry",
                           _split_patients(settings, patients), cases)
    real = spec.release or GENERIC_REAL
    fg = spec.paper_slices or real.fg_slices or real.slices
    source = "HSSL Table 1" if spec.paper_slices else ("estimate" if spec.release else "generic estimate")
    if settings.sample_slices:
        fg, source = min(fg, settings.sample_slices), f"{source}, sample_slices"
    cases = max(1, len(spec.frames))
    return DatasetSize(name, real.patients, max(real.slices, fg), fg, source,
                       _split_patients(settings, real.patients), cases)


def _n_subset(ratio: str, n: int) -> int:
    k = math.ceil(Fraction(str(float(ratio))) * n / 100)
    return int(min(n, max(1, k)))


def labelled_slices(size: DatasetSize, settings: st.DatasetSettings, ratio: str) -> int:
    """Slices of the label subset ``ratio`` (exact from the split file when it exists)."""
    if ratio in size.label_subsets:
        return size.label_subsets[ratio]
    train_fg = round(size.fg_slices * size.fraction(0)) or round(size.slices * size.fraction(0))
    if ratio == "scans":
        n_scans, per_scan = settings.scans_subset or (1, 1)
        scans = min(n_scans, size.split_patients[0] * size.cases_per_patient)
        return min(train_fg, scans * per_scan)
    return _n_subset(ratio, max(train_fg, 1))


def validation_slices(size: DatasetSize) -> int:
    if size.val_slices is not None:
        return size.val_slices
    return round(size.slices * size.fraction(1))


def evaluation_slices(size: DatasetSize) -> int:
    if size.test_slices is not None:
        return size.test_slices
    return round(size.slices * size.fraction(2))


# --------------------------------------------------------------------------------------------------
# Throughput: the config's, the measured file's, or the assumed default (module docstring)


def method_passes(method: str, stage: str) -> float:
    """Backbone forward+backward passes per training image of ``method`` in ``stage`` (finetuning: one)."""
    return METHOD_PASSES.get(method, DEFAULT_PASSES) if stage == "pretrain" else 1.0


@dataclass
class Measurement:
    """One record of the throughput file: supervised training images/s of one job of ``arch`` at
    ``image_size`` in ``stage`` on ``device`` (``pack`` such jobs sharing it), measured on ``date``, and the
    backbone passes per image of each method that a job's images/s is divided by."""

    arch: str
    stage: str
    image_size: int
    device: str
    date: str
    images_per_second: float
    passes: dict
    pack: int = 1

    @property
    def key(self) -> tuple[str, str, int]:
        return self.arch, self.stage, self.image_size

    def job_images_per_second(self, method: str) -> float:
        """Training images/s of a job of ``method`` (a method the record does not list: today's passes)."""
        return self.images_per_second / self.passes.get(method, method_passes(method, self.stage))


@dataclass
class Throughput:
    """Training images/s of one job (method passes included), its source (``config``, ``measured`` or
    ``assumed``) and where exactly it comes from (the config key; the device and date of the measurement)."""

    value: float
    source: str
    detail: str
    measurement: Measurement | None = None

    @property
    def pack(self) -> int:
        """Jobs sharing one GPU when the throughput was measured (1 unless measured so)."""
        return self.measurement.pack if self.measurement else 1


def images_per_second(config: dict, study: str, stage: str, run: str, image_size: int,
                      measured: dict | None = None) -> Throughput:
    """Training images/s of one job of ``run``'s ``stage`` at ``image_size``: the config's, else the measured
    record of its architecture, stage and size (``measured``: :func:`read_measurements`), else assumed."""
    value = st.stage_block(config, study, stage, run)["images_per_second"]
    if value:
        return Throughput(float(value), "config", _config_key(config, study, stage, run))
    rs = config["studies"][study]["runs"][run]
    record = (measured or {}).get((rs["arch"], stage, image_size))
    if record is not None:
        return Throughput(record.job_images_per_second(rs["method"]), "measured", f"{record.device}, {record.date}",
                          record)
    base = DEFAULT_IMAGES_PER_SECOND.get(rs["arch"], FALLBACK_IMAGES_PER_SECOND)
    return Throughput(base * (REFERENCE_SIZE / image_size) ** 2 / method_passes(rs["method"], stage), "assumed",
                      "A100-class default")


def _config_key(config: dict, study: str, stage: str, run: str) -> str:
    """Where a stage's ``images_per_second`` is set: the study's stage block, or the run's override."""
    value = st.stage_block(config, study, stage, run)["images_per_second"]
    if st.stage_block(config, study, stage)["images_per_second"] == value:
        return f"studies.{study}.{stage}.images_per_second"
    return f"studies.{study}.runs.{run}.{stage}.images_per_second"


# --------------------------------------------------------------------------------------------------
# The throughput file (untrusted input: parsed as data, every field checked)

FILE_HEADER = """\
# Training throughput measured by `medssl cost --config C --measure`: one record per architecture, stage and
# image size. images_per_second: supervised training images/s of one job with `pack` jobs sharing the GPU;
# a pretraining job's is divided by its method's backbone passes per image (`passes`). Read by `medssl cost`
# and the SLURM walltimes where the config sets no images_per_second; no job reads it (reruns nothing).
"""


def throughput_file(config: dict, root: str | Path = ".") -> Path:
    """The experiment's throughput file under the workflow directory ``root``."""
    return Path(root) / Layout.of(config).throughput()


def write_measurements(path: str | Path, records: list[Measurement]) -> None:
    """Write ``records`` to the throughput file ``path`` atomically (a reader never sees half a file)."""
    import yaml

    data = {"measurements": [dataclasses.asdict(r) for r in records]}
    write_text(path, FILE_HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def read_measurements(path: str | Path) -> dict[tuple[str, str, int], Measurement]:
    """The records of the throughput file ``path`` by (arch, stage, image size); ``{}`` when there is none.

    Parsed with ``yaml.safe_load`` (data, nothing executed) and every field checked: a file that cannot be
    read or is not a throughput file raises a one-line :class:`ValueError` naming it.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise _bad_file(path, f"cannot be read as YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict) or set(data) != {"measurements"} or not isinstance(data["measurements"], list):
        raise _bad_file(path, "expected one key, 'measurements', holding a list of records")
    records: dict[tuple[str, str, int], Measurement] = {}
    for i, raw in enumerate(data["measurements"]):
        record = _measurement(raw, path, f"measurements[{i}]")
        if record.key in records:
            raise _bad_file(path, f"measurements[{i}] repeats {record.arch} {record.stage} {record.image_size} px")
        records[record.key] = record
    return records


def _bad_file(path, what: str) -> ValueError:
    return ValueError(f"{path}: not a valid throughput file: {what}; fix or delete it, or rerun "
                      "`medssl cost --config C --measure`")


def _measurement(raw, path, where: str) -> Measurement:
    """One record of a throughput file: known keys only, each of its type and range."""
    import reprlib

    names = [f.name for f in dataclasses.fields(Measurement)]
    if not isinstance(raw, dict) or not set(names[:-1]) <= set(raw) <= set(names):
        raise _bad_file(path, f"{where} is not a mapping of the keys {', '.join(names)} (pack optional)")
    if isinstance(raw["date"], datetime.date):  # an unquoted YAML timestamp
        raw = {**raw, "date": raw["date"].isoformat()}
    record = Measurement(**raw)
    passes = record.passes
    checks = {"arch": _is_name(record.arch), "stage": record.stage in STAGES,
              "image_size": _is_count(record.image_size), "device": _is_name(record.device),
              "date": _is_date(record.date), "images_per_second": _is_positive(record.images_per_second),
              "passes": isinstance(passes, dict) and all(_is_name(k) and _is_positive(v) for k, v in passes.items()),
              "pack": _is_count(record.pack)}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise _bad_file(path, f"{where}: bad " + ", ".join(f"{k} {reprlib.repr(getattr(record, k))}" for k in bad))
    return record


def _is_name(x) -> bool:
    return isinstance(x, str) and bool(x.strip())


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def _is_positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _is_date(x) -> bool:
    try:
        datetime.datetime.fromisoformat(x)
    except (TypeError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------------
# The estimate


def _epoch_images(n: int, stage, drop_last: bool) -> int:
    """Images an epoch over ``n`` slices draws: its batches (capped at ``steps_per_epoch``), or with a step
    budget ceil(steps / epochs) full batches, whatever ``n``."""
    batch = stage.batch_size
    if stage.steps:
        return -(-stage.steps // max(stage.epochs, 1)) * batch
    batches = n // batch if drop_last else math.ceil(n / batch)
    if stage.steps_per_epoch:
        batches = min(batches, int(stage.steps_per_epoch))
    return min(n, batches * batch) if not drop_last else batches * batch


@dataclass
class JobCost:
    """One training job: the images it pushes through its network, at which throughput (and its source)."""

    rule: str
    wildcards: dict
    images: float          # training images (pretrain: the method's passes per image are in the throughput)
    rate: Throughput
    gpus: int = 1          # a pretraining on several GPUs (stage key `gpus`)

    @property
    def hours(self) -> float:
        """Walltime: its images at its throughput (on N GPUs: N times it, at :data:`SCALING_EFFICIENCY`), plus
        the fixed cost of a job (:data:`JOB_OVERHEAD_S`)."""
        speedup = self.gpus * SCALING_EFFICIENCY if self.gpus > 1 else 1.0
        return (self.images / (self.rate.value * speedup) + JOB_OVERHEAD_S) / 3600

    @property
    def gpu_hours(self) -> float:
        """GPU time: its walltime on each of its GPUs, shared with the jobs that ran beside it when measured
        (``pack``)."""
        return self.hours * self.gpus / self.rate.pack

    @property
    def throughput(self) -> float:
        return self.rate.value

    @property
    def throughput_source(self) -> str:
        return self.rate.source


@dataclass
class CostEstimate:
    config_name: str
    experiment: str
    counts: dict[str, int]
    jobs: list[JobCost]
    sizes: dict[str, DatasetSize]
    throughput_file: str = ""   # the measured throughput file it read (or would have read)

    def gpu_hours(self, rule: str | None = None) -> float:
        return sum(j.gpu_hours for j in self.jobs if rule is None or j.rule == rule)

    def throughput_sources(self) -> set[str]:
        return {j.throughput_source for j in self.jobs}


def estimate(config: dict, *, root: str | Path = ".", config_name: str = "",
             measured: dict | None = None) -> CostEstimate:
    """Jobs per rule and GPU-hours of every training job of ``config``; throughputs measured in ``measured``
    (default: the experiment's throughput file under ``root``, :func:`read_measurements`)."""
    path = throughput_file(config, root)
    measured = read_measurements(path) if measured is None else measured
    jobs = dag_jobs(config)
    sizes = {d: dataset_size(config, d, root) for d in config["datasets"]}
    costs = [job_cost(config, rule, w, sizes, measured) for rule in GPU_RULES for w in jobs.get(rule, [])]
    return CostEstimate(config_name, config["experiment"], {r: len(js) for r, js in jobs.items()}, costs, sizes,
                        str(path))


def runtime_minutes(config: dict, rule: str, wildcards, attempt: int = 1, *, root: str | Path = ".",
                    safety: float = 2.0, minimum: int = 10) -> int:
    """Walltime (minutes) to ask for one training job: its estimated time x ``safety`` x ``attempt``.

    Meant for the rules' ``runtime`` resource (``wildcards`` = the job's wildcards); slice counts come from
    the job's slice store and split when they exist (they do when a training job is submitted), the
    throughput as in the estimate (the measured file included: a resource, so a new measurement reruns nothing).
    """
    keys = ("study", "run", "pool") if rule == "pretrain" else ("study", "run", "dataset", "ratio", "seed")
    w = {k: wildcards[k] if isinstance(wildcards, dict) else getattr(wildcards, k) for k in keys}
    names = cfg.pool_datasets(config, w["study"], w["pool"]) if rule == "pretrain" else [w["dataset"]]
    sizes = {d: dataset_size(config, d, root) for d in names}
    hours = job_cost(config, rule, w, sizes, read_measurements(throughput_file(config, root))).hours
    return max(minimum, math.ceil(hours * 60 * safety)) * int(attempt)


def _image_size(config: dict, rule: str, w: dict) -> int:
    """The image size a training job trains at (a pretraining: its pool's first dataset's)."""
    dataset = cfg.pool_datasets(config, w["study"], w["pool"])[0] if rule == "pretrain" else w["dataset"]
    return int(config["datasets"][dataset]["image_size"])


def job_cost(config: dict, rule: str, w: dict, sizes: dict, measured: dict | None) -> JobCost:
    count = {"pretrain": _pretrain_images, "finetune": _finetune_images}.get(rule)
    if count is None:
        raise ValueError(f"{rule} is not a GPU rule ({', '.join(GPU_RULES)})")
    rate = images_per_second(config, w["study"], rule, w["run"], _image_size(config, rule, w), measured)
    gpus = st.runtime(config, w["study"], rule, w["run"]).gpus
    return JobCost(rule, w, count(config, w, sizes), rate, gpus)


def _pretrain_images(config: dict, w: dict, sizes: dict) -> float:
    """Images a pretraining job draws: epochs x its pool's (filtered) slices in full batches, or its budget."""
    study, run, pool = w["study"], w["run"], w["pool"]
    stage = st.stage_settings(config, study, "pretrain", run)
    slice_filter = config["studies"][study]["slice_filter"]
    n = 0
    for d in cfg.pool_datasets(config, study, pool):
        size = sizes[d]
        n += size.fg_slices if slice_filter == "foreground" and size.fg_slices else size.slices
    return stage.epochs * _epoch_images(n, stage, drop_last=True)


def _finetune_images(config: dict, w: dict, sizes: dict) -> float:
    """Training images of a finetuning job, plus its validation and test passes in training-image units."""
    study, run, dataset, ratio = w["study"], w["run"], w["dataset"], str(w["ratio"])
    stage = st.stage_settings(config, study, "finetune", run)
    size = sizes[dataset]
    n = labelled_slices(size, st.dataset_settings(config, dataset), ratio)
    epochs, val_every = stage.epochs, stage.val_every
    n_val = validation_slices(size)
    validations = epochs // val_every + (1 if epochs % val_every else 0) if n_val else 0
    return (epochs * _epoch_images(n, stage, drop_last=False)
            + (validations * n_val + evaluation_slices(size)) * VALIDATION_COST)


# --------------------------------------------------------------------------------------------------
# The printed report


def _sources(jobs) -> str:
    """The throughput sources of ``jobs``, e.g. ``measured`` or ``assumed+measured`` ('-': no GPU jobs)."""
    return "+".join(sorted({j.throughput_source for j in jobs})) or "-"


def format_table(est: CostEstimate, *, by_run: bool = False) -> str:
    """The printed report: a table (rule, jobs, GPU-hours, throughput source), the total, and where every
    throughput comes from."""
    lines = [f"Cost estimate for {est.config_name or 'config'} (experiment {est.experiment})", ""]
    rows: dict[str, int] = {}
    for rule, n in est.counts.items():      # the report rules on one row; `all` last
        key = "report_*" if rule.startswith("report_") else rule
        rows[key] = rows.get(key, 0) + n
    if "all" in rows:
        rows["all"] = rows.pop("all")
    w = max(len(r) for r in list(rows) + ["total"]) + 2
    lines.append(f"{'rule':<{w}}{'jobs':>7}{'GPU-hours':>12}  img/s")
    lines.append("-" * (w + 30))
    for rule, n in rows.items():
        gpu = f"{est.gpu_hours(rule):12.1f}" if rule in GPU_RULES else f"{'-':>12}"
        lines.append(f"{rule:<{w}}{n:>7}{gpu}  {_sources(j for j in est.jobs if j.rule == rule)}")
    lines.append("-" * (w + 30))
    lines.append(f"{'total':<{w}}{sum(est.counts.values()):>7}{est.gpu_hours():12.1f}  {_sources(est.jobs)}")
    if by_run:
        lines += [""] + _by_run(est)
    lines.append("")
    lines.append("GPU-hours = images through the network / images per second + "
                 f"{JOB_OVERHEAD_S:.0f} s per job; CPU rules ('-') need no GPU.")
    lines += _source_notes(est)
    by_source: dict[str, list[str]] = {}
    for name, size in est.sizes.items():
        by_source.setdefault(size.source, []).append(f"{name} {size.fg_slices}/{size.slices}")
    for source, items in by_source.items():
        lines.append(f"Slices with foreground/all ({source}): " + ", ".join(items))
    return "\n".join(lines)


def _by_run(est: CostEstimate) -> list[str]:
    """The per-run breakdown: jobs, GPU-hours, images/s of a job and its source, per study/run and stage."""
    groups: dict[tuple, list[JobCost]] = {}
    for j in est.jobs:
        groups.setdefault((j.wildcards["study"], j.wildcards["run"], j.rule), []).append(j)
    wr = max([len(f"{st}/{r}") for st, r, _ in groups] + [9]) + 2
    lines = [f"{'study/run':<{wr}}{'stage':<10}{'jobs':>6}{'GPU-hours':>12}{'img/s':>9}  from"]
    for (study, run, rule), js in groups.items():
        lines.append(f"{study + '/' + run:<{wr}}{rule:<10}{len(js):>6}{sum(j.gpu_hours for j in js):12.1f}"
                     f"{js[0].throughput:9.0f}  {_sources(js)}")
    return lines


def _source_notes(est: CostEstimate) -> list[str]:
    """One line per throughput source the estimate used, with every figure's origin, and the rule between them."""
    rates = [j.rate for j in est.jobs]
    notes = ["Throughput, first found: the config's images_per_second > the measured file > the assumed defaults."]
    keys = {r.detail: r.value for r in rates if r.source == "config"}
    if keys:
        notes.append(f"config ({est.config_name or 'the config'}): "
                     + ", ".join(f"{k} = {v:g}" for k, v in sorted(keys.items())))
    records = {r.measurement.key: r.measurement for r in rates if r.source == "measured"}
    for when in sorted({(m.device, m.date) for m in records.values()}):
        notes.append(f"measured on {when[0]}, {when[1]} ({est.throughput_file}): " + ", ".join(
            _describe(m) for _, m in sorted(records.items()) if (m.device, m.date) == when))
    if "assumed" in {r.source for r in rates}:
        notes.append("assumed: ASSUMED figures for one A100-class GPU, bf16, at 192 px, scaled by (192/size)^2: "
                     + ", ".join(f"{a} {v:.0f}/s" for a, v in DEFAULT_IMAGES_PER_SECOND.items())
                     + "; contrastive pretraining counts 1.5-2 passes per image. Measure yours on a GPU node with "
                       f"`medssl cost --config C --measure` (writes {est.throughput_file}).")
    if any(j.gpus > 1 for j in est.jobs):
        notes.append(f"gpus: N pretrainings: N GPUs at an ASSUMED {SCALING_EFFICIENCY:.0%} of linear speed-up "
                     "(bench/gpu_check.sh measures 1 vs 2 GPUs); their GPU-hours count every GPU.")
    return notes


def _describe(m: Measurement) -> str:
    """``hssl_net pretrain 192 px 2000/s (/ passes: hssl 2)``: a record as the report prints it."""
    passes = {k: v for k, v in sorted(m.passes.items()) if v != 1}
    text = f"{m.arch} {m.stage} {m.image_size} px {m.images_per_second:.0f}/s"
    text += f" (/ passes: {', '.join(f'{k} {v:g}' for k, v in passes.items())})" if passes else ""
    return text + (f" with {m.pack} jobs a GPU" if m.pack > 1 else "")


# --------------------------------------------------------------------------------------------------
# Measuring throughput


def measure_throughput(archs, image_size: int, batch_size: int = 16, steps: int = 20, warmup: int = 5,
                       device: str = "auto", out_channels: int = 4, width: float = 1.0,
                       barrier=None) -> dict[tuple[str, int], float]:
    """Time supervised training steps (forward, cross-entropy, backward, Adam) of each architecture at
    ``width`` (config ``model_width``).

    Uses the training core's device policy (bf16 autocast and channels_last on CUDA). ``barrier`` (a
    :class:`multiprocessing.Barrier`-like object) is waited on after the warm-up, so that copies timed side
    by side (:func:`measure_packed`) start their clocks together. Returns ``{(arch, image_size): images/s}``.
    """
    import torch
    from torch.nn import functional as F

    from medssl import models
    from medssl.train import device as dev

    device_t = dev.pick_device(device)
    dev.configure(device_t)

    def sync():
        if dev.is_cuda(device_t):
            torch.cuda.synchronize()

    def time_arch(arch: str) -> float:
        model = dev.prepare_module(models.build(arch, out_channels, width=width), device_t)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(batch_size, 1, image_size, image_size, device=device_t)
        x = x.contiguous(memory_format=dev.memory_format(device_t))
        y = torch.randint(0, out_channels, (batch_size, image_size, image_size), device=device_t)
        for i in range(warmup + steps):
            if i == warmup:
                sync()
                if barrier is not None:
                    barrier.wait(timeout=600)
                t0 = time.perf_counter()
            with dev.autocast(device_t):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return steps * batch_size / (time.perf_counter() - t0)

    return {(arch, image_size): time_arch(arch) for arch in archs}


def measure_packed(archs, image_size: int, pack: int = 1, **timing) -> dict[tuple[str, int], float]:
    """Images/s of one job of each architecture while ``pack`` copies of it train side by side on the device
    (jobs sharing one GPU): each copy in its own process, clocks started together; the copies' mean.
    ``timing``: :func:`measure_throughput`'s keywords."""
    if pack == 1:
        return measure_throughput(archs, image_size, **timing)
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    out = {}
    with ctx.Manager() as manager, ctx.Pool(pack) as pool:
        for arch in archs:
            barrier = manager.Barrier(pack)
            copies = pool.starmap(_one_copy, [(arch, image_size, barrier, timing)] * pack)
            out[(arch, image_size)] = sum(copies) / pack
    return out


def _one_copy(arch: str, image_size: int, barrier, timing: dict) -> float:
    """One of :func:`measure_packed`'s copies (a module-level function: spawned processes import it)."""
    return measure_throughput([arch], image_size, barrier=barrier, **timing)[(arch, image_size)]


def training_keys(config: dict) -> dict[tuple[str, str, int], dict[str, float]]:
    """(architecture, stage, image size) of every training job of ``config``, each with the backbone passes
    per image of the methods trained so (what a measurement of that key is divided by)."""
    keys: dict[tuple[str, str, int], dict[str, float]] = {}
    jobs = dag_jobs(config)
    for stage in STAGES:
        for w in jobs.get(stage, []):
            rs = config["studies"][w["study"]]["runs"][w["run"]]
            passes = keys.setdefault((rs["arch"], stage, _image_size(config, stage, w)), {})
            passes[rs["method"]] = method_passes(rs["method"], stage)
    return keys


def device_name(device: str = "auto") -> str:
    """The device ``device`` picks, by name: the GPU's, or ``cpu: <processor>``."""
    import torch

    from medssl.train import device as dev

    picked = dev.pick_device(device)
    if dev.is_cuda(picked):
        return torch.cuda.get_device_name(picked)
    return f"cpu: {platform.processor() or platform.machine() or 'unknown'}"


def measure(config: dict, *, device: str | None = None, pack: int = 1, **timing) -> list[Measurement]:
    """Time every architecture ``config`` trains, at every image size it trains at and its ``model_width``, on
    ``device`` (default: the config's), with ``pack`` jobs side by side on it (:func:`measure_packed`); one
    record per architecture, stage and image size. ``timing``: :func:`measure_throughput`'s batch_size,
    steps, warmup."""
    device = device or config["device"]
    keys = training_keys(config)
    by_size: dict[int, set[str]] = {}
    for arch, _, size in keys:
        by_size.setdefault(size, set()).add(arch)
    ips: dict[tuple[str, int], float] = {}
    for size, archs in sorted(by_size.items()):
        ips.update(measure_packed(sorted(archs), size, pack, device=device, width=config["model_width"], **timing))
    name = device_name(device)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return [Measurement(arch, stage, size, name, date, round(ips[(arch, size)], 1), passes, pack)
            for (arch, stage, size), passes in sorted(keys.items())]


def measure_to_file(config: dict, root: str | Path = ".", **options) -> tuple[Path, list[Measurement]]:
    """:func:`measure` (``options``: its keywords), written to the experiment's throughput file under ``root``
    (replacing it whole)."""
    records = measure(config, **options)
    path = throughput_file(config, root)
    write_measurements(path, records)
    return path, records


def format_measurements(path: Path, records: list[Measurement]) -> str:
    """What ``--measure`` prints: images/s of each architecture and size, on which device, when, and where."""
    if not records:
        return "measured nothing: the config has no training jobs"
    seen = {(r.arch, r.image_size): r.images_per_second for r in records}
    lines = [f"measured {a} at {s} px: {v:.1f} training images/s" for (a, s), v in sorted(seen.items())]
    pack = records[0].pack
    lines.append(f"on {records[0].device}, {records[0].date}" + (f", {pack} jobs side by side (images/s of one)"
                                                                  if pack > 1 else "")
                 + f"; written to {path}, which the estimate below and the SLURM walltimes read (a config's "
                   "images_per_second still wins)")
    if records[0].device.startswith("cpu:"):
        lines.append("note: measured on a CPU; run it on a GPU node for GPU estimates and walltimes")
    return "\n".join(lines)
