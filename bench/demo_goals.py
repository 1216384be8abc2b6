"""Does the demo learn? The learning goals of issue 10, read from a finished run's metrics files.

Prints, per goal, the figure and its bar; with ``--check`` exits 1 when one is missed (CI runs it after the
demo's ``all``). A metric far above the trivial baseline is the evidence that the models trained:

* HSSL-paper studies (segmentation): slice-pooled test Dice, mean over the cells at 100 % labels >= 70 %,
  none of them below 40 %; mean over the cells at the smaller label ratios >= 40 %.
* SSMTL-paper segmentation studies: mean slice-pooled mIoU >= 0.40.
* Denoising studies: every model's PSNR >= the noisy input's PSNR + 3 dB.
* Figure 3b's features (t-SNE): leave-one-out 5-nearest-neighbour accuracy of F_task by task >= 0.50 (chance
  1/8 for the demo's 8 balanced tasks) and of F_group by group >= 0.75 (chance: the largest group's share),
  in the standardised feature space the t-SNE embeds: the heads keep tasks and groups apart.

    python bench/demo_goals.py [--config config/config.yaml] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from medssl import config as cfg
from medssl.layout import Layout
from medssl.reports.metrics_files import read_metrics


def knn_accuracy(features, labels, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of ``labels`` in standardised ``features`` (ties: lowest)."""
    import numpy as np

    x = np.asarray(features, dtype=np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    y = np.asarray(labels)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1, kind="stable")[:, :k]
    votes = np.array([np.bincount(y[i], minlength=y.max() + 1).argmax() for i in near])
    return float((votes == y).mean())


def feature_goals(root: Path) -> list[tuple[str, str, str, bool]]:
    """The separation goals of every features file (Figure 3b's input) under the experiment's folder."""
    import numpy as np

    out = []
    for path in sorted(root.glob("*/features/*.npz")):
        with np.load(path, allow_pickle=False) as z:
            for feature, label, bar in (("F_task", "task", 0.50), ("F_group", "group", 0.75)):
                acc = knn_accuracy(z[feature], z[label])
                chance = np.bincount(z[label]).max() / len(z[label])
                out.append((f"t-SNE features {path.parent.parent.name}/{path.stem}: {feature} 5-NN {label} accuracy "
                            f"(chance {chance:.2f})", f"{acc:.2f}", f">= {bar:.2f}", acc >= bar))
    return out


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
        denoise = config["studies"][study]["downstream"] == "denoising"
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
    return out + (feature_goals(root) or [("t-SNE features", "no features file", "separated", False)])


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
