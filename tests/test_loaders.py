"""Datasets and loaders over tiny hand-written slice stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.data.loaders import (EpochBatchSampler, PoolDataset, SequenceDataset, SliceDataset, batch_to_device,
                                 draw_pairs, make_loader, sequence_anchors)
from medssl.data.store import SliceStore


def make_store(path: Path, case_lengths, *, size: int = 32, n_classes: int = 2, dataset: str = "toy",
               classes=None, patients=None, seed: int = 0, encode_rows: bool = False,
               synthetic: bool = True) -> SliceStore:
    """Write a tiny store: per case a bright disc (class 1; class 2 a smaller disc) on noise.

    ``encode_rows``: every pixel of row r equals r/128 (exact in float16), to check which rows a loader read.
    ``patients``: patient id per case (default: the case id).
    """
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    n = int(sum(case_lengths))
    images = np.zeros((n, size, size), np.float16)
    labels = np.zeros((n, size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    recs = []
    r = 0
    classes = classes or [f"class{k}" for k in range(1, n_classes)]
    for ci, length in enumerate(case_lengths):
        case = f"case{ci}"
        patient = patients[ci] if patients else case
        for s in range(length):
            img = rng.random((size, size)) * 0.2
            lab = np.zeros((size, size), np.uint8)
            if 0 < s < length - 1:  # first and last slice: background only
                cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
                rad = size / 5 + rng.random() * 2
                disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= rad ** 2
                lab[disc] = 1
                img[disc] += 0.6
                if n_classes > 2:
                    inner = (yy - cy) ** 2 + (xx - cx) ** 2 <= (rad / 2) ** 2
                    lab[inner] = 2
                    img[inner] += 0.15
            images[r] = (r / 128.0) if encode_rows else np.clip(img, 0, 1)
            labels[r] = lab
            rec = {"row": r, "case": case, "patient": patient, "slice": s, "n_slices": length,
                   "fg": int(lab.any())}
            for k in range(1, n_classes):
                rec[f"c{k}"] = int((lab == k).any())
            recs.append(rec)
            r += 1
    np.save(path / "images.npy", images)
    np.save(path / "labels.npy", labels)
    pd.DataFrame(recs).to_csv(path / "index.csv", index=False)
    meta = {"dataset": dataset, "title": dataset, "modality": "MRI", "classes": classes,
            "n_classes": n_classes, "image_size": size, "slice_axis": "axial", "synthetic": synthetic,
            "task": None, "group": None, "n_cases": len(case_lengths), "n_slices": n,
            "normalisation": {}, "spacing": {}}
    (path / "meta.json").write_text(json.dumps(meta))
    return SliceStore(path)


@pytest.fixture
def seq_store(tmp_path):
    return make_store(tmp_path / "seq", [5, 7, 3, 11], size=32, encode_rows=True)


def rows_of_images(t: torch.Tensor) -> np.ndarray:
    return np.rint(t.float().reshape(len(t), -1)[:, 0].numpy() * 128).astype(int)


def test_slice_dataset_batch(tmp_path):
    store = make_store(tmp_path / "s", [4, 6], encode_rows=True)
    ds = SliceDataset(store, [7, 2, 5], task=3, group=1, labels=True)
    b = ds.__getitems__([0, 1, 2])
    assert b["image"].shape == (3, 1, 32, 32) and b["image"].dtype == torch.float16
    assert b["label"].shape == (3, 32, 32) and b["label"].dtype == torch.uint8
    assert rows_of_images(b["image"]).tolist() == [7, 2, 5] == b["row"].tolist()
    assert b["task"].tolist() == [3, 3, 3] and b["group"].tolist() == [1, 1, 1]
    single = ds[1]
    assert single["image"].shape == (1, 32, 32) and int(single["row"]) == 2
    dev = batch_to_device(b, torch.device("cpu"))
    assert dev["image"].dtype == torch.float32 and dev["label"].dtype == torch.int64


def test_sequence_anchors_respect_scans(seq_store):
    start, stop = seq_store.case_start, seq_store.case_stop
    # cases: rows 0-4 (5), 5-11 (7), 12-14 (3), 15-25 (11); t = 2
    a = sequence_anchors(start, stop, 2, pair=False)
    assert a.tolist() == [2, 7, 8, 9] + list(range(17, 24))
    ap = sequence_anchors(start, stop, 2, pair=True)
    assert 2 not in ap.tolist()  # a scan of exactly 2t+1 slices: the middle one has no k
    assert ap.tolist() == [7, 8, 9] + list(range(17, 24))


@pytest.mark.parametrize("t", [1, 2, 3])
def test_sequence_dataset_never_crosses_scans(seq_store, t):
    ds = SequenceDataset(seq_store, offset=t, pair=True, seed=0)
    start, stop = seq_store.case_start, seq_store.case_stop
    for epoch in range(3):
        sampler = EpochBatchSampler(len(ds), 4, shuffle=True, drop_last=False, seed=1)
        sampler.set_epoch(epoch)
        for items in sampler:
            b = ds.__getitems__(items)
            j = rows_of_images(b["image"])
            assert (j == b["row"].numpy()).all()
            prev, nxt, k = rows_of_images(b["prev"]), rows_of_images(b["next"]), rows_of_images(b["pair"])
            assert (prev == j - t).all() and (nxt == j + t).all()
            for jj, kk in zip(j, k):
                assert start[jj] <= jj - t and jj + t < stop[jj]
                assert start[jj] <= kk < stop[jj]
                assert t + 1 <= abs(kk - jj) <= 2 * t


def test_draw_pairs_uniform_over_admissible_set():
    rng = np.random.default_rng(0)
    anchors = np.full(20000, 10)
    k = draw_pairs(anchors, np.zeros(20000, int), np.full(20000, 14), 2, rng)  # scan rows 0..13
    vals, counts = np.unique(k, return_counts=True)
    assert vals.tolist() == [6, 7, 13]  # {6,7} ∪ {13,14} clipped to < 14
    assert np.allclose(counts / counts.sum(), 1 / 3, atol=0.02)


def test_sequence_candidates_restrict_anchors(seq_store):
    fg = seq_store.rows(foreground_only=True)
    ds = SequenceDataset(seq_store, fg, offset=1, pair=False)
    assert set(ds.anchors) <= set(fg)
    b = ds.__getitems__(list(range(len(ds))))
    # neighbours may be background slices of the same scan
    assert (rows_of_images(b["prev"]) == ds.anchors - 1).all()


def test_epoch_sampler_deterministic():
    s = EpochBatchSampler(10, 4, seed=3, drop_last=True)
    assert len(s) == 2
    s.set_epoch(1)
    a = [[i for i, _ in b] for b in s]
    s.set_epoch(1)
    assert a == [[i for i, _ in b] for b in s]
    s.set_epoch(2)
    assert a != [[i for i, _ in b] for b in s]
    assert len(EpochBatchSampler(10, 4, drop_last=False)) == 3
    assert len(EpochBatchSampler(3, 4, drop_last=True)) == 1  # smaller than a batch: one batch
    assert len(EpochBatchSampler(100, 4, max_batches=5)) == 5
    s2 = EpochBatchSampler(10, 4, shuffle=False, drop_last=False)
    assert [i for b in s2 for i, _ in b] == list(range(10))


def test_pool_dataset_keeps_order(tmp_path):
    a = make_store(tmp_path / "a", [3, 3], encode_rows=True)
    b = make_store(tmp_path / "b", [4], encode_rows=True)
    pool = PoolDataset([SliceDataset(a, task=0, group=0), SliceDataset(b, task=1, group=1)])
    assert len(pool) == 10
    batch = pool.__getitems__([(7, (0, 0, 0)), (1, (0, 0, 0)), (9, (0, 0, 0)), (0, (0, 0, 0))])
    assert batch["task"].tolist() == [1, 0, 1, 0]
    assert batch["row"].tolist() == [1, 1, 3, 0]
    assert rows_of_images(batch["image"]).tolist() == [1, 1, 3, 0]


def test_loader_workers_match_main_process(seq_store):
    ds = SequenceDataset(seq_store, offset=1, pair=True, seed=0)
    out = []
    for workers in (0, 2):
        loader = make_loader(ds, 4, seed=5, num_workers=workers, drop_last=False)
        loader.batch_sampler.set_epoch(2)
        out.append([(b["row"].tolist(), b["pair_row"].tolist()) for b in loader])
    assert out[0] == out[1]


def test_fill_makes_every_batch_full_and_covers_the_set():
    from medssl.data.loaders import EpochBatchSampler

    small = EpochBatchSampler(3, 8, fill=True, seed=1)
    small.set_epoch(1)
    batches = list(small)
    assert len(batches) == 1 and len(batches[0]) == 8 and {i for i, _ in batches[0]} == {0, 1, 2}
    big = EpochBatchSampler(20, 8, fill=True, seed=1)
    big.set_epoch(2)
    batches = list(big)
    assert [len(b) for b in batches] == [8, 8, 8]
    assert {i for b in batches for i, _ in b} == set(range(20))
    again = EpochBatchSampler(20, 8, fill=True, seed=1)
    again.set_epoch(2)
    assert list(again) == batches
