"""Pretraining-method registry, the methods' mechanics, batched augmentations, and overfitting a tiny batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medssl import augment
from medssl.losses import moco_infonce, nt_xent, reconstruction_mse, simsiam_negcos, ssmtl_pretext
from medssl.methods import METHODS, PretrainMethod, build_method, method_params, register_method
from medssl.methods.inpainting import square_mask
from medssl.methods.rotation import rotate_batch

torch.set_num_threads(1)

H = 32


# ---------------------------------------------------------------------------------------------- stand-in SegNet
class TinySegNet(nn.Module):
    """Minimal model following the SegNet contract (encode / embed / decode / head, latent_dim,
    feature_channels, parameter prefixes encoder. / neck. / decoder. / head.)."""

    def __init__(self, out_channels: int = 1, width: int = 8, latent_dim: int = 16) -> None:
        super().__init__()
        w = width
        self.encoder = nn.ModuleList([
            nn.Sequential(nn.Conv2d(1, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU()),
            nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU()),
        ])
        self.neck = nn.Linear(3 * w, latent_dim)  # pooled pyramid, concatenated, FC-compressed
        self.decoder = nn.ModuleDict({
            "up": nn.Conv2d(3 * w, w, 3, padding=1),
            "out": nn.Conv2d(w, w, 3, padding=1),
        })
        self.head = nn.Conv2d(w, out_channels, 1)
        self.latent_dim = latent_dim
        self.feature_channels = w

    def encode(self, x):
        feats = []
        for stage in self.encoder:
            x = stage(x)
            feats.append(x)
        return feats

    def embed(self, feats):
        return self.neck(torch.cat([f.mean(dim=(2, 3)) for f in feats], dim=1))

    def decode(self, feats):
        f1, f2 = feats
        y = torch.cat([f1, F.interpolate(f2, size=f1.shape[-2:], mode="nearest")], dim=1)
        y = F.relu(self.decoder["up"](y))
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        return F.relu(self.decoder["out"](y))

    def forward(self, x):
        return self.head(self.decode(self.encode(x)))


def blobs(b: int, seed: int, size: int = H) -> torch.Tensor:
    """(b, 1, size, size) smooth images in [0, 1]: two elongated Gaussian blobs on a vertical ramp (so that
    rotations are distinguishable)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = 0.3 * yy.expand(b, 1, size, size).clone()
    for i in range(b):
        for _ in range(2):
            cy, cx = torch.rand(2, generator=g)
            s = 0.05 + 0.1 * torch.rand(1, generator=g)
            out[i, 0] += torch.exp(-((yy - cy) ** 2 / (2 * s**2) + (xx - cx) ** 2 / (2 * (2.5 * s) ** 2)))
    return out.clamp(0, 1)


def slice_batch(b: int = 6, seed: int = 0, size: int = H) -> dict:
    return {
        "image": blobs(b, seed, size),
        "task": torch.arange(b) % 3,
        "group": torch.arange(b) % 2,
        "row": torch.arange(b),
    }


def sequence_batch(b: int = 6, seed: int = 0, size: int = H) -> dict:
    batch = slice_batch(b, seed, size)
    batch["prev"] = blobs(b, seed + 100, size)
    batch["next"] = blobs(b, seed + 200, size)
    batch["pair"] = blobs(b, seed + 300, size)
    return batch


def make(name: str, backbone=None, **params):
    torch.manual_seed(0)
    backbone = backbone if backbone is not None else TinySegNet()
    return build_method(name, backbone, n_tasks=3, n_groups=2, image_size=H, **params)


# ---------------------------------------------------------------------------------------------- registry
ALL = ["rotation", "inpainting", "moco", "simclr", "hssl", "ssmtl", "ssmtl_plus", "mocov2"]


def test_registry_contents_and_contract():
    assert set(ALL) <= set(METHODS)
    assert "tfs" not in METHODS
    for name in ALL:
        cls = METHODS[name]
        assert issubclass(cls, PretrainMethod) and cls.name == name
        assert cls.sampling == ("sequence" if name.startswith("ssmtl") else "slice")
        assert cls.__doc__ and "Params" in cls.__doc__ or name == "rotation"
        m = make(name)
        assert isinstance(m.backbone, TinySegNet)
        out = m(sequence_batch())
        assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
        for k, v in out.items():
            assert torch.is_tensor(v) and v.numel() == 1, k


def test_build_method_errors_and_params():
    with pytest.raises(ValueError, match="not a pretraining method"):
        build_method("tfs", TinySegNet())
    with pytest.raises(KeyError):
        build_method("nope", TinySegNet())
    with pytest.raises(TypeError, match="unknown params"):
        build_method("simclr", TinySegNet(), temprature=0.1)
    assert method_params(METHODS["moco"])["queue_size"] == 65536
    p2 = METHODS["mocov2"].default_params()
    assert p2["queue_size"] == 1024 and p2["views"] == "flip_blur" and p2["momentum"] == 0.999
    assert p2["temperature"] == 0.2
    hp = METHODS["hssl"].default_params()
    assert hp["lambda_img"] == pytest.approx(1 / 3) and hp["lambda_rec"] == 50.0
    assert METHODS["ssmtl_plus"].default_params()["lambda_sim"] == pytest.approx(1 / 3)


def test_register_method_decorator():
    @register_method("_dummy_for_test")
    class Dummy(PretrainMethod):
        def forward(self, batch):
            return {"loss": self.backbone(batch["image"]).mean()}

    try:
        assert METHODS["_dummy_for_test"] is Dummy and Dummy.name == "_dummy_for_test"
        m = build_method("_dummy_for_test", TinySegNet())
        assert m.sequence_options() == {}
        m.after_step()  # default no-op
        with pytest.raises(ValueError, match="already registered"):
            register_method("_dummy_for_test")(type("Other", (PretrainMethod,), {}))
    finally:
        METHODS.pop("_dummy_for_test", None)


def test_sequence_options():
    assert make("ssmtl", offset=10).sequence_options() == {"offset": 10, "pair": False}
    assert make("ssmtl_plus").sequence_options() == {"offset": 5, "pair": True}


# ---------------------------------------------------------------------------------------------- augment
def test_augment_shapes_reproducible_and_per_sample():
    x = blobs(5, 1)
    view = augment.build_views("crop_blur_noise")
    a = view(x, torch.Generator().manual_seed(3))
    b = view(x, torch.Generator().manual_seed(3))
    c = view(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(7)
    g1 = view(x)
    torch.manual_seed(7)
    assert torch.equal(g1, view(x))  # global RNG is reproducible too
    # per-sample randomness: the same image repeated gets different views
    rep = view(x[:1].repeat(4, 1, 1, 1), torch.Generator().manual_seed(0))
    assert not torch.allclose(rep[0], rep[1])


def test_augment_identities_and_flip():
    x = blobs(3, 2)
    assert torch.allclose(augment.random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0)), x, atol=1e-5)
    assert torch.equal(augment.gaussian_blur(x, p=0.0), x)
    assert torch.equal(augment.gaussian_noise(x, p=0.0), x)
    assert torch.equal(augment.random_flip(x, horizontal=1.0), x.flip(-1))
    assert torch.equal(augment.random_flip(x, horizontal=0.0, vertical=1.0), x.flip(-2))
    const = torch.full((2, 1, 16, 16), 0.7)
    assert torch.allclose(augment.gaussian_blur(const, p=1.0), const, atol=1e-6)  # normalised kernel
    blurred = augment.gaussian_blur(x, sigma=(1.5, 1.5), p=1.0)
    assert blurred.abs().sub(x.abs()).abs().sum() > 0 and blurred.std() < x.std()
    crop = augment.random_resized_crop(x, scale=(0.1, 0.1), generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(crop, x)
    assert augment.build_views({"preset": "crop_blur_noise", "crop_scale": [0.2, 1.0]}).crop_scale == (0.2, 1.0)
    assert augment.build_views("none")(x) is x
    with pytest.raises(ValueError):
        augment.build_views("colour_jitter")
    with pytest.raises(ValueError):
        augment.build_views({"preset": "none", "bogus": 1})


def test_gaussian_noise_relative_std():
    x = torch.randn(2, 1, 64, 64) * 3.0
    y = augment.gaussian_noise(x, std=(0.5, 0.5), p=1.0, relative=True, generator=torch.Generator().manual_seed(0))
    ratio = (y - x).std() / x.std()
    assert ratio.item() == pytest.approx(0.5, rel=0.05)


# ---------------------------------------------------------------------------------------------- rotation
def test_rotation_labels_match_rot90():
    x = blobs(3, 3)
    xs, labels = rotate_batch(x)
    assert xs.shape == (12, 1, H, H) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for k in range(4):
        for i in range(3):
            assert torch.equal(xs[k * 3 + i], torch.rot90(x[i], k, dims=(1, 2)))
    # k = 1 is 90 degrees counter-clockwise: the top-right corner moves to the top-left
    img = torch.zeros(1, 1, 4, 4)
    img[0, 0, 0, 3] = 1
    assert rotate_batch(img)[0][1, 0, 0, 0].item() == 1
    m = make("rotation")
    out = m({"image": x})
    assert 0 <= out["acc"].item() <= 1 and out["rotation"].item() == pytest.approx(out["loss"].item())


# ---------------------------------------------------------------------------------------------- inpainting
def test_square_mask_fraction_and_position():
    m = square_mask(4, 32, 32, 0.25, "random", torch.device("cpu"), torch.Generator().manual_seed(0))
    assert m.shape == (4, 1, 32, 32)
    assert torch.all(m.sum(dim=(1, 2, 3)) == 16 * 16)
    c = square_mask(2, 32, 32, 0.25, "center", torch.device("cpu"))
    assert torch.all(c[:, :, 8:24, 8:24] == 1) and c.sum() == 2 * 256
    assert not torch.equal(m[0], m[1]) or not torch.equal(m[1], m[2])


def test_inpainting_input_masked_and_loss_only_on_masked_region():
    m = make("inpainting")
    x = blobs(2, 4)
    mask = square_mask(2, H, H, 0.25, "center", torch.device("cpu"))
    seen = {}
    pred = torch.zeros(2, 1, H, H, requires_grad=True)

    def fake_reconstruct(x_in, feats=None):
        seen["x_in"] = x_in
        return pred

    m.make_mask = lambda _x: mask
    m.reconstruct = fake_reconstruct
    out = m({"image": x})
    x_in = seen["x_in"]
    fill = x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)
    assert torch.equal(x_in[mask.bool()], fill[mask.bool()])
    assert torch.equal(x_in[~mask.bool()], x[~mask.bool()])
    expected = ((x * mask) ** 2).sum() / mask.sum()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    out["loss"].backward()
    assert torch.all(pred.grad[~mask.bool()] == 0) and pred.grad[mask.bool()].abs().sum() > 0


def test_inpainting_uses_backbone_head_when_single_channel():
    m = make("inpainting")
    assert not hasattr(m, "rec_head")
    m2 = make("inpainting", backbone=TinySegNet(out_channels=3))
    assert isinstance(m2.rec_head, nn.Conv2d) and m2.rec_head.out_channels == 1
    with pytest.raises(ValueError):
        make("inpainting", region="corner")


# ---------------------------------------------------------------------------------------------- MoCo
def test_moco_key_encoder_is_frozen_copy_without_decoder():
    m = make("moco", queue_size=16)
    names = {n for n, _ in m.key_backbone.named_parameters()}
    assert names and all(n.startswith(("encoder.", "neck.")) for n in names)
    assert all(not p.requires_grad for p in m.key_backbone.parameters())
    assert all(not p.requires_grad for p in m.key_proj.parameters())
    q_state = m.backbone.state_dict()
    for n, p in m.key_backbone.named_parameters():
        assert torch.equal(p, q_state[n])  # initialised as a copy
    assert m.queue.shape == (16, 128)
    assert torch.allclose(m.queue.norm(dim=1), torch.ones(16))
    assert int(m.queue_ptr) == 0


def test_moco_logits_use_queue_before_enqueue_and_enqueue_at_pointer():
    m = make("moco", queue_size=16, dim=8)
    m.queue_ptr.fill_(13)  # 13 + 6 keys -> wraps to 3
    queue_before = m.queue.clone()
    rec = {}
    orig = m.encode_pair

    def spy(*args):
        q, k = orig(*args)
        rec["q"], rec["k"] = q, k
        return q, k

    m.encode_pair = spy
    out = m(slice_batch(6))
    q, k = rec["q"].detach(), rec["k"]
    assert out["loss"].item() == pytest.approx(moco_infonce(q, k, queue_before, 0.2).item(), rel=1e-6)
    assert out["loss"].item() != pytest.approx(moco_infonce(q, k, m.queue, 0.2).item(), rel=1e-6)
    idx = [13, 14, 15, 0, 1, 2]
    assert torch.allclose(m.queue[idx], k)
    untouched = [i for i in range(16) if i not in idx]
    assert torch.equal(m.queue[untouched], queue_before[untouched])
    assert int(m.queue_ptr) == 3
    out["loss"].backward()  # the in-place enqueue does not break the graph


def test_moco_queue_longer_than_the_pool_holds_the_querys_own_keys():
    """Point 4: with K >= N images, every image's own earlier keys sit in the queue (false negatives);
    below the pool they are fewer than one per image, and pretraining warns only in the first case."""
    from medssl.methods.moco import queue_warning, stale_self_keys

    def own_keys_in_queue(k_size: int, n_images: int, epochs: int = 3) -> int:
        m = make("moco", queue_size=k_size, dim=n_images)
        for _ in range(epochs):  # one key per image per epoch, image i's key = basis vector i
            for start in range(0, n_images, 4):
                m.enqueue(torch.eye(n_images)[start:start + 4])
        return int((m.queue @ torch.eye(n_images)[0] > 0.999).sum())

    assert own_keys_in_queue(24, 10) == 2 == round(stale_self_keys(24, 10))  # K = 2.4 N
    assert own_keys_in_queue(8, 10) == 0  # image 0 was enqueued more than K keys ago
    assert queue_warning(65536, 29358) is not None and "stale" in queue_warning(65536, 29358)
    assert queue_warning(4096, 29358) is None and stale_self_keys(4096, 29358) < 0.15


def test_moco_pointer_wraps_modulo_k_and_large_batches():
    m = make("moco", queue_size=8, dim=4)
    for step in range(5):
        keys = F.normalize(torch.randn(3, 4), dim=1)
        before = int(m.queue_ptr)
        m.enqueue(keys)
        assert int(m.queue_ptr) == (before + 3) % 8
        assert torch.allclose(m.queue[[(before + i) % 8 for i in range(3)]], keys)
    many = F.normalize(torch.randn(11, 4), dim=1)
    m.queue_ptr.fill_(0)
    m.enqueue(many)  # more keys than K: the newest K are kept
    assert int(m.queue_ptr) == 11 % 8
    assert {tuple(r.tolist()) for r in m.queue} == {tuple(r.tolist()) for r in many[-8:]}


def test_moco_no_enqueue_in_eval_mode():
    m = make("moco", queue_size=8, dim=4).eval()
    before = m.queue.clone()
    m(slice_batch(4))
    assert torch.equal(m.queue, before) and int(m.queue_ptr) == 0


def test_moco_momentum_update_exact_formula():
    m = make("moco", queue_size=8, momentum=0.9)
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(torch.randn_like(p))
        for p in m.proj.parameters():
            p.add_(torch.randn_like(p))
    q_named = dict(m.backbone.named_parameters())
    k_before = {n: p.clone() for n, p in m.key_backbone.named_parameters()}
    kp_before = [p.clone() for p in m.key_proj.parameters()]
    m.after_step()
    for n, p in m.key_backbone.named_parameters():
        assert torch.allclose(p, 0.9 * k_before[n] + 0.1 * q_named[n], atol=1e-6, rtol=0)
    for p, pb, pq in zip(m.key_proj.parameters(), kp_before, m.proj.parameters()):
        assert torch.allclose(p, 0.9 * pb + 0.1 * pq, atol=1e-6, rtol=0)
    dec = [n for n in q_named if n.startswith(("decoder.", "head."))]
    assert dec and not any(n in k_before for n in dec)


def test_moco_gradients_only_into_query_branch():
    m = make("moco", queue_size=32)
    m(slice_batch(4))["loss"].backward()
    assert all(p.grad is None for p in m.key_backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.encoder.parameters())
    assert all(p.grad is None for p in m.backbone.decoder.parameters())  # decoder not used by MoCo


def test_moco_shuffle_bn_emulation_runs():
    m = make("moco", queue_size=32, bn_splits=2)
    out = m(slice_batch(8))
    assert torch.isfinite(out["loss"])


def test_mocov2_defaults_are_paper_b():
    m = make("mocov2")
    assert m.queue.shape[0] == 1024 and m.momentum == 0.999 and m.temperature == 0.2
    assert m.views == augment.VIEW_PRESETS["flip_blur"]
    assert isinstance(m, METHODS["moco"])


# ---------------------------------------------------------------------------------------------- SimCLR
def test_simclr_loss_is_nt_xent_of_projected_views():
    m = make("simclr")
    x = slice_batch(4)["image"]
    torch.manual_seed(5)
    out = m({"image": x})
    torch.manual_seed(5)
    za = m.project(m.views(x))
    zb = m.project(m.views(x))
    assert out["loss"].item() == pytest.approx(nt_xent(za, zb, 0.5, directions="mean").item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------- HSSL
def _hssl_terms(m, batch, seed=11):
    torch.manual_seed(seed)
    return {k: v.item() for k, v in m(batch).items()}


def test_hssl_labels_reach_the_right_heads():
    m = make("hssl")
    batch = slice_batch(6)
    base = _hssl_terms(m, batch)
    assert set(base) == {"loss", "img", "task", "group", "rec"}
    g = dict(batch, group=(batch["group"] + 1) % 2)
    t = dict(batch, task=(batch["task"] + 1) % 3)
    out_g, out_t = _hssl_terms(m, g), _hssl_terms(m, t)
    assert out_g["group"] != pytest.approx(base["group"])
    assert out_t["task"] != pytest.approx(base["task"])
    for k in ("img", "task", "rec"):
        assert out_g[k] == pytest.approx(base[k], rel=1e-6)
    for k in ("img", "group", "rec"):
        assert out_t[k] == pytest.approx(base[k], rel=1e-6)


def test_hssl_total_is_weighted_sum():
    m = make("hssl", lambda_img=0.5, lambda_task=0.25, lambda_group=2.0, lambda_rec=10.0)
    out = _hssl_terms(m, slice_batch(6))
    expected = 0.5 * out["img"] + 0.25 * out["task"] + 2.0 * out["group"] + 10.0 * out["rec"]
    assert out["loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("off", ["img", "task", "group", "rec"])
def test_hssl_zero_weight_switches_term_off(off):
    m = make("hssl", **{f"lambda_{off}": 0.0})
    head = {"img": "img_head", "task": "task_head", "group": "group_head"}.get(off)
    if head:
        assert getattr(m, head) is None
    if off == "img":
        m.views = lambda *a, **k: (_ for _ in ()).throw(AssertionError("views computed with lambda_img=0"))
    out = m(slice_batch(6))
    assert off not in out
    out["loss"].backward()
    if off == "rec":
        assert all(p.grad is None for p in m.backbone.decoder.parameters())
        assert all(p.grad is None for p in m.backbone.head.parameters())
    for name in {"img", "task", "group"} - {off}:
        h = getattr(m, f"{name}_head")
        assert any(p.grad is not None for p in h.parameters())


def test_hssl_rec_only_skips_contrastive_and_heads():
    # Table 4's first row: L_rec alone
    m = make("hssl", lambda_img=0, lambda_task=0, lambda_group=0, lambda_rec=1.0)
    out = m(slice_batch(4))
    assert set(out) == {"loss", "rec"}
    assert out["loss"].item() == pytest.approx(reconstruction_mse(m.backbone(slice_batch(4)["image"]),
                                                                  slice_batch(4)["image"]).item(), rel=1e-5)
    with pytest.raises(ValueError):
        make("hssl", lambda_img=0, lambda_task=0, lambda_group=0, lambda_rec=0)


def test_hssl_features_for_tsne():
    m = make("hssl")
    f = m.features(slice_batch(4)["image"])
    assert f["latent"].shape == (4, 16) and f["task"].shape == (4, 3) and f["group"].shape == (4, 2)
    assert f["image"].shape == (4, 128)


# ---------------------------------------------------------------------------------------------- SSMTL / SSMTL+
def test_ssmtl_heads_have_their_own_targets():
    m = make("ssmtl")
    batch = sequence_batch(4)
    f = m.backbone.decode(m.backbone.encode(batch["image"]))
    out = m(batch)
    expected = ssmtl_pretext(m.head_prev(f), m.head_next(f), batch["prev"], batch["next"])
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["pretext"].item() == pytest.approx(out["pretext_prev"].item() + out["pretext_next"].item(), rel=1e-5)

    def head_grads(b):
        m.zero_grad(set_to_none=True)
        m(b)["loss"].backward()
        return m.head_prev.weight.grad.clone(), m.head_next.weight.grad.clone()

    gp1, gn1 = head_grads(batch)
    gp2, gn2 = head_grads(dict(batch, next=batch["pair"]))  # change only x_{j+t}
    assert torch.allclose(gp1, gp2) and not torch.allclose(gn1, gn2)
    gp3, gn3 = head_grads(dict(batch, prev=batch["pair"]))  # change only x_{j-t}
    assert not torch.allclose(gp1, gp3) and torch.allclose(gn1, gn3)
    assert m.backbone.head.weight.grad is None  # backbone's own head unused in pretraining


def test_ssmtl_plus_stop_gradient_and_weighting():
    m = make("ssmtl_plus", lambda_sim=0.5)
    batch = sequence_batch(4)
    batch["pair"] = batch["pair"].clone().requires_grad_(True)
    out = m(batch)
    assert out["loss"].item() == pytest.approx(out["pretext"].item() + 0.5 * out["sim"].item(), rel=1e-5)
    assert -1.0 <= out["sim"].item() <= 1.0
    out["loss"].backward()
    assert batch["pair"].grad is None  # no gradient through q(x_k)
    assert all(p.grad is not None for p in m.predictor.parameters())
    # predictor: Linear(latent -> 512, no bias) -> BN -> ReLU -> Linear(512 -> latent), as SimSiam / paper B
    lin = [mod for mod in m.predictor if isinstance(mod, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lin] == [(16, 512), (512, 16)]
    assert any(isinstance(mod, nn.BatchNorm1d) for mod in m.predictor)
    # L_sim is one-directional: h(q(x_j)) against stopgrad(q(x_k))
    m.eval()
    with torch.no_grad():
        p = m.predictor(m.backbone.embed(m.backbone.encode(batch["image"])))
        z = m.backbone.embed(m.backbone.encode(batch["pair"]))
        assert m(batch)["sim"].item() == pytest.approx(simsiam_negcos(p, z).item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------- overfitting
def overfit(m: PretrainMethod, batches: list[dict], steps: int = 30, lr: float = 1e-3) -> list[float]:
    """Adam on a tiny fixed set of batches (cycled); returns the loss of every step."""
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
    m.train()
    losses = []
    torch.manual_seed(123)
    for step in range(steps):
        out = m(batches[step % len(batches)])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        m.after_step()
        losses.append(out["loss"].item())
    return losses


def drop(losses: list[float], skip: int = 0) -> float:
    """Relative fall from the mean of 3 steps (after ``skip``) to the mean of the last 5 steps."""
    first = sum(losses[skip:skip + 3]) / 3
    last = sum(losses[-5:]) / 5
    return (first - last) / abs(first)


# Contrastive methods overfit with milder crops than their defaults (the augmentations are tested above).
# MoCo cannot overfit ONE fixed batch: its queue fills with keys of the very same images (positives as
# negatives). It gets 4 distinct batches cycled with K = 2 batches, so the queue never holds the current
# images, and the fall is measured once the random initial queue is gone (skip the first 2 steps).
MILD = {"preset": "crop_blur_noise", "crop_scale": [0.5, 1.0]}
OVERFIT = {  # name -> (params, n_batches, steps, lr, skip, margin)
    "rotation": ({}, 1, 30, 3e-3, 0, 0.2),
    "inpainting": ({}, 1, 30, 3e-3, 0, 0.2),
    "simclr": ({"views": MILD}, 1, 30, 3e-3, 0, 0.15),
    "hssl": ({"views": MILD}, 1, 30, 3e-3, 0, 0.2),
    "ssmtl": ({}, 1, 30, 3e-3, 0, 0.2),
    "ssmtl_plus": ({}, 1, 30, 3e-3, 0, 0.2),
    "moco": ({"views": MILD, "queue_size": 16, "momentum": 0.99}, 4, 40, 1e-2, 2, 0.15),
    "mocov2": ({"queue_size": 16, "momentum": 0.99}, 4, 40, 1e-2, 2, 0.15),
}


@pytest.mark.parametrize("name", ALL)
def test_overfits_tiny_batch_stand_in(name):
    params, n_batches, steps, lr, skip, margin = OVERFIT[name]
    m = make(name, **params)
    losses = overfit(m, [sequence_batch(8, seed=i) for i in range(n_batches)], steps=steps, lr=lr)
    assert all(math.isfinite(v) for v in losses)
    assert drop(losses, skip) > margin, f"{name}: {losses}"


REAL = [
    ("hssl_net", "rotation"), ("hssl_net", "inpainting"), ("hssl_net", "moco"), ("hssl_net", "simclr"),
    ("hssl_net", "hssl"), ("unet", "hssl"), ("unet", "ssmtl"), ("resnet50_fcn", "ssmtl"),
    ("resnet50_fcn", "ssmtl_plus"), ("unet", "mocov2"),
    # ResNet-50 + MoCo v2 at 32x32, batch 8 stays near log(K+1) for the first ~50 Adam steps (measured: a
    # 1 % fall in 40 steps), too slow a start for an overfit test on CPU; its wiring on the real network is
    # checked by test_mocov2_on_resnet50_fcn_trains_the_query_and_moves_the_key_by_momentum instead.
]


@pytest.mark.slow
@pytest.mark.parametrize("arch,name", REAL)
def test_overfits_tiny_batch_real_models(arch, name):
    """Same with the real architectures at 32x32 (slow on CPU: run with ``-m slow``)."""
    models = pytest.importorskip("medssl.models")
    params, n_batches, steps, lr, skip, margin = OVERFIT[name]
    torch.manual_seed(0)
    m = build_method(name, models.build(arch, 1), n_tasks=3, n_groups=2, image_size=H, **params)
    losses = overfit(m, [sequence_batch(8, seed=i) for i in range(n_batches)], steps=steps, lr=min(lr, 1e-3))
    assert all(math.isfinite(v) for v in losses)
    assert drop(losses, skip) > margin, f"{arch}/{name}: {losses}"


@pytest.mark.slow
def test_mocov2_on_resnet50_fcn_trains_the_query_and_moves_the_key_by_momentum():
    """Paper B's MoCo v2 baseline on the real ResNet50-FCN, one step: a finite positive InfoNCE loss, gradients
    reach only the query encoder, the optimiser step changes it, and the key encoder then moves by exactly
    k <- m k + (1 - m) q."""
    models = pytest.importorskip("medssl.models")
    torch.manual_seed(0)
    k_size, momentum = 16, 0.9
    m = build_method("mocov2", models.build("resnet50_fcn", 1), n_tasks=3, n_groups=2, image_size=H,
                     queue_size=k_size, momentum=momentum)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    m.train()
    out = m(sequence_batch(8, seed=0))
    assert math.isfinite(out["loss"].item()) and out["loss"].item() > 0
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    assert all(p.grad is None for p in m.key_backbone.parameters())
    enc = dict(m.backbone.encoder.named_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.values())
    before = {n: p.detach().clone() for n, p in enc.items()}
    opt.step()
    assert any(not torch.equal(before[n], p) for n, p in enc.items())
    q_named = dict(m.backbone.named_parameters())
    k_before = {n: p.detach().clone() for n, p in m.key_backbone.named_parameters()}
    m.after_step()
    for n, p in m.key_backbone.named_parameters():
        assert torch.allclose(p, momentum * k_before[n] + (1 - momentum) * q_named[n], atol=1e-6, rtol=0), n
