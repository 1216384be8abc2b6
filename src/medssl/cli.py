"""medssl: the steps of the HSSL and SSMTL studies, one command each.

You normally run the whole study with snakemake (snakemake --cores 2 all); it calls these commands, one
job each. Call medssl yourself for:

  medssl cost --config config/paper.yaml       jobs and GPU-hours of a config, before you run it
  medssl status --config config/paper.yaml     where a run stands: each training job's state and epoch
  medssl plan --config config/paper.yaml       the config with every default written out
  medssl export MODEL OUT --to monai           a trained model's weights for another library
  medssl settings finetune --config ...        the settings record of one job, to run that step by hand

A job command (synthesize, fetch, slice, split, pretrain, finetune, evaluate, features, report, summary)
reads exactly one settings record (--settings: the JSON that `medssl settings` prints, or a file holding
it), the input paths it is given, and where it runs (--device, --threads, --num-workers,
--checkpoint-every); it writes its outputs atomically and logs what it read.

Bad input gets one line on stderr, "medssl: error: <what, naming the file or key>", and exit status 2 (bad
arguments or config), 3 (a dataset that must be downloaded by hand is not in place: the placement
instructions follow) or 1 (anything else refused, e.g. an unsafe model file or a corrupt archive); -v adds
the traceback. SIGTERM (SLURM or Snakemake cancelling a job) exits normally with status 143, so temporary
files are removed on the way out.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import time
from pathlib import Path

from medssl import config as cfg


# ------------------------------------------------------------------------------------------ the jobs

def _synthesize(args, job, runtime):
    from medssl.data.phantoms import write_phantom_dataset

    write_phantom_dataset(job.spec, Path(args.out), n_patients=job.patients, seed=job.seed, scale=job.scale)


def _fetch(args, job, runtime):
    from medssl.data.sources import prepare_source
    from medssl.io import write_json

    root = prepare_source(job.spec, job.resources)
    logging.info("%s ready at %s", job.dataset, root)
    write_json(args.out, {"dataset": job.dataset, "root": str(root)})


def _weights(args, job, runtime):
    from medssl.data.weights import WEIGHTS, fetch_weights

    path = fetch_weights(WEIGHTS[job.name], args.out)
    logging.info("%s weights at %s (SHA-256 checked)", job.name, path)


def _slice(args, job, runtime):
    from medssl.data.listers import list_cases
    from medssl.data.slicing import slice_dataset
    from medssl.data.sources import read_source

    cases = list_cases(job.spec, read_source(args.source), source_format=job.source_format)
    slice_dataset(job, cases, Path(args.out), synthetic=job.synthetic)


def _split(args, job, runtime):
    from medssl.data.splits import make_split, write_split
    from medssl.data.store import SliceStore

    split = make_split(job, SliceStore(args.store), job.label_ratios)
    write_split(split, Path(args.out))
    parts = ", ".join(f"{k} {len(v)}" for k, v in split["patients"].items())
    subsets = ", ".join(f"{k}: {len(v)}" for k, v in split["label_subsets"].items())
    return f"patients {parts}; labelled slices per subset {subsets}"


def _pretrain(args, job, runtime):
    from medssl.train.distributed import launch
    from medssl.train.pretrain import pretrain

    launch(pretrain, job, Path(args.out), stores=args.stores, splits=args.splits, runtime=runtime)


def _finetune(args, job, runtime):
    from medssl.train.finetune import finetune

    finetune(job, Path(args.out), store=args.store, split=args.split, runtime=runtime,
             pretrained=Path(args.pretrained) if args.pretrained else None, metrics=Path(args.metrics),
             predictions=Path(args.predictions) if args.predictions else None,
             model=Path(args.model) if args.model else None)


def _evaluate(args, job, runtime):
    from medssl.train.evaluate import evaluate

    evaluate(job, Path(args.model), Path(args.out), store=args.store, split=args.split, runtime=runtime,
             predictions=Path(args.predictions) if args.predictions else None)


def _features(args, job, runtime):
    from medssl.reports.extract import extract_features

    extract_features(job, Path(args.out), model=args.model, stores=args.stores, vgg19=args.vgg19)


def _report(args, job, runtime):
    from medssl.reports import builders, targets

    inputs = args.inputs[0] if targets.target_info(job.target).kind == "tsne" else args.inputs
    builders.build(job.target, job.config, inputs, *args.outputs)


def _summary(args, job, runtime):
    from medssl.reports.summary import build_summary

    build_summary(job.config, job.study, args.inputs, *args.outputs)


# ------------------------------------------------------------------------------------------ the tools

def _cost(args):
    from medssl import cost

    config = cfg.load_config(args.config)
    if args.pack < 1 or (args.pack > 1 and not args.measure):
        raise UsageError(f"--pack {args.pack}: give a number of jobs >= 1, with --measure")
    if args.measure:
        print(cost.format_measurements(*cost.measure_to_file(config, args.directory, pack=args.pack)))
    est = cost.estimate(config, root=args.directory, config_name=args.config)
    print(cost.format_table(est, by_run=args.by_run))


def _plan(args):
    import yaml

    text = yaml.safe_dump(cfg.load_config(args.config), sort_keys=False)
    if args.out:
        from medssl.io import write_text

        write_text(args.out, text)
    else:
        print(text, end="")


def _status(args):
    from medssl import status

    config = cfg.load_config(args.config)
    if args.watch:
        try:
            status.watch(config, args.directory, args.watch)
        except KeyboardInterrupt:
            pass
        return
    print(status.format_status(config, status.run_status(config, args.directory), args.directory))


def _settings(args):
    from medssl import jobs

    config = cfg.load_config(args.config)
    names = jobs.JOBS[args.kind].wildcards()
    wildcards = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    missing = [k for k in names if k not in wildcards]
    if missing:
        raise UsageError(f"the {args.kind} record needs {', '.join('--' + m for m in missing)}")
    _check_names(config, args.config, wildcards)
    record = jobs.record(config, args.kind, **wildcards)
    print(record.readable() if args.yaml else record.to_json())


def _export(args):
    from medssl.export import export_model, export_recipe

    export_model(args.model, args.out, args.to, args.part)
    print(f"# load {args.out} with:\n{export_recipe(args.model, args.out, args.to, args.part)}")


# ------------------------------------------------------------------------------------------ the parser

class UsageError(ValueError):
    """A command-line value the config does not know (study, run, dataset, pool, ratio)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``medssl: error: <command>: <message> (see <command> --help)``."""

    def error(self, message: str):
        where = self.prog[len("medssl "):] + ": " if self.prog.startswith("medssl ") else ""
        self.exit(2, f"medssl: error: {where}{message} (see {self.prog} --help)\n")


#: each job command: (function, one-line description, example)
JOB_COMMANDS = {
    "synthesize": (_synthesize, "write a dataset's synthetic phantom twin (MSD layout)",
                   "medssl synthesize --settings rec.json --out resources/synthetic/msd_heart/<digest>"),
    "fetch": (_fetch, "download a dataset (md5-checked) or check one placed by hand; write its ready file",
              "medssl fetch --settings rec.json --out resources/ready/msd_heart/<digest>.json"),
    "weights": (_weights, "download published weights (VGG-19 for Figure 3b) or check those placed by hand, by "
                          "their SHA-256", "medssl weights --settings '{\"name\": \"vgg19\"}' --out "
                          "resources/weights/vgg19-dcbb9e9d.pth"),
    "slice": (_slice, "cut a dataset's volumes into its slice store",
              "medssl slice --settings rec.json --source resources/ready/msd_heart/<digest>.json "
              "--out results/demo/data/msd_heart"),
    "split": (_split, "split a dataset's patients into train/val/test and draw the label subsets",
              "medssl split --settings rec.json --store results/demo/data/msd_heart "
              "--out results/demo/splits/msd_heart.json"),
    "pretrain": (_pretrain, "self-supervised pretraining of one run on one pool of datasets",
                 "medssl pretrain --settings rec.json --stores results/demo/data/msd_heart "
                 "--splits results/demo/splits/msd_heart.json --out results/demo/hssl/pretrain/hssl/msd_heart"),
    "finetune": (_finetune, "finetune one run on one dataset, label budget and seed, then test it",
                 "medssl finetune --settings rec.json --store results/demo/data/msd_heart --split "
                 "results/demo/splits/msd_heart.json --out ft/ --metrics ft/seed0.json"),
    "evaluate": (_evaluate, "test a finetuned model file on the test patients",
                 "medssl evaluate --settings rec.json --store ... --split ... --model ft/model.pt "
                 "--out ft/seed0.json"),
    "features": (_features, "features of a pretrained model for the t-SNE figure (HSSL Figure 3b)",
                 "medssl features --settings rec.json --model .../model.pt --stores ... --out features.npz"),
    "report": (_report, "build one table or figure from the metrics files it reads",
               "medssl report --settings rec.json --inputs results/demo/hssl/metrics/... --outputs t.csv t.md t.html"),
    "summary": (_summary, "the summary table and figure of a study that no paper report names",
                "medssl summary --settings rec.json --inputs ... --outputs s.csv s.md s.html s.png"),
}

TRAINING = ("pretrain", "finetune", "evaluate", "features")  # jobs that build a model and take --device


def _runtime_options(p, kind: str) -> None:
    stage = cfg.stage_defaults("finetune")
    top = cfg.defaults()
    g = p.add_argument_group("where it runs (changes no result)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=top["device"],
                   help="auto: CUDA when present, else the CPU (default: %(default)s)")
    g.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: torch's choice)")
    if kind in ("pretrain", "finetune"):
        g.add_argument("--num-workers", type=int, metavar="N", default=stage["num_workers"],
                       help="data loader processes (default: %(default)s, the main process)")
        g.add_argument("--checkpoint-every", type=int, metavar="EPOCHS", default=stage["checkpoint_every"],
                       help="epochs between resume checkpoints (default: %(default)s)")
        g.add_argument("--logger", dest="loggers", action="append", choices=["tensorboard"], default=[],
                       help="also write the scalars for TensorBoard (event files in --out; repeatable; default: "
                            "none)")
        g.add_argument("--compile", action="store_true",
                       help="torch.compile the network's encoder and decoder (default: eager)")
        g.add_argument("--data-on-gpu", choices=["auto", "off"], default=top["data_on_gpu"],
                       help="auto: copy the slice stores to the GPU when they fit in --data-on-gpu-fraction of its "
                            "memory; off: the data loader reads them (default: %(default)s)")
        g.add_argument("--data-on-gpu-fraction", type=float, metavar="SHARE", default=top["data_on_gpu_fraction"],
                       help="share of the GPU's memory the stores may take (default: %(default)s)")
    if kind == "pretrain":
        pre = cfg.stage_defaults("pretrain")
        g.add_argument("--monitor-every", type=int, metavar="EPOCHS", default=pre["monitor_every"],
                       help="epochs between representation-monitor rounds (kNN accuracy, embedding spread), also "
                            "before training and at the end (default: %(default)s)")
        g.add_argument("--monitor-samples", type=int, metavar="N", default=pre["monitor_samples"],
                       help="validation slices per pool dataset the monitor embeds (default: %(default)s)")
        g.add_argument("--gpus", type=int, metavar="N", default=pre["gpus"],
                       help="GPUs (one process each; without GPUs, CPU processes) sharing the global batch; the "
                            "result is that of one process (default: %(default)s)")


def _job_parser(sub, kind: str):
    func, text, example = JOB_COMMANDS[kind]
    p = sub.add_parser(kind, help=text, description=f"{text}.\n\nexample:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", required=True, metavar="RECORD",
                   help="the job's settings record: JSON text, or a file holding it "
                        f"(`medssl settings {'finetune' if kind == 'evaluate' else kind} --config ...` prints it)")
    if kind in TRAINING:
        _runtime_options(p, kind)
    p.set_defaults(func=func, job=kind)
    return p


def _path(p, name: str, text: str, *, required: bool = True, many: bool = False) -> None:
    p.add_argument(f"--{name}", required=required, metavar="PATH", nargs="+" if many else None, help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medssl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _job_parser(sub, "synthesize")
    _path(p, "out", "the twin's folder to write (MSD layout: dataset.json, imagesTr/, labelsTr/)")
    p = _job_parser(sub, "fetch")
    _path(p, "out", "the ready file to write (JSON naming the dataset's root folder)")
    p = _job_parser(sub, "weights")
    _path(p, "out", "the weight file to write (or check, when it is already there)")
    p = _job_parser(sub, "slice")
    _path(p, "source", "a synthetic twin's folder, or a fetch job's ready file")
    _path(p, "out", "the slice store folder to write")
    p = _job_parser(sub, "split")
    _path(p, "store", "the dataset's slice store folder")
    _path(p, "out", "the split JSON file to write")
    p = _job_parser(sub, "pretrain")
    _path(p, "stores", "the pool datasets' slice store folders, in the pool's order", many=True)
    _path(p, "splits", "the pool datasets' split files, in the pool's order", many=True)
    _path(p, "out", "the folder to write model.pt, log.csv and kept epoch<E>.pt into (resumes from its "
                    "checkpoint.pt)")
    for kind in ("finetune", "evaluate"):
        p = _job_parser(sub, kind)
        _path(p, "store", "the dataset's slice store folder")
        _path(p, "split", "the dataset's split file")
        _path(p, "predictions", "the test predictions' .npz to write (default: beside the metrics JSON, "
                                "seed0.json -> seed0_pred.npz)", required=False)
    ft = sub.choices["finetune"]
    _path(ft, "out", "the folder to write log.csv into (resumes from its checkpoint.pt)")
    _path(ft, "pretrained", "the pretrained model file to start from (default: random initialisation)",
          required=False)
    _path(ft, "metrics", "the test metrics JSON to write")
    _path(ft, "model", "also write the finetuned model file here (default: not kept)", required=False)
    ev = sub.choices["evaluate"]
    _path(ev, "model", "the finetuned model file to test")
    _path(ev, "out", "the test metrics JSON to write")
    p = _job_parser(sub, "features")
    _path(p, "model", "the pretrained model file")
    _path(p, "stores", "the pool datasets' slice store folders, in the pool's order", many=True)
    _path(p, "vgg19", "torchvision's VGG-19 weight file, for the record's generic: vgg19", required=False)
    _path(p, "out", "the features .npz to write")
    p = _job_parser(sub, "report")
    _path(p, "inputs", "the metrics JSON files (Figure 5: _pred.npz; Figure 3b: the features .npz) it reads",
          many=True)
    _path(p, "outputs", "the files to write: a table's CSV, Markdown and HTML, or a figure's PNG", many=True)
    p = _job_parser(sub, "summary")
    _path(p, "inputs", "the study's metrics JSON files", many=True)
    p.add_argument("--outputs", nargs=4, required=True, metavar=("CSV", "MD", "HTML", "PNG"),
                   help="the summary table's CSV, Markdown and HTML, and its figure's PNG")

    def tool(name, func, text, example):
        p = sub.add_parser(name, help=text, description=f"{text}.\n\nexample:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func, job=None)
        return p

    def config_option(p):
        p.add_argument("--config", required=True, metavar="YAML",
                       help="a config file (config/config.yaml, config/paper.yaml or your own)")

    p = tool("cost", _cost, "jobs per rule and estimated GPU-hours of a config's workflow",
             "medssl cost --config config/paper.yaml --by-run")
    config_option(p)
    p.add_argument("--by-run", action="store_true", help="also break the GPU-hours down by study/run")
    p.add_argument("--measure", action="store_true",
                   help="time the config's architectures on this machine's device and write the figures to "
                        "results/<experiment>/cost/throughput.yaml, which the estimate and the SLURM walltimes "
                        "then read (a config's images_per_second still wins)")
    p.add_argument("--pack", type=int, default=1, metavar="K",
                   help="with --measure: time K copies of each job side by side on the device (K jobs sharing "
                        "one GPU); a job's GPU-hours are then its walltime / K (default: %(default)s)")
    p.add_argument("--directory", default=".", metavar="PATH",
                   help="workflow directory holding results/, for slice counts and the measured throughput "
                        "file (default: %(default)s)")
    p = tool("status", _status, "where a run stands: every training job's state, epoch, last loss or score, "
             "time spent and left, and the GPU-hours left (reads results/; no snakemake needed)",
             "medssl status --config config/paper.yaml --watch 60")
    config_option(p)
    p.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    p.add_argument("--directory", default=".", metavar="PATH",
                   help="workflow directory holding results/ (default: %(default)s)")
    p = tool("plan", _plan, "the config with every default written out (what results/<experiment>/plan.yaml "
             "holds after a run)", "medssl plan --config config/paper.yaml --out plan.yaml")
    config_option(p)
    p.add_argument("--out", metavar="PATH", help="the YAML file to write (default: print it)")
    p = tool("settings", _settings, "print the settings record of one job of a config, as the workflow hands "
             "it (JSON), for `medssl <job> --settings`", "medssl settings finetune --config config/config.yaml "
             "--study hssl --run hssl --dataset msd_heart --ratio 5 --seed 0 > rec.json")
    p.add_argument("kind", choices=sorted(JOB_COMMANDS.keys() - {"evaluate"}), metavar="JOB",
                   help="the job kind: " + ", ".join(sorted(JOB_COMMANDS.keys() - {"evaluate"})) +
                        " (evaluate reads its finetune job's record)")
    config_option(p)
    for name, text in (("study", "a study of the config"), ("run", "a run of the study"),
                       ("pool", "a pretraining pool: 'all' (multi-domain) or a dataset"),
                       ("dataset", "a dataset of the config"),
                       ("ratio", "a label ratio key: a percentage of data.label_ratios such as 5, or 'scans'"),
                       ("seed", "a finetuning seed (an integer)"), ("target", "a report target, e.g. hssl_table2")):
        p.add_argument(f"--{name}", help=text)
    p.add_argument("--yaml", action="store_true", help="print it as YAML, one key a line (to read, not to pass)")
    p = tool("export", _export, "write a model file's weights as a plain state dict for torchvision, MONAI or "
             "plain PyTorch", "medssl export results/demo/hssl/pretrain/hssl/all/model.pt encoder.pt --to state_dict")
    p.add_argument("model", help="a medssl model file (model.pt, epoch<E>.pt)")
    p.add_argument("out", help="the state dict file to write")
    p.add_argument("--to", required=True, choices=["torchvision", "monai", "state_dict"],
                   help="the library whose parameter names the file gets")
    p.add_argument("--part", default="encoder", choices=["encoder", "all"],
                   help="the encoder alone, or the whole network (default: %(default)s)")
    return parser


# ------------------------------------------------------------------------------------------ running

def _read_record(kind: str, value: str):
    """The settings record of a ``kind`` job from ``--settings`` (JSON text, or a file holding it)."""
    from medssl import jobs

    cls = jobs.JOBS["finetune" if kind == "evaluate" else kind]
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text()
        except OSError as err:
            raise UsageError(f"--settings {value}: neither a JSON record nor a readable file "
                             f"({err.strerror or err})") from None
    return cls.from_json(text)


def _runtime(args):
    from medssl.settings import Runtime

    return Runtime(device=getattr(args, "device", "auto"), threads=getattr(args, "threads", None),
                   num_workers=getattr(args, "num_workers", 0), checkpoint_every=getattr(args, "checkpoint_every", 1),
                   loggers=tuple(getattr(args, "loggers", ())), monitor_every=getattr(args, "monitor_every", None),
                   monitor_samples=getattr(args, "monitor_samples", None), gpus=getattr(args, "gpus", 1),
                   compile=getattr(args, "compile", False), data_on_gpu=getattr(args, "data_on_gpu", "auto"),
                   data_on_gpu_fraction=getattr(args, "data_on_gpu_fraction", 0.25))


def _check_names(config: dict, where: str, wildcards: dict) -> None:
    """Refuse (:class:`UsageError`) a study, run, dataset, pool, ratio or target the config does not define."""
    def known(kind, value, names, what):
        if value not in names:
            raise UsageError(f"--{kind} {value!r} is not in {what} (known: {', '.join(map(str, names)) or 'none'})")

    studies = config.get("studies") or {}
    if "study" in wildcards:
        known("study", wildcards["study"], list(studies), f"the studies of {where}")
        if "run" in wildcards:
            known("run", wildcards["run"], list(studies[wildcards["study"]]["runs"]),
                  f"the runs of study {wildcards['study']}")
    for kind in ("dataset", "pool"):
        if kind in wildcards:
            known(kind, wildcards[kind], list(config["datasets"]) + (["all"] if kind == "pool" else []),
                  f"the datasets of {where}")
    if "ratio" in wildcards:
        keys = [cfg.ratio_key(r) for r in config["data"]["label_ratios"]]
        if config["datasets"][wildcards["dataset"]].get("scans_subset"):
            keys.append("scans")
        known("ratio", wildcards["ratio"], keys, "data.label_ratios" + (" (or 'scans')" if "scans" in keys else ""))
    if "seed" in wildcards:
        try:
            wildcards["seed"] = int(wildcards["seed"])
        except ValueError:
            raise UsageError(f"--seed {wildcards['seed']!r} is not an integer") from None
    if "target" in wildcards:
        known("target", wildcards["target"], list(config.get("reports") or {}), f"the reports of {where}")


def _last_epoch(out: Path) -> str | None:
    """The final row of a training job's ``log.csv`` (epoch, step, losses, validation score)."""
    import csv

    path = out / "log.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return "last epoch: " + ", ".join(f"{k} {v}" for k, v in rows[-1].items() if v not in ("", None))


def _written(args) -> list[Path]:
    """The paths a command was told to write (``--out``, ``--outputs``, ``--metrics``, ``--predictions``)."""
    paths = [getattr(args, "out", None), getattr(args, "metrics", None), getattr(args, "predictions", None),
             getattr(args, "model", None) if args.command == "finetune" else None,
             *(getattr(args, "outputs", None) or [])]
    return [Path(p) for p in paths if p]


def log_closing(args, figures: str | None, seconds: float) -> None:
    """End a job's log with what it wrote and its final figures (the progress bar is gone by then)."""
    logger = logging.getLogger("medssl")
    for path in _written(args):
        if not path.exists():
            continue
        entries = sorted(q for q in path.iterdir() if not q.name.startswith(".")) if path.is_dir() else [path]
        for q in entries:
            files = [q] if q.is_file() else [f for f in q.rglob("*") if f.is_file()]
            size = f"{sum(f.stat().st_size for f in files):,} bytes"
            logger.info("wrote %s (%s)", q, size if q.is_file() else f"{len(files)} files, {size}")
        if path.is_dir() and figures is None:
            figures = _last_epoch(path)
    if figures:
        logger.info("%s: %s", args.command, figures)
    logger.info("%s finished in %.1f s", args.command, seconds)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(143)``: ``finally`` blocks run, temporary files are removed."""
    signal.signal(signal.SIGTERM, _terminate)


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip()).replace(":; ", ": ")


def _manual_dataset_missing(err: BaseException) -> bool:
    """``err`` is a :class:`~medssl.data.manual.ManualDatasetMissing`; only code that imported that module
    raises one, so jobs that never touch raw data do not pay its imports (listers, SimpleITK)."""
    manual = sys.modules.get("medssl.data.manual")
    return manual is not None and isinstance(err, manual.ManualDatasetMissing)


def _run_job(args) -> str | None:
    """Read the record, log it and where the job runs, then run the job."""
    record = _read_record(args.job, args.settings)
    runtime = _runtime(args)
    log = logging.getLogger("medssl")
    log.info("%s job, settings record %s:\n%s", args.command, record.digest(), record.readable())
    if args.job in TRAINING:
        log.info("runs on: %s", ", ".join(f"{k} {v}" for k, v in vars(runtime).items() if v is not None))
    return args.func(args, record, runtime)


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.job is None:  # a tool: cost, status, plan, settings, export
            args.func(args)
            return 0
        started = time.perf_counter()
        figures = _run_job(args)
        log_closing(args, figures, time.perf_counter() - started)
    except (cfg.ConfigError, UsageError) as err:
        print(f"medssl: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError, FloatingPointError) as err:
        if _manual_dataset_missing(err):
            print(f"medssl: error: {err}", file=sys.stderr)  # the placement instructions follow on the next lines
            return 3
        if args.verbose:
            logging.exception("traceback")
        print(f"medssl: error: {_one_line(err)}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The ``medssl`` command: :func:`main`, then the process ends. Python's shutdown would first garbage-collect
    every object that torch and the job created, most of a job's exit time (docs/benchmarks.md):
    :func:`gc.freeze` takes them out of that collection. Outputs are closed by then, and the memory goes with
    the process. Only here, not in :func:`main`, which tests call in their own process."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
