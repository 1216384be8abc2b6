"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medssl import metrics as M


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
