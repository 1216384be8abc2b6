"""Pretraining losses against hand-computed values and their defining properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medssl.losses import masked_mse, moco_infonce, moco_logits, nt_xent, reconstruction_mse, simsiam_negcos, ssmtl_pretext

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------- NT-Xent
def _nt_xent_by_hand(za: np.ndarray, zb: np.ndarray, tau: float) -> float:
    """papers.md: L = 1/N sum_pairs [l(a,b) + l(b,a)], l(a,b) = -log e^{s_ab/t} / (e^{s_ab/t} + sum_neg e^{s_an/t})."""
    views = np.concatenate([za, zb], axis=0)
    n = za.shape[0]

    def cos(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    def l(i, j):  # anchor view i, positive view j; negatives: every other view but i and j
        pos = math.exp(cos(views[i], views[j]) / tau)
        neg = sum(math.exp(cos(views[i], views[m]) / tau) for m in range(2 * n) if m not in (i, j))
        return -math.log(pos / (pos + neg))

    total = 0.0
    for p in range(n):
        total += l(p, p + n) + l(p + n, p)
    return total / n


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_matches_hand_loop_two_pairs(tau):
    rng = np.random.default_rng(0)
    za, zb = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    expected = _nt_xent_by_hand(za, zb, tau)
    got = nt_xent(torch.tensor(za), torch.tensor(zb), tau)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    # SimCLR's normalisation 1/(2N) is exactly half of the paper-A (summed directions) value
    assert nt_xent(torch.tensor(za), torch.tensor(zb), tau, directions="mean").item() == pytest.approx(expected / 2)


def test_nt_xent_larger_batch_matches_hand_loop():
    rng = np.random.default_rng(1)
    za, zb = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    assert nt_xent(torch.tensor(za), torch.tensor(zb), 0.3).item() == pytest.approx(_nt_xent_by_hand(za, zb, 0.3))


def test_nt_xent_is_symmetric_in_views_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    assert nt_xent(za, zb, 0.5).item() == pytest.approx(nt_xent(zb, za, 0.5).item(), rel=1e-6)
    assert nt_xent(3 * za, 0.5 * zb, 0.5).item() == pytest.approx(nt_xent(za, zb, 0.5).item(), rel=1e-6)  # cosine


def test_nt_xent_temperature_behaviour():
    # aligned positives (z_b = z_a), negatives orthogonal: lower T -> lower loss
    za = torch.eye(4)
    losses = [nt_xent(za, za.clone(), t).item() for t in (1.0, 0.5, 0.1, 0.05)]
    assert all(a > b for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 1e-3
    # all 2N views identical: every logit equal, l = log(2N-1) for any T; summed over both directions
    same = torch.ones(3, 4)
    for t in (0.1, 1.0, 10.0):
        assert nt_xent(same, same.clone(), t).item() == pytest.approx(2 * math.log(2 * 3 - 1), rel=1e-6)


def test_nt_xent_gradients_flow_to_both_views():
    za = torch.randn(4, 3, requires_grad=True)
    zb = torch.randn(4, 3, requires_grad=True)
    nt_xent(za, zb, 0.5).backward()
    assert za.grad is not None and zb.grad is not None
    assert za.grad.abs().sum() > 0 and zb.grad.abs().sum() > 0


def test_nt_xent_rejects_bad_input():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4), 0.5)
    with pytest.raises(ValueError):
        nt_xent(torch.randn(3, 4), torch.randn(3, 4), 0.5, directions="avg")


# ---------------------------------------------------------------------------------------------------- MoCo
def test_moco_infonce_hand_value():
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    queue = rng.normal(size=(5, 4))
    queue /= np.linalg.norm(queue, axis=1, keepdims=True)
    t = 0.2
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    kn = k / np.linalg.norm(k, axis=1, keepdims=True)
    expected = 0.0
    for i in range(3):
        pos = math.exp(qn[i] @ kn[i] / t)
        neg = sum(math.exp(qn[i] @ queue[j] / t) for j in range(5))
        expected += -math.log(pos / (pos + neg))
    expected /= 3
    got = moco_infonce(torch.tensor(q), torch.tensor(k), torch.tensor(queue), t)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    logits = moco_logits(torch.tensor(q), torch.tensor(k), torch.tensor(queue), t)
    assert logits.shape == (3, 6)
    assert logits[0, 0].item() == pytest.approx(qn[0] @ kn[0] / t)
    assert logits[1, 3].item() == pytest.approx(qn[1] @ queue[2] / t)


# ---------------------------------------------------------------------------------------------------- SimSiam
def test_simsiam_negcos_hand_value_and_stop_gradient():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    z = torch.tensor([[0.0, 2.0], [3.0, 3.0]], requires_grad=True)
    loss = simsiam_negcos(p, z)
    assert loss.item() == pytest.approx(-(0.0 + 1.0) / 2)
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None  # stop-gradient: nothing reaches the target branch
    aligned = torch.randn(4, 6)
    assert simsiam_negcos(aligned * 2, aligned).item() == pytest.approx(-1.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------------- SSMTL
def test_ssmtl_pretext_hand_mse_and_target_pairing():
    g = torch.Generator().manual_seed(3)
    pp, pn, prev, nxt = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(4))
    expected = ((pp - prev) ** 2).mean() + ((pn - nxt) ** 2).mean()
    assert ssmtl_pretext(pp, pn, prev, nxt).item() == pytest.approx(expected.item(), rel=1e-6)
    # each head has its own target: swapping the targets changes the loss
    assert abs(ssmtl_pretext(pp, pn, nxt, prev).item() - expected.item()) > 1e-3


def test_ssmtl_pretext_gradient_of_prev_head_only_from_prev():
    g = torch.Generator().manual_seed(4)
    prev, nxt, nxt2 = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))

    def grads(next_target):
        pp = torch.zeros(2, 1, 4, 4, requires_grad=True)
        pn = torch.zeros(2, 1, 4, 4, requires_grad=True)
        ssmtl_pretext(pp, pn, prev, next_target).backward()
        return pp.grad.clone(), pn.grad.clone()

    gp1, gn1 = grads(nxt)
    gp2, gn2 = grads(nxt2)
    assert torch.equal(gp1, gp2)                       # g- gradient ignores x_{j+t}
    assert not torch.allclose(gn1, gn2)                # g+ gradient follows x_{j+t}
    assert torch.allclose(gp1, 2 * (0 - prev) / prev.numel())  # d MSE / d pred = 2 (pred - target) / n


# ---------------------------------------------------------------------------------------------------- reconstruction
def test_reconstruction_mse_hand_value():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.zeros_like(pred)
    assert reconstruction_mse(pred, target).item() == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_masked_mse_only_masked_region():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    target = torch.zeros(1, 1, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    loss = masked_mse(pred, target, mask)
    assert loss.item() == pytest.approx((1 + 16) / 2)
    loss.backward()
    assert pred.grad[0, 0, 0, 1] == 0 and pred.grad[0, 0, 1, 0] == 0
    assert pred.grad[0, 0, 0, 0] != 0 and pred.grad[0, 0, 1, 1] != 0
    with_ctx = masked_mse(pred, target, mask, outside_weight=0.1)
    assert with_ctx.item() == pytest.approx((1 + 16) / 2 + 0.1 * (4 + 9) / 2)


def test_rotation_ce_is_plain_cross_entropy():
    # the rotation / task / group terms use F.cross_entropy directly: sanity of the 4-way value
    logits = torch.zeros(2, 4)
    assert F.cross_entropy(logits, torch.tensor([0, 3])).item() == pytest.approx(math.log(4))
