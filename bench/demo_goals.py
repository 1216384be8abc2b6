"""Does the demo learn? The learning goals of issue 10, read from a finished run's metrics files.

Prints, per goal, the figure and its bar; with ``--check`` exits 1 when one is missed (CI runs it after the
demo's ``all``). A metric far above the trivial baseline is the evidence that the models trained:

* HSSL-paper studies (segmentation): slice-pooled test Dice, mean over the cells at 100 % labels >= 70 %,
  none of them below 40 %; mean over the cells at the smaller label ratios >= 40 %.
* SSMTL-paper segmentation studies: mean slice-pooled mIoU >= 0.40.
* Denoising studies: every model's PSNR >= the noisy input's PSNR + 3 dB.

    python bench/demo_goals.py [--config config/config.yaml] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from medssl import config as cfg
from medssl.layout import Layout
from medssl.reports.metrics import read_metrics


def goals(config: dict) -> list[tuple[str, float, str, bool]]:
    """(what, figure, bar, met) per goal, from the metrics files under the experiment's results folder."""
    root = Layout.of(config).root
    by_study: dict[str, list[dict]] = {}
    for path in sorted(root.glob("*/metrics/*/*/*/seed*.json")):
        m = read_metrics(path)
        by_study.setdefault(m["study"], []).append(m)
    full, small, miou, margins = [], [], [], []
    for study, ms in by_study.items():
        paper = config["studies"][study].get("paper")
        denoise = cfg.study_options(config, study)["downstream"] == "denoising"
        for m in ms:
            if denoise:
                margins.append((m["psnr"] - m["noisy_psnr"], f"{m['run']} {m['psnr']:.2f} dB"))
            elif paper == "hssl":
                (full if m["ratio"] == "100" else small).append(m["slice_pooled"]["mean_dice"])
            elif paper == "ssmtl":
                miou.append(m["slice_pooled"]["miou"])
    out = []

    def add(what, values, bar, ok, fmt="{:.1%}"):
        if values:
            out.append((what, fmt.format(values), bar, ok))
        else:
            out.append((what, "no cells", bar, False))

    add(f"HSSL study, 100 % labels: mean Dice over {len(full)} cells", full and statistics.mean(full), ">= 70 %",
        bool(full) and statistics.mean(full) >= 0.70)
    add("HSSL study, 100 % labels: lowest cell", full and min(full), ">= 40 %", bool(full) and min(full) >= 0.40)
    add(f"HSSL study, smaller label ratios: mean Dice over {len(small)} cells", small and statistics.mean(small),
        ">= 40 %", bool(small) and statistics.mean(small) >= 0.40)
    add(f"SSMTL segmentation: mean mIoU over {len(miou)} cells", miou and statistics.mean(miou), ">= 0.40",
        bool(miou) and statistics.mean(miou) >= 0.40, "{:.3f}")
    worst = min(margins, default=None)
    add(f"Denoising: smallest gain over the noisy input ({len(margins)} models"
        + (f"; {worst[1]})" if worst else ")"), worst and worst[0], ">= 3 dB",
        worst is not None and worst[0] >= 3.0, "{:+.2f} dB")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = p.parse_args(argv)
    config = cfg.load_config(Path(args.config))
    rows = goals(config)
    for what, figure, bar, ok in rows:
        print(f"{'ok' if ok else 'MISSED':6s} {what}: {figure} (goal {bar})")
    missed = [r for r in rows if not r[3]]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
