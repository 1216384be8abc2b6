"""Command-line interface: the only entry point the Snakemake rules call.

Every subcommand takes ``--config`` (validated against the schema) and writes its outputs atomically.
Heavy imports (torch, SimpleITK) happen inside the subcommands so ``medssl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medssl import config as cfg


def _synthesize(args, config):
    from medssl import registry
    from medssl.data.phantoms import write_phantom_dataset

    settings = cfg.dataset_settings(config, args.dataset)
    write_phantom_dataset(registry.get(args.dataset), Path(args.out), n_patients=settings.synthetic_patients,
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


def _pretrain(args, config):
    from medssl.train.pretrain import pretrain

    patients = config["studies"][args.study].get("pretrain_patients", "all")
    pretrain(config, args.study, args.run, args.pool, Path(args.out), patients=patients)


def _finetune(args, config):
    from medssl.train.finetune import finetune

    pretrained = Path(args.pretrained) if args.pretrained else None
    finetune(config, args.study, args.run, args.dataset, args.ratio, int(args.seed), Path(args.out), pretrained)


def _evaluate(args, config):
    from medssl.train.evaluate import evaluate

    evaluate(config, args.study, args.run, args.dataset, args.ratio, int(args.seed), Path(args.model),
             Path(args.out))


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
    extract_features(config, args.study, args.run, Path(args.out), per_task=spec.per_task, seed=spec.seed)


def _report(args, config):
    from medssl.reports import targets

    inputs = args.inputs
    if targets.target_info(args.target).kind == "tsne":
        inputs = inputs[0]
    targets.build(args.target, config, inputs, *args.outputs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medssl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, func, help_text, *options):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="YAML config (validated against the schema)")
        for opt in options:
            p.add_argument(f"--{opt}", required=opt != "pretrained")
        p.set_defaults(func=func)
        return p

    command("synthesize", _synthesize, "write a dataset's synthetic phantom twin (MSD layout)", "dataset", "out")
    command("fetch", _fetch, "download (md5-checked) or check a manual dataset", "dataset", "out")
    command("slice", _slice, "slice a dataset's volumes into a slice store", "dataset", "out")
    command("split", _split, "patient split and nested label subsets", "dataset", "store", "out")
    command("pretrain", _pretrain, "self-supervised pretraining of one run on one pool",
            "study", "run", "pool", "out")
    command("finetune", _finetune, "finetune one run on one dataset, label ratio and seed",
            "study", "run", "dataset", "ratio", "seed", "out", "pretrained")
    command("evaluate", _evaluate, "evaluate a finetuned model on the test patients",
            "study", "run", "dataset", "ratio", "seed", "model", "out")
    p = command("cost", _cost, "jobs per rule and estimated GPU-hours of a config's workflow")
    p.add_argument("--by-run", action="store_true", help="also break the GPU-hours down by study/run")
    p.add_argument("--measure", action="store_true",
                   help="time the config's architectures on this machine's device and use those numbers")
    p.add_argument("--directory", default=".", help="workflow directory holding results/ (default: .)")
    command("features", _features, "features of a pretrained model for the t-SNE figure",
            "study", "run", "out")
    report = command("report", _report, "build one table or figure from its input files", "target")
    report.add_argument("--inputs", nargs="+", required=True)
    report.add_argument("--outputs", nargs="+", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = cfg.load_config(args.config)
        args.func(args, config)
    except cfg.ConfigError as err:
        print(f"medssl: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
