"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medssl import scoring as M


def test_confusion_dice_iou_by_hand():
    pred = np.array([0, 1, 1, 2])
    target = np.array([0, 1, 2, 2])
    conf = M.confusion_matrix(pred, target, 4)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = expected[1, 1] = expected[2, 1] = expected[2, 2] = 1
    assert (conf == expected).all()
    dice = M.dice_from_confusion(conf)
    iou = M.iou_from_confusion(conf)
    # class 1: TP 1, FP 1, FN 0 -> Dice 2/3, IoU 1/2; class 2: TP 1, FP 0, FN 1 -> 2/3, 1/2
    assert dice[1] == pytest.approx(2 / 3) and dice[2] == pytest.approx(2 / 3)
    assert iou[1] == pytest.approx(0.5) and iou[2] == pytest.approx(0.5)
    assert dice[0] == pytest.approx(1.0) and iou[0] == pytest.approx(1.0)


def test_absent_class_is_nan_and_left_out_of_means():
    pred = np.array([[0, 1], [1, 0]])
    target = np.array([[0, 1], [0, 0]])
    conf = M.confusion_matrix(pred, target, 3)  # class 2 absent from both
    dice = M.dice_from_confusion(conf)
    assert math.isnan(dice[2]) and math.isnan(M.iou_from_confusion(conf)[2])
    assert dice[1] == pytest.approx(2 / 3)
    assert M.nanmean_foreground(dice) == pytest.approx(2 / 3)  # NaN class 2 left out, background excluded
    s = M.segmentation_summary(conf, ["a", "b"])
    assert s["dice"]["b"] is None and s["mean_dice"] == pytest.approx(2 / 3)
    assert s["miou"] == pytest.approx(0.5)
    # a class present only in the prediction counts as 0
    conf2 = M.confusion_matrix(np.array([2, 0]), np.array([0, 0]), 3)
    assert M.dice_from_confusion(conf2)[2] == 0.0
    assert math.isnan(M.nanmean_foreground([1.0, float("nan"), float("nan")]))


def test_confusion_rejects_bad_labels():
    with pytest.raises(ValueError):
        M.confusion_matrix(np.array([3]), np.array([0]), 3)


def test_psnr_hand_value():
    target = np.array([0.0, 0.0, 0.0, 0.1])
    pred = np.zeros(4)
    # MSE = 0.01 / 4 = 0.0025 -> 10 log10(1 / 0.0025) = 10 log10(400)
    assert M.psnr(pred, target) == pytest.approx(10 * math.log10(400))
    assert M.psnr(pred, target, data_range=2.0) == pytest.approx(10 * math.log10(1600))
    assert M.psnr(target, target) == math.inf


def test_hd95_two_points():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[1, 1] = True
    b[4, 5] = True  # 3-4-5 triangle
    assert M.hd95_binary(a, b) == pytest.approx(5.0)


def test_hd95_concentric_squares():
    # A: 9x9 square, B: 5x5 square centred inside. B's 16 surface pixels are 2 from A's ring; A's ring has
    # 20 pixels at 2, 8 at sqrt(5), 4 corners at sqrt(8): 48 distances, the 95th percentile is sqrt(8).
    a = np.zeros((13, 13), bool)
    b = np.zeros((13, 13), bool)
    a[2:11, 2:11] = True
    b[4:9, 4:9] = True
    d_ab, d_ba = M.surface_distances(a, b)
    assert sorted(np.round(d_ba, 6)) == [2.0] * 16
    assert sorted(np.round(d_ab, 6)) == [2.0] * 20 + [round(math.sqrt(5), 6)] * 8 + [round(math.sqrt(8), 6)] * 4
    assert M.hd95_binary(a, b) == pytest.approx(math.sqrt(8))
    assert M.hd95_binary(a, b, spacing=(2.0, 2.0)) == pytest.approx(2 * math.sqrt(8))


def test_hd95_empty_and_per_class_3d():
    vol_p = np.zeros((3, 8, 8), np.uint8)
    vol_t = np.zeros((3, 8, 8), np.uint8)
    vol_p[1, 2:5, 2:5] = 1
    vol_t[1, 2:5, 2:5] = 1
    vol_t[0, 0, 0] = 2  # class 2 missing in prediction
    hd = M.hd95_per_class(vol_p, vol_t, 4)
    assert hd[1] == 0.0
    assert math.isnan(hd[2]) and math.isnan(hd[3])
    assert math.isnan(M.hd95_binary(np.zeros((4, 4)), np.zeros((4, 4))))


def test_to_json_float():
    assert M.to_json_float(float("nan")) is None and M.to_json_float(0.5) == 0.5


def test_hd95_in_mm_with_the_stores_spacing():
    """Point 8: one truth. The same masks give voxels without spacing and mm with the store's spacing."""
    a = np.zeros((3, 8, 8), bool)
    b = np.zeros((3, 8, 8), bool)
    a[1, 2, 2] = True
    b[1, 2, 6] = True  # 4 columns apart
    assert M.hd95_binary(a, b) == pytest.approx(4.0)
    assert M.hd95_binary(a, b, spacing=(5.0, 0.5, 1.25)) == pytest.approx(4 * 1.25)  # [slices, rows, cols]
    assert "mm" in M.hd95_units_note(["mm", "mm"]) and "mixed" not in M.hd95_units_note(["mm"])
    assert "voxels" in M.hd95_units_note(["voxels", None])
    assert "mixed" in M.hd95_units_note(["mm", "voxels"])
    assert "do not say" in M.hd95_units_note([])


def _tiny_store(path, labels, patients, cases):
    import json

    import pandas as pd

    from medssl.data.store import SliceStore

    n = len(labels)
    rows = [{"row": i, "case": cases[i], "patient": patients[i], "slice": i, "n_slices": n,
             "fg": int(labels[i].any()), "c1": int(labels[i].any())} for i in range(n)]
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "images.npy", np.zeros(labels.shape, np.float16))
    np.save(path / "labels.npy", labels.astype(np.uint8))
    pd.DataFrame(rows).to_csv(path / "index.csv", index=False)
    (path / "meta.json").write_text(json.dumps({"dataset": "d", "n_classes": 2, "classes": ["x"]}))
    return SliceStore(path)


def test_test_slices_follow_the_slice_filter(tmp_path):
    """Point 3: paper A scores the slices it trains on (foreground); every slice is scored beside."""
    import torch

    from medssl.train.downstream import all_slice_scores
    from medssl.train.evaluate import held_out_rows

    labels = np.zeros((6, 2, 2), np.uint8)
    labels[[1, 2]] = 1  # patient a: foreground on slices 1, 2 of 4; patient b: none
    store = _tiny_store(tmp_path / "s", labels, ["a"] * 4 + ["b"] * 2, ["a"] * 4 + ["b"] * 2)
    assert held_out_rows(store, ["a", "b"], "foreground").tolist() == [1, 2]
    assert held_out_rows(store, ["a", "b"], "all").tolist() == [0, 1, 2, 3, 4, 5]
    assert held_out_rows(store, ["b"], "foreground").tolist() == [4, 5]  # no foreground: all its slices

    class Everywhere(torch.nn.Module):  # predicts class 1 on every pixel
        def forward(self, x):
            return torch.cat([torch.zeros_like(x), torch.ones_like(x)], 1)

    scored = held_out_rows(store, ["a", "b"], "foreground")
    pred = np.ones((len(scored), 2, 2), np.uint8)  # the evaluation's prediction on the scored rows
    out = all_slice_scores(Everywhere(), store, store.rows(["a", "b"]), scored, pred, torch.device("cpu"),
                           input_norm="none")
    assert out["n_slices"] == 6
    # all slices: TP 8, FP 16 -> Dice 16 / 32; the foreground slices alone would give 1
    assert out["slice_pooled"]["dice"]["x"] == pytest.approx(0.5)
    assert out["volume_mean"]["dice"]["x"] == pytest.approx(np.mean([16 / 24, 0.0]))  # case a 2/3, case b 0
