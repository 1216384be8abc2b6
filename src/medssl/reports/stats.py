"""Summary statistics for the report tables: mean ± sd over seeds and a paired test per patient.

Paired test (each method against the table's baseline, usually TFS / "w/o pre-training"): the per-volume
score (mean over the foreground classes of the per-volume Dice, IoU or the PSNR) is averaged over the
volumes of one patient and then over the seeds both runs have, and paired by patient. With at least
``WILCOXON_MIN_PAIRS`` patients the two-sided Wilcoxon signed-rank test is used; with fewer (2..5 pairs,
where the exact Wilcoxon p-value cannot fall below 0.0625) the two-sided paired t-test; below 2 pairs no test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

WILCOXON_MIN_PAIRS = 6
TEST_DESCRIPTION = (
    "two-sided paired test per test patient (per-volume score averaged over the patient's volumes and the "
    f"seeds): Wilcoxon signed-rank when there are >= {WILCOXON_MIN_PAIRS} patients, paired t-test when 2-"
    f"{WILCOXON_MIN_PAIRS - 1}")


def finite(values: Iterable) -> list[float]:
    out = []
    for v in values:
        if v is None:
            continue
        v = float(v)
        if math.isfinite(v):
            out.append(v)
    return out


@dataclass(frozen=True)
class Summary:
    mean: float | None
    sd: float | None  # sample sd (ddof=1); None with fewer than 2 values
    n: int


def summarise(values: Iterable) -> Summary:
    vals = finite(values)
    if not vals:
        return Summary(None, None, 0)
    arr = np.asarray(vals, dtype=float)
    sd = float(arr.std(ddof=1)) if arr.size > 1 else None
    return Summary(float(arr.mean()), sd, int(arr.size))


@dataclass(frozen=True)
class PairedTest:
    p: float | None
    test: str  # "wilcoxon" | "paired-t" | "n/a"
    n: int
    mean_diff: float | None  # method - baseline, mean over pairs


def paired_test(method: Mapping[str, float], baseline: Mapping[str, float]) -> PairedTest:
    """Pair two {patient: score} maps by patient and test the difference."""
    keys = sorted(k for k in method if k in baseline and method[k] is not None and baseline[k] is not None
                  and math.isfinite(method[k]) and math.isfinite(baseline[k]))
    n = len(keys)
    if n < 2:
        return PairedTest(None, "n/a", n, None)
    a = np.array([method[k] for k in keys], dtype=float)
    b = np.array([baseline[k] for k in keys], dtype=float)
    d = a - b
    mean_diff = float(d.mean())
    test = "wilcoxon" if n >= WILCOXON_MIN_PAIRS else "paired-t"
    if np.allclose(d, d[0]):  # constant difference: the statistic is degenerate
        return PairedTest(1.0 if abs(d[0]) < 1e-12 else None, test, n, mean_diff)
    from scipy import stats

    if test == "wilcoxon":
        p = float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    return PairedTest(p if math.isfinite(p) else None, test, n, mean_diff)


def significance_marker(p: float | None) -> str:
    if p is None:
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def mean_over_seeds(per_seed: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average several {patient: score} maps key by key."""
    acc: dict[str, list[float]] = {}
    for m in per_seed:
        for k, v in m.items():
            if v is not None and math.isfinite(v):
                acc.setdefault(k, []).append(float(v))
    return {k: float(np.mean(v)) for k, v in acc.items()}
