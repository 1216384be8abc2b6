"""Patient-level train/val/test splits and nested label-budget subsets.

File format (``splits/<dataset>.json``, :func:`write_split`): ``dataset``, ``seed``, ``ratios`` or ``counts``
(as the config gives them; the other is null), ``patients`` = ``{"train": [...], "val": [...], "test": [...]}``
(sorted patient ids), ``label_subsets`` = ``{ratio key: [[case, slice], ...]}`` (``"5"``, ..., ``"scans"``),
``scans_subset`` (``[n_scans, per_scan]`` or null) and ``scans_subset_sampling``.

Choices (all deterministic for ``settings.split["seed"]``):

* **Patients.** Patient ids of the store are sorted, then shuffled with
  ``numpy.random.default_rng(seed).permutation``; train, val and test take consecutive runs of that order
  (each list is written sorted). All cases of a patient (ACDC/M&Ms ED and ES) follow the patient.
* **Counts from ratios.** Ratios are normalised to sum 1, counts are the floors of ``ratio * n`` plus the
  remaining patients given by largest remainder (ties: train, val, test). Then every split with a positive
  ratio that got 0 patients takes one from the largest split (which keeps >= 1), so 3 patients at 7:1:2
  give 1/1/1, 10 give 7/1/2 and 20 give 14/2/4. Fewer patients than splits with positive ratio is an
  error. With ``counts`` = [a, b, c] the first a, b, c patients of the order are used and the rest are left
  out; more than the store holds is an error.
* **Label subsets** (key ``ratio_key(r)`` per label ratio r in percent). The "labelled images" are the
  training patients' slices with foreground, or all their slices if the dataset has no foreground at all
  in training. They are shuffled once with ``default_rng([seed, 1])`` (in store row order before the
  shuffle); ratio r takes the first ``max(1, ceil(r/100 * n))`` of that order, so smaller budgets are
  always subsets of larger ones (5 within 10 within 50 within 100) and 100 is every labelled slice.
  Each list is written in store row order as ``[case, slice]`` pairs.
* **Scans subset** (key ``"scans"``, when ``settings.scans_subset = [n_scans, per_scan]``; paper B). The
  training patients are shuffled with ``default_rng([seed, 2])``; the first ``n_scans`` of that order
  that have labelled slices are taken (all of them if the training split has fewer), with all their cases
  (scans; MM-WHS has one per patient). Per scan, ``per_scan`` of the scan's ``m`` labelled slices, or all
  of them when ``m <= per_scan``, chosen by ``settings.split["scans_subset_sampling"]``:

  - ``random`` (default; paper B: "We randomly sampled 20 annotated slices from each scan"): a draw without
    replacement with ``default_rng([seed, 3, k])`` for the k-th scan taken (k = 0, 1, ...), so a scan's
    slices do not change when another scan's labelled-slice count does;
  - ``even``: evenly spaced over the scan's labelled slices (indices ``round(i * (m - 1) / (per_scan - 1))``,
    the middle one for ``per_scan = 1``): a lower-variance, more even coverage of the heart, offered as a
    variant (not the paper's protocol).
* Every subset is checked to hold only training-patient slices.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from medssl.config import ratio_key
from medssl.data.store import SliceStore
from medssl.io import read_json, write_json

__all__ = ["make_split", "read_split", "write_split", "split_counts", "SCANS_SUBSET_SAMPLING", "SplitSlices"]

SCANS_SUBSET_SAMPLING = ("random", "even")  # the first is the default


def split_counts(n: int, ratios) -> list[int]:
    """Train/val/test patient counts for ``n`` patients and ``ratios`` (see module docstring)."""
    ratios = [float(r) for r in ratios]
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"split ratios must be 3 non-negative numbers with a positive sum, got {ratios}")
    total = sum(ratios)
    raw = [n * r / total for r in ratios]
    counts = [int(math.floor(x + 1e-9)) for x in raw]
    rest = n - sum(counts)
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    needed = [i for i in range(3) if ratios[i] > 0]
    if n < len(needed):
        raise ValueError(f"{n} patients cannot fill {len(needed)} splits with ratios {ratios}")
    for i in needed:
        if counts[i] == 0:
            donor = max(range(3), key=lambda j: (counts[j], -j))
            counts[donor] -= 1
            counts[i] += 1
    assert sum(counts) == n and all(counts[i] >= 1 for i in needed)
    return counts


def _n_subset(ratio: float, n: int) -> int:
    """``max(1, ceil(ratio% of n))`` without float surprises (0.07 * 100 must give 7, not 8)."""
    k = math.ceil(Fraction(str(float(ratio))) * n / 100)
    return int(min(n, max(1, k)))


def _evenly_spaced(m: int, k: int) -> np.ndarray:
    """``k`` of ``range(m)`` evenly spaced, first and last included (all when ``m <= k``)."""
    if m <= k:
        return np.arange(m)
    if k == 1:
        return np.array([(m - 1) // 2])
    i = np.arange(k)
    return (2 * i * (m - 1) + (k - 1)) // (2 * (k - 1))  # round(i * (m-1) / (k-1)), exact integers


def make_split(settings, store: SliceStore, label_ratios: list[float]) -> dict:
    """Split ``store``'s patients into train/val/test and draw the label subsets (module docstring).
    ``settings``: a split job's record (:class:`medssl.jobs.SplitJob`: ``name``, ``split``, ``scans_subset``)."""
    conf = settings.split
    seed = int(conf["seed"])
    index = store.index
    patients = sorted(set(index["patient"].astype(str)))
    n = len(patients)
    order = [patients[i] for i in np.random.default_rng(seed).permutation(n)]
    counts_cfg = conf.get("counts")
    if counts_cfg is not None:
        counts = [int(c) for c in counts_cfg]
        if len(counts) != 3 or any(c < 0 for c in counts):
            raise ValueError(f"{settings.name}: split counts must be 3 non-negative integers, got {counts}")
        if sum(counts) > n:
            raise ValueError(f"{settings.name}: split counts {counts} need {sum(counts)} patients, the store "
                             f"has {n}")
        ratios = None
    else:
        ratios = [float(r) for r in conf["ratios"]]
        try:
            counts = split_counts(n, ratios)
        except ValueError as err:
            raise ValueError(f"{settings.name}: {err}") from None
    a, b, c = counts
    groups = {"train": sorted(order[:a]), "val": sorted(order[a:a + b]), "test": sorted(order[a + b:a + b + c])}

    patient_col = index["patient"].astype(str).to_numpy()
    case_col = index["case"].astype(str).to_numpy()
    slice_col = index["slice"].to_numpy()
    fg_col = store.sampled  # the slices with foreground of the dataset's sample (all, without sample_slices)
    train_mask = np.isin(patient_col, groups["train"])
    labelled_mask = train_mask & fg_col
    if not labelled_mask.any():
        labelled_mask = train_mask
    labelled = np.flatnonzero(labelled_mask)  # positions in the index, in row order

    def pairs(positions) -> list[list]:
        positions = np.sort(np.asarray(positions, dtype=np.int64))
        return [[str(case_col[p]), int(slice_col[p])] for p in positions]

    subsets: dict[str, list] = {}
    if len(labelled):
        shuffled = labelled[np.random.default_rng([seed, 1]).permutation(len(labelled))]
        for r in sorted({float(x) for x in label_ratios}):
            subsets[ratio_key(r)] = pairs(shuffled[:_n_subset(r, len(labelled))])
    else:
        for r in sorted({float(x) for x in label_ratios}):
            subsets[ratio_key(r)] = []

    scans = settings.scans_subset
    sampling = str(conf["scans_subset_sampling"])
    if sampling not in SCANS_SUBSET_SAMPLING:
        raise ValueError(f"{settings.name}: split scans_subset_sampling must be one of "
                         f"{', '.join(SCANS_SUBSET_SAMPLING)}, got {sampling!r}")
    if scans:
        n_scans, per_scan = int(scans[0]), int(scans[1])
        chosen: list[int] = []
        train = groups["train"]
        n_taken = n_picked = 0
        for i in np.random.default_rng([seed, 2]).permutation(len(train)):
            if n_taken >= n_scans:
                break
            sel = labelled_mask & (patient_col == train[i])
            if not sel.any():
                continue  # a patient without labelled slices has nothing to offer
            for case in sorted(set(case_col[sel])):
                pos = np.flatnonzero(sel & (case_col == case))
                pos = pos[np.argsort(slice_col[pos], kind="stable")]
                if sampling == "even" or len(pos) <= per_scan:
                    pick = _evenly_spaced(len(pos), per_scan)
                else:
                    pick = np.random.default_rng([seed, 3, n_picked]).choice(len(pos), per_scan, replace=False)
                chosen.extend(pos[np.sort(pick)].tolist())
                n_picked += 1
            n_taken += 1
        subsets["scans"] = pairs(chosen)

    # no val/test patient may leak into a training subset
    held_out = set(groups["val"]) | set(groups["test"])
    patient_of_case = dict(zip(case_col, patient_col))
    for key, items in subsets.items():
        leaked = {patient_of_case[c] for c, _ in items} & held_out
        assert not leaked, f"{settings.name}: subset {key} holds slices of held-out patients {sorted(leaked)}"

    return {
        "dataset": settings.name,
        "seed": seed,
        "ratios": ratios,
        "counts": counts if counts_cfg is not None else None,
        "patients": groups,
        "label_subsets": subsets,
        "scans_subset": [int(scans[0]), int(scans[1])] if scans else None,
        "scans_subset_sampling": sampling if scans else None,
    }


def write_split(split: dict, path: str | Path) -> None:
    """Write ``split`` as JSON atomically (``medssl.io.write_json``)."""
    write_json(path, split)


class SplitSlices(list):
    """A label subset's ``[case, slice]`` pairs that remember the split file they come from (``source``), so
    :meth:`~medssl.data.store.SliceStore.rows_of` can name it when they do not fit a store."""

    source: str | None = None


def read_split(path: str | Path) -> dict:
    """A split file (format: module docstring), checked to be one; each label subset is a :class:`SplitSlices`
    naming ``path``. A file that is not valid JSON or has no ``patients`` / ``label_subsets`` raises
    :class:`ValueError` naming it."""
    path = Path(path)
    split = read_json(path)
    if not (isinstance(split, dict) and isinstance(split.get("patients"), dict)
            and isinstance(split.get("label_subsets"), dict)):
        raise ValueError(f"{path}: not a split file (no 'patients' and 'label_subsets'); make it with medssl "
                         f"split")
    for key, pairs in split["label_subsets"].items():
        if not isinstance(pairs, list):
            raise ValueError(f"{path}: label subset {key!r} is not a list of [case, slice] pairs")
        tagged = SplitSlices(pairs)
        tagged.source = str(path)
        split["label_subsets"][key] = tagged
    return split
