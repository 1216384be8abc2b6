"""Cost estimate of a config: how many jobs of each rule its DAG holds and the GPU-hours they need.

``medssl cost --config C`` prints one row per rule (jobs, GPU-hours) and a total, before anything runs.

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

Throughput (training images/s): the stage setting ``images_per_second`` when the config has one (a
measured number for that stage, method included), else :data:`DEFAULT_IMAGES_PER_SECOND` of the
architecture at 192 px scaled by ``(192 / image_size)^2`` and divided by the method's passes. The defaults
are ASSUMED figures for one A100-class GPU (bf16 autocast, channels_last, batch 16-30), not measurements:
run ``medssl cost --config C --measure`` on a GPU node to time the config's architectures there, and put
the numbers into the config (``pretrain: {images_per_second: ...}`` / ``finetune: {...}``).

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

import json
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from medssl import config as cfg
from medssl import settings as st
from medssl.layout import Layout
from medssl.plan import Plan
from medssl.registry import Release

# Rules of the workflow in DAG order; GPU rules declare `gpu=1` (workflow/rules/train.smk).
RULES = ("synthesize_dataset", "fetch_dataset", "fetch_weights", "slice_dataset", "split_dataset", "pretrain",
         "finetune", "tsne_features", "report_table", "report_figure", "report_summary", "all")
GPU_RULES = ("pretrain", "finetune")

# ASSUMED training throughput (images/s at 192x192, forward + backward + Adam step, bf16 autocast,
# channels_last) on one A100-class GPU. Replace with `medssl cost --measure` numbers for your GPUs.
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
# Throughput and the estimate


def images_per_second(config: dict, study: str, stage: str, run: str, image_size: int,
                      measured: dict | None = None) -> tuple[float, str]:
    """Training images/s of a stage (method passes included) and where the number comes from."""
    block = st.stage_block(config, study, stage, run)
    if block["images_per_second"]:
        return float(block["images_per_second"]), "config"
    rs = config["studies"][study]["runs"][run]
    passes = METHOD_PASSES.get(rs["method"], DEFAULT_PASSES) if stage == "pretrain" else 1.0
    if measured and (rs["arch"], image_size) in measured:
        return measured[(rs["arch"], image_size)] / passes, "measured"
    base = DEFAULT_IMAGES_PER_SECOND.get(rs["arch"], FALLBACK_IMAGES_PER_SECOND)
    return base * (REFERENCE_SIZE / image_size) ** 2 / passes, "assumed"


def _epoch_images(n: int, batch: int, steps: int | None, drop_last: bool) -> int:
    batches = n // batch if drop_last else math.ceil(n / batch)
    if steps:
        batches = min(batches, int(steps))
    return min(n, batches * batch) if not drop_last else batches * batch


@dataclass
class JobCost:
    rule: str
    wildcards: dict
    images: float          # training images (pretrain: per view pass folded into the throughput)
    gpu_hours: float
    throughput: float
    throughput_source: str


@dataclass
class CostEstimate:
    config_name: str
    experiment: str
    counts: dict[str, int]
    jobs: list[JobCost]
    sizes: dict[str, DatasetSize]

    def gpu_hours(self, rule: str | None = None) -> float:
        return sum(j.gpu_hours for j in self.jobs if rule is None or j.rule == rule)

    def throughput_sources(self) -> set[str]:
        return {j.throughput_source for j in self.jobs}


def estimate(config: dict, *, root: str | Path = ".", config_name: str = "",
             measured: dict | None = None) -> CostEstimate:
    """Jobs per rule and GPU-hours of every training job of ``config``."""
    jobs = dag_jobs(config)
    sizes = {d: dataset_size(config, d, root) for d in config["datasets"]}
    costs = [_job_cost(config, rule, w, sizes, measured) for rule in GPU_RULES for w in jobs.get(rule, [])]
    return CostEstimate(config_name, config["experiment"], {r: len(js) for r, js in jobs.items()}, costs, sizes)


def runtime_minutes(config: dict, rule: str, wildcards, attempt: int = 1, *, root: str | Path = ".",
                    safety: float = 2.0, minimum: int = 10) -> int:
    """Walltime (minutes) to ask for one training job: its estimated GPU time x ``safety`` x ``attempt``.

    Meant for the rules' ``runtime`` resource (``wildcards`` = the job's wildcards); slice counts come from
    the job's slice store and split when they exist (they do when a training job is submitted).
    """
    keys = ("study", "run", "pool") if rule == "pretrain" else ("study", "run", "dataset", "ratio", "seed")
    w = {k: wildcards[k] if isinstance(wildcards, dict) else getattr(wildcards, k) for k in keys}
    names = cfg.pool_datasets(config, w["study"], w["pool"]) if rule == "pretrain" else [w["dataset"]]
    sizes = {d: dataset_size(config, d, root) for d in names}
    hours = _job_cost(config, rule, w, sizes, None).gpu_hours
    return max(minimum, math.ceil(hours * 60 * safety)) * int(attempt)


def _job_cost(config: dict, rule: str, w: dict, sizes: dict, measured: dict | None) -> JobCost:
    if rule == "pretrain":
        study, run, pool = w["study"], w["run"], w["pool"]
        stage = st.stage_settings(config, study, "pretrain", run)
        slice_filter = config["studies"][study]["slice_filter"]
        names = cfg.pool_datasets(config, study, pool)
        n = 0
        for d in names:
            size = sizes[d]
            n += size.fg_slices if slice_filter == "foreground" and size.fg_slices else size.slices
        image_size = config["datasets"][names[0]]["image_size"]
        per_epoch = _epoch_images(n, stage.batch_size, stage.steps_per_epoch, drop_last=True)
        if stage.steps:  # a step budget: ceil(steps / epochs) full batches per epoch, whatever n
            per_epoch = -(-stage.steps // max(stage.epochs, 1)) * stage.batch_size
        images = stage.epochs * per_epoch
        ips, src = images_per_second(config, study, "pretrain", run, image_size, measured)
        return JobCost("pretrain", w, images, (images / ips + JOB_OVERHEAD_S) / 3600, ips, src)
    if rule == "finetune":
        study, run, dataset, ratio = w["study"], w["run"], w["dataset"], str(w["ratio"])
        stage = st.stage_settings(config, study, "finetune", run)
        settings = st.dataset_settings(config, dataset)
        size = sizes[dataset]
        n = labelled_slices(size, settings, ratio)
        epochs = stage.epochs
        per_epoch = _epoch_images(n, stage.batch_size, stage.steps_per_epoch, drop_last=False)
        if stage.steps:
            per_epoch = -(-stage.steps // max(stage.epochs, 1)) * stage.batch_size
        val_every = stage.val_every
        n_val = validation_slices(size)
        validations = epochs // val_every + (1 if epochs % val_every else 0) if n_val else 0
        images = epochs * per_epoch + (validations * n_val + evaluation_slices(size)) * VALIDATION_COST
        ips, src = images_per_second(config, study, "finetune", run, settings.image_size, measured)
        return JobCost("finetune", w, images, (images / ips + JOB_OVERHEAD_S) / 3600, ips, src)
    raise ValueError(f"{rule} is not a GPU rule ({', '.join(GPU_RULES)})")


def format_table(est: CostEstimate, *, by_run: bool = False) -> str:
    """The printed report: a table (rule, jobs, GPU-hours), the total, and what the numbers assume."""
    lines = [f"Cost estimate for {est.config_name or 'config'} (experiment {est.experiment})", ""]
    rows: dict[str, int] = {}
    for rule, n in est.counts.items():      # the report rules on one row; `all` last
        key = "report_*" if rule.startswith("report_") else rule
        rows[key] = rows.get(key, 0) + n
    if "all" in rows:
        rows["all"] = rows.pop("all")
    w = max(len(r) for r in list(rows) + ["total"]) + 2
    lines.append(f"{'rule':<{w}}{'jobs':>7}{'GPU-hours':>12}")
    lines.append("-" * (w + 19))
    for rule, n in rows.items():
        gpu = f"{est.gpu_hours(rule):12.1f}" if rule in GPU_RULES else f"{'-':>12}"
        lines.append(f"{rule:<{w}}{n:>7}{gpu}")
    lines.append("-" * (w + 19))
    lines.append(f"{'total':<{w}}{sum(est.counts.values()):>7}{est.gpu_hours():12.1f}")
    if by_run:
        groups: dict[tuple, list[JobCost]] = {}
        for j in est.jobs:
            groups.setdefault((j.wildcards["study"], j.wildcards["run"], j.rule), []).append(j)
        wr = max([len(f"{st}/{r}") for st, r, _ in groups] + [9]) + 2
        lines += ["", f"{'study/run':<{wr}}{'stage':<10}{'jobs':>6}{'GPU-hours':>12}{'img/s':>9}"]
        for (study, run, rule), js in groups.items():
            lines.append(f"{study + '/' + run:<{wr}}{rule:<10}{len(js):>6}{sum(j.gpu_hours for j in js):12.1f}"
                         f"{js[0].throughput:9.0f}")
    lines.append("")
    lines.append("GPU-hours = images through the network / images per second + "
                 f"{JOB_OVERHEAD_S:.0f} s per job; CPU rules ('-') need no GPU.")
    srcs = sorted(est.throughput_sources())
    if "assumed" in srcs:
        lines.append("Throughput ASSUMED (one A100-class GPU, bf16, at 192 px, scaled by (192/size)^2): "
                     + ", ".join(f"{a} {v:.0f}/s" for a, v in DEFAULT_IMAGES_PER_SECOND.items())
                     + "; contrastive pretraining counts 1.5-2 passes per image. Measure yours with "
                       "`medssl cost --measure` and set images_per_second in the config.")
    if "config" in srcs:
        lines.append("Throughput from the config's images_per_second where set.")
    if "measured" in srcs:
        lines.append("Throughput measured on this machine (--measure).")
    by_source: dict[str, list[str]] = {}
    for name, size in est.sizes.items():
        by_source.setdefault(size.source, []).append(f"{name} {size.fg_slices}/{size.slices}")
    for source, items in by_source.items():
        lines.append(f"Slices with foreground/all ({source}): " + ", ".join(items))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Measuring throughput


def measure_throughput(archs, image_size: int, batch_size: int = 16, steps: int = 20, warmup: int = 5,
                       device: str = "auto", out_channels: int = 4) -> dict[tuple[str, int], float]:
    """Time supervised training steps (forward, cross-entropy, backward, Adam) of each architecture.

    Uses the training core's device policy (bf16 autocast and channels_last on CUDA). Returns
    ``{(arch, image_size): images per second}``.
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
        model = dev.prepare_module(models.build(arch, out_channels), device_t)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(batch_size, 1, image_size, image_size, device=device_t)
        x = x.contiguous(memory_format=dev.memory_format(device_t))
        y = torch.randint(0, out_channels, (batch_size, image_size, image_size), device=device_t)
        for i in range(warmup + steps):
            if i == warmup:
                sync()
                t0 = time.perf_counter()
            with dev.autocast(device_t):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return steps * batch_size / (time.perf_counter() - t0)

    return {(arch, image_size): time_arch(arch) for arch in archs}


def config_archs(config: dict) -> dict[int, set[str]]:
    """Architectures the config trains, per image size of their datasets."""
    out: dict[int, set[str]] = {}
    for s in config["studies"].values():
        for rs in s["runs"].values():
            for d in rs["finetune_datasets"] + list(s["pretrain_datasets"]):
                out.setdefault(config["datasets"][d]["image_size"], set()).add(rs["arch"])
    return out
