"""Summary statistics for the report tables: mean ± sd over seeds and a paired test per patient.

Paired test (each method against the table's baseline, usually TFS / "w/o pre-training"): the per-volume
score (mean over the foreground classes of the per-volume Dice, IoU or the PSNR) is averaged over the
volumes of one patient and then over the seeds both runs have, and paired by patient. The test is the
two-sided Wilcoxon signed-rank test, and only with at least ``MIN_PAIRS`` patients: with fewer, its exact
p-value cannot fall below 2/2^5 = 0.0625 and a t-test on 2-5 differences rests on a normality nobody can
check, so such a cell says "n < 6" and carries no marker. The p-values of the methods compared with the
baseline in one column of a table (one dataset and label ratio) are Holm-adjusted for their number
(:func:`holm`), and the markers (* p < 0.05, ** p < 0.01) use the adjusted values. The same code serves
real data, where the test splits hold 4-70 patients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

import numpy as np

MIN_PAIRS = 6
TEST_NAME = "wilcoxon"
TOO_FEW = f"n < {MIN_PAIRS}"
TEST_DESCRIPTION = (
    "two-sided Wilcoxon signed-rank test over the test patients (per-volume score averaged over the "
    "patient's volumes and the seeds), Holm-adjusted over the methods compared with the baseline in each "
    f"column; no test (\"{TOO_FEW}\") with fewer than {MIN_PAIRS} patients")


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
    p: float | None  # raw two-sided p-value; None without a test
    test: str  # "wilcoxon" | "n < 6" (too few pairs for a test)
    n: int  # pairs (patients)
    mean_diff: float | None  # method - baseline, mean over pairs
    p_adj: float | None = None  # Holm-adjusted over the comparisons of one table column

    @property
    def tested(self) -> bool:
        return self.test == TEST_NAME


def paired_test(method: Mapping[str, float], baseline: Mapping[str, float]) -> PairedTest:
    """Pair two {patient: score} maps by patient and test the difference (Wilcoxon, >= MIN_PAIRS pairs)."""
    keys = sorted(k for k in method if k in baseline and method[k] is not None and baseline[k] is not None
                  and math.isfinite(method[k]) and math.isfinite(baseline[k]))
    n = len(keys)
    a = np.array([method[k] for k in keys], dtype=float)
    b = np.array([baseline[k] for k in keys], dtype=float)
    mean_diff = float((a - b).mean()) if n else None
    if n < MIN_PAIRS:
        return PairedTest(None, TOO_FEW, n, mean_diff)
    d = a - b
    if np.allclose(d, 0.0, atol=1e-12):  # identical scores: no evidence of a difference
        return PairedTest(1.0, TEST_NAME, n, mean_diff, 1.0)
    from scipy import stats

    p = float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    p = p if math.isfinite(p) else None
    return PairedTest(p, TEST_NAME, n, mean_diff, p)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of m p-values (None = not tested, left out of m and of the result).

    With the tested p-values sorted p_(1) <= ... <= p_(m): p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def holm_adjust(tests: list[PairedTest]) -> list[PairedTest]:
    """The same tests with ``p_adj`` set by :func:`holm` over those that were run."""
    adjusted = holm([t.p if t.tested else None for t in tests])
    return [replace(t, p_adj=a) for t, a in zip(tests, adjusted)]


def significance_marker(test: PairedTest | None) -> str:
    """'**' (adjusted p < 0.01), '*' (< 0.05) or '' (not significant, or no test)."""
    if test is None or not test.tested or test.p_adj is None:
        return ""
    return "**" if test.p_adj < 0.01 else "*" if test.p_adj < 0.05 else ""


def mean_over_seeds(per_seed: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average several {patient: score} maps key by key."""
    acc: dict[str, list[float]] = {}
    for m in per_seed:
        for k, v in m.items():
            if v is not None and math.isfinite(v):
                acc.setdefault(k, []).append(float(v))
    return {k: float(np.mean(v)) for k, v in acc.items()}
