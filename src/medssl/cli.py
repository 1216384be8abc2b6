"""Command-line interface: the only entry point the Snakemake rules call.

Every subcommand takes ``--config`` (validated against the schema) and writes its outputs atomically.
Heavy imports (torch, SimpleITK) happen inside the subcommands so ``medssl --help`` stays fast.

Bad input gets one line on stderr, ``medssl: error: <what, naming the file/key/name>``, and a non-zero exit
status (2: bad arguments or config, 3: a manual dataset is not in place, with the placement instructions
after that line, 1: any other refused input, e.g. an unsafe model file or a corrupt archive); ``-v`` adds
the traceback. SIGTERM (e.g. Slurm or Snakemake cancelling a job) becomes a normal exit (status 143), so
temporary files are removed on the way out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from medssl import config as cfg


class UsageError(ValueError):
    """A command-line value the config does not know (study, run, dataset, pool, ratio)."""


def _synthesize(args, config):
    from medssl import registry
    from medssl.data.phantoms import write_phantom_dataset

    settings = cfg.dataset_settings(config, args.dataset)
    write_phantom_dataset(registry.get(args.dataset, config), Path(args.out), n_patients=settings.synthetic_patients,
                          seed=settings.synthetic_seed, scale=settings.synthetic_scale)


def _fetch(args, config):
    from medssl.data.sources import prepare_source

    from medssl.io import write_json

    root = prepare_source(config, args.dataset)
    logging.info("%s ready at %s", args.dataset, root)
    write_json(args.out, {"dataset": args.dataset, "root": str(root)})


def _slice(args, config):
    from medssl.data.slicing import slice_dataset
    from medssl.data.sources import list_source_cases

    settings = cfg.dataset_settings(config, args.dataset)
    cases = list_source_cases(config, args.dataset)
    slice_dataset(settings, cases, Path(args.out), synthetic=bool(config.get("synthetic", False)))


def _split(args, config):
    from medssl.data.splits import make_split, write_split
    from medssl.data.store import SliceStore

    settings = cfg.dataset_settings(config, args.dataset)
    split = make_split(settings, SliceStore(args.store), cfg.label_ratios(config))
    write_split(split, Path(args.out))
    parts = ", ".join(f"{k} {len(v)}" for k, v in split["patients"].items())
    subsets = ", ".join(f"{k}: {len(v)}" for k, v in split["label_subsets"].items())
    return f"patients {parts}; labelled slices per subset {subsets}"


def _pretrain(args, config):
    from medssl.train.pretrain import pretrain

    patients = config["studies"][args.study].get("pretrain_patients", "all")
    pretrain(config, args.study, args.run, args.pool, Path(args.out), patients=patients,
             store_dirs=args.stores, split_files=args.splits)


def _finetune(args, config):
    from medssl.train.finetune import finetune

    pretrained = Path(args.pretrained) if args.pretrained else None
    metrics = Path(args.metrics) if args.metrics else None
    finetune(config, args.study, args.run, args.dataset, args.ratio, int(args.seed), Path(args.out), pretrained,
             metrics=metrics, save_model=metrics is None or args.keep_model, store_dir=args.store,
             split_file=args.split, predictions=args.predictions)


def _evaluate(args, config):
    from medssl.train.evaluate import evaluate

    evaluate(config, args.study, args.run, args.dataset, args.ratio, int(args.seed), Path(args.model),
             Path(args.out), store_dir=args.store, split_file=args.split, predictions=args.predictions)


def _cost(args, config):
    from medssl import cost

    measured = None
    if args.measure:
        measured = {}
        for size, archs in sorted(cost.config_archs(config).items()):
            measured.update(cost.measure_throughput(sorted(archs), size, device=config.get("device", "auto")))
        for (arch, size), ips in sorted(measured.items()):
            print(f"measured {arch} at {size} px: {ips:.1f} training images/s")
    est = cost.estimate(config, root=args.directory, config_name=args.config, measured=measured)
    print(cost.format_table(est, by_run=args.by_run))


def _features(args, config):
    from medssl.reports.extract import extract_features
    from medssl.reports.targets import tsne_spec

    spec = tsne_spec(config)
    extract_features(config, args.study, args.run, Path(args.out), per_task=spec.per_task, seed=spec.seed,
                     model=args.model, store_dirs=args.stores)


def _report(args, config):
    from medssl.reports import builders, targets

    inputs = args.inputs
    if targets.target_info(args.target).kind == "tsne":
        inputs = inputs[0]
    builders.build(args.target, config, inputs, *args.outputs)


def _export(args, config):
    from medssl.export import export_model

    export_model(args.model, args.out, args.to, args.part)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``medssl: error: <command>: <message> (see <command> --help)``."""

    def error(self, message: str):
        where = self.prog[len("medssl "):] + ": " if self.prog.startswith("medssl ") else ""
        self.exit(2, f"medssl: error: {where}{message} (see {self.prog} --help)\n")


def _summary(args, config):
    from medssl.reports.summary import build_summary

    build_summary(config, args.study, args.inputs, *args.outputs)


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
             *(getattr(args, "outputs", None) or [])]
    return [Path(p) for p in paths if p]


def log_closing(args, figures: str | None, seconds: float) -> None:
    """End a job's log with what it wrote and its final figures (the progress bar is gone by then)."""
    logger = logging.getLogger("medssl")
    for path in _written(args):
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medssl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, func, help_text, *options):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="YAML config (validated against the schema)")
        p.add_argument("--settings", help="digest of the settings the job must run with (medssl.jobs; the "
                       "workflow passes its rule's params), checked before anything runs")
        for opt in options:
            p.add_argument(f"--{opt}", required=opt != "pretrained", type=int if opt == "seed" else str)
        p.set_defaults(func=func)
        return p

    def pool_inputs(p, *names):  # a pool job's inputs: one path per pool dataset, in the pool's order
        for name in names:
            p.add_argument(f"--{name}", nargs="+", required=True, metavar="PATH",
                           help=f"the pool datasets' {name}, one per dataset in the pool's order")

    command("synthesize", _synthesize, "write a dataset's synthetic phantom twin (MSD layout)", "dataset", "out")
    command("fetch", _fetch, "download (md5-checked) or check a manual dataset", "dataset", "out")
    command("slice", _slice, "slice a dataset's volumes into a slice store", "dataset", "out")
    command("split", _split, "patient split and nested label subsets", "dataset", "store", "out")
    pt = command("pretrain", _pretrain, "self-supervised pretraining of one run on one pool",
                 "study", "run", "pool", "out")
    pool_inputs(pt, "stores", "splits")
    ft = command("finetune", _finetune, "finetune one run on one dataset, label ratio and seed",
                 "study", "run", "dataset", "ratio", "seed", "store", "split", "out", "pretrained")
    ft.add_argument("--metrics", help="also evaluate the selected model on the test patients in this process "
                    "(as `medssl evaluate` would): write this metrics JSON and its _pred.npz beside it; the "
                    "finetuned model.pt is then written only with --keep-model")
    ft.add_argument("--keep-model", action="store_true", help="with --metrics: write model.pt as well")
    ev = command("evaluate", _evaluate, "evaluate a finetuned model on the test patients",
                 "study", "run", "dataset", "ratio", "seed", "store", "split", "model", "out")
    for p in (ft, ev):
        p.add_argument("--predictions", help="the test predictions' .npz for the figures (default: beside "
                       "the metrics JSON, seed0.json -> seed0_pred.npz)")
    p = command("cost", _cost, "jobs per rule and estimated GPU-hours of a config's workflow")
    p.add_argument("--by-run", action="store_true", help="also break the GPU-hours down by study/run")
    p.add_argument("--measure", action="store_true",
                   help="time the config's architectures on this machine's device and use those numbers")
    p.add_argument("--directory", default=".", help="workflow directory holding results/ (default: .)")
    features = command("features", _features, "features of a pretrained model for the t-SNE figure",
                       "study", "run", "model", "out")
    pool_inputs(features, "stores")
    report = command("report", _report, "build one table or figure from its input files", "target")
    report.add_argument("--inputs", nargs="+", required=True)
    report.add_argument("--outputs", nargs="+", required=True)
    summary = command("summary", _summary, "the generic summary table and figure of a study no paper report "
                      "names", "study")
    summary.add_argument("--inputs", nargs="+", required=True)
    summary.add_argument("--outputs", nargs=4, required=True, metavar=("CSV", "MD", "HTML", "PNG"))
    export = sub.add_parser("export", help="write a model's weights as a plain state dict for torchvision, "
                            "MONAI or plain PyTorch (no --config)")
    export.add_argument("model", help="a medssl model file (model.pt, epoch<E>.pt)")
    export.add_argument("out", help="the state dict file to write")
    export.add_argument("--to", required=True, choices=["torchvision", "monai", "state_dict"])
    export.add_argument("--part", default="encoder", choices=["encoder", "all"])
    export.set_defaults(func=_export)
    return parser


# Commands that build models (they import torch anyway) check the config's methods and architectures against
# their registries too; the others skip that import (~2 s a job: the workflow checked it all when parsed).
MODEL_COMMANDS = ("pretrain", "finetune", "evaluate", "features", "cost")


def _check_settings(args, config) -> None:
    """Start a job's log with the settings it runs with (medssl.jobs) and their digest; with ``--settings``
    (the digest the workflow scheduled the job with, its rule's params), refuse to run on other settings."""
    import inspect

    from medssl import jobs

    if args.command not in jobs.SETTINGS:
        return
    fields = list(inspect.signature(jobs.SETTINGS[args.command]).parameters)[1:]
    settings = jobs.settings_of(config, args.command, **{k: getattr(args, k) for k in fields})
    digest = jobs.digest(settings)
    logging.getLogger("medssl").info("settings %s: %s", digest, json.dumps(settings, sort_keys=True))
    if args.settings and args.settings != digest:
        raise cfg.ConfigError(f"{args.config}: the settings of this {args.command} job (digest {digest}) are not "
                              f"those the workflow scheduled it with ({args.settings}); the config changed while "
                              "the workflow ran: run snakemake again")


def _known(kind: str, value: str, known, where: str) -> None:
    if value not in known:
        raise UsageError(f"--{kind} {value!r} is not in {where} (known: {', '.join(map(str, known)) or 'none'})")


def check_names(args, config: dict | None) -> None:
    """Refuse (:class:`UsageError`) a study, run, dataset, pool or ratio the config does not define."""
    if config is None:
        return
    study = getattr(args, "study", None)
    if study is not None:
        _known("study", study, list(config.get("studies", {})), f"the studies of {args.config}")
        run = getattr(args, "run", None)
        if run is not None:
            _known("run", run, list(config["studies"][study]["runs"]), f"the runs of study {study}")
    for kind in ("dataset", "pool"):
        value = getattr(args, kind, None)
        if value is not None:
            known = list(config["datasets"]) + (["all"] if kind == "pool" else [])
            _known(kind, value, known, f"the datasets of {args.config}")
    ratio = getattr(args, "ratio", None)
    if ratio is not None:
        keys = [cfg.ratio_key(r) for r in cfg.label_ratios(config)]
        dataset = getattr(args, "dataset", None)
        if dataset and (config["datasets"].get(dataset) or {}).get("scans_subset"):
            keys.append("scans")
        _known("ratio", ratio, keys, "data.label_ratios" + (" (or 'scans')" if "scans" in keys else ""))


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


def main(argv: list[str] | None = None, *, delegate_to_server: bool = True) -> int:
    """Run one command; as a fork of the workflow's job server when one is running (:mod:`medssl.server`)."""
    if delegate_to_server and os.environ.get("MEDSSL_SERVER"):
        from medssl.server_client import delegate

        code = delegate(sys.argv[1:] if argv is None else list(argv))
        if code is not None:
            return code
    exit_on_sigterm()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = (cfg.load_config(args.config, registries=args.command in MODEL_COMMANDS)
                  if getattr(args, "config", None) else None)
        check_names(args, config)
        _check_settings(args, config)
        started = time.perf_counter()
        figures = args.func(args, config)
        if args.command != "cost":  # cost prints its table; the others are jobs whose logs end here
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


if __name__ == "__main__":
    sys.exit(main())
