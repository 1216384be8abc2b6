"""``python -m medssl.reports``: build one report target (see :mod:`medssl.reports`)."""

from __future__ import annotations

import argparse
import sys

from medssl import config as cfg
from medssl.reports import builders, targets
from medssl.layout import Layout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m medssl.reports", description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--target", choices=list(targets.TARGETS))
    p.add_argument("--inputs", nargs="*", help="results/<exp> folder or the input files (default: results/<exp>)")
    p.add_argument("--outputs", nargs="*", help="output files (default: results/<exp>/tables|figures/<target>.*)")
    p.add_argument("--allow-missing", action="store_true", help="missing metrics -> '—' cells instead of an error")
    p.add_argument("--list", action="store_true", help="print the configured targets and their input files")
    args = p.parse_args(argv)
    config = cfg.load_config(args.config)
    if args.list:
        for t in targets.configured_targets(config):
            print(t, len(targets.required_files(config, t)), "inputs ->",
                  " ".join(map(str, targets.outputs(config, t))))
        return 0
    if not args.target:
        p.error("--target is required unless --list")
    inputs = args.inputs or [str(Layout.of(config).root)]
    kind = targets.target_info(args.target).kind
    if kind == "tsne":
        inputs = args.inputs[0] if args.inputs else str(targets.tsne_spec(config, args.target).features)
    if kind == "datasets":  # the stores and split files
        inputs = args.inputs or [str(p) for p in targets.required_files(config, args.target)]
    kwargs = {"allow_missing": True} if args.allow_missing and kind not in ("tsne", "datasets") else {}
    builders.build(args.target, config, inputs, *(args.outputs or []), **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
