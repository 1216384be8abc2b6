"""Tests of the architecture registry (medssl.models): shapes, contract, parameter counts, transfer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medssl.models import MODELS, PAPER_PARAMS, PREFIXES, build, n_params, transferable_state

ARCHS = ["hssl_net", "unet", "unet3plus", "resnet50_fcn"]
# (our count with out_channels=2, allowed relative deviation from the paper, or None without a paper count)
EXPECTED = {
    "hssl_net": (22_067_394, 0.02),
    "unet": (39_398_274, 0.05),
    "unet3plus": (26_968_386, 0.05),
    "resnet50_fcn": (24_605_506, None),
}
LATENT = {"hssl_net": 320, "unet": 1024, "unet3plus": 1024, "resnet50_fcn": 2048}
FEATURES = {"hssl_net": 32, "unet": 64, "unet3plus": 320, "resnet50_fcn": 64}
N_LEVELS = {"hssl_net": 5, "unet": 5, "unet3plus": 5, "resnet50_fcn": 5}

_CACHE: dict[tuple[str, int], nn.Module] = {}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def model(arch: str, out_channels: int = 2) -> nn.Module:
    """A cached model built with seed 0 (tests that train or mutate build their own)."""
    key = (arch, out_channels)
    if key not in _CACHE:
        torch.manual_seed(0)
        _CACHE[key] = build(arch, out_channels)
    return _CACHE[key]


def test_registry_keys_and_unknown_arch():
    assert set(MODELS) == set(ARCHS)
    assert set(PAPER_PARAMS) == set(ARCHS)
    with pytest.raises(ValueError, match="unknown architecture 'vgg'.*hssl_net"):
        build("vgg", 2)
    with pytest.raises(ValueError):
        build("unet", 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes(arch):
    net = model(arch).eval()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        feats = net.encode(x)
        z = net.embed(feats)
        f = net.decode(feats)
        y = net(x)
    assert isinstance(feats, list) and len(feats) == N_LEVELS[arch]
    sizes = [t.shape[-2] * t.shape[-1] for t in feats]
    assert sizes == sorted(sizes, reverse=True), "encoder features must go from fine to deep"
    assert all(t.shape[0] == 2 for t in feats)
    assert net.latent_dim == LATENT[arch] and z.shape == (2, net.latent_dim)
    assert net.feature_channels == FEATURES[arch] and f.shape == (2, net.feature_channels, 64, 96)
    assert y.shape == (2, 2, 64, 96)
    assert isinstance(net.head, nn.Conv2d) and net.head.kernel_size == (1, 1)
    assert (net.head.in_channels, net.head.out_channels) == (net.feature_channels, 2)
    assert net.out_channels == 2
    assert torch.isfinite(y).all() and torch.isfinite(z).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_rejects_bad_inputs(arch):
    net = model(arch).eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 1, 48, 64))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_prefixes(arch):
    names = [n for n, _ in model(arch).named_parameters()]
    assert names and all(n.startswith(PREFIXES) for n in names)
    assert any(n.startswith("encoder.") for n in names)
    assert any(n.startswith("decoder.") for n in names)
    assert {n for n in names if n.startswith("head.")} == {"head.weight", "head.bias"}
    # buffers (BN statistics) follow the same convention
    assert all(n.startswith(PREFIXES) for n, _ in model(arch).named_buffers())


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts(arch):
    ours, tol = EXPECTED[arch]
    count = n_params(model(arch))
    paper = PAPER_PARAMS[arch]
    rel = "" if paper is None else f" paper {paper / 1e6:.2f} M ({(count - paper) / paper:+.3%})"
    print(f"{arch}: {count:,} parameters ({count / 1e6:.2f} M){rel}")
    assert count == ours
    if tol is not None:
        assert abs(count - paper) / paper <= tol


def test_hssl_net_sizes():
    net = model("hssl_net")
    assert n_params(net.encoder) == 21_278_400  # ResNet-34 trunk with a 1-channel conv1, no FC
    assert net.latent_dim == 5 * 64
    assert n_params(build("hssl_net", 2, fc_dim=128)) == 22_133_250
    assert build("hssl_net", 2, fc_dim=[32, 32, 64, 128, 256]).latent_dim == 512
    assert n_params(build("unet", 2, up_kernel=2)) == 31_042_434  # textbook U-Net (2x2 up-convs)


@pytest.mark.parametrize("arch", ARCHS)
def test_transfer_skipping_head(arch):
    src = model(arch, 1)
    assert src.head.out_channels == 1
    torch.manual_seed(1)
    dst = build(arch, 4)
    result = dst.load_state_dict(transferable_state(src), strict=False)
    assert sorted(result.missing_keys) == ["head.bias", "head.weight"]
    assert result.unexpected_keys == []
    src_sd, dst_sd = src.state_dict(), dst.state_dict()
    for k, v in src_sd.items():
        if not k.startswith("head."):
            assert torch.equal(v, dst_sd[k]), k
    assert dst.head.weight.shape == (4, dst.feature_channels, 1, 1)
    # encoder-only transfer (paper B's MoCo v2)
    enc = transferable_state(src, keep="encoder")
    assert enc and all(k.startswith("encoder.") for k in enc)
    result = build(arch, 4).load_state_dict(enc, strict=False)
    assert result.unexpected_keys == [] and all(not k.startswith("encoder.") for k in result.missing_keys)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_every_parameter(arch):
    torch.manual_seed(0)
    net = build(arch, 3).train()
    x = torch.rand(2, 1, 64, 64)
    feats = net.encode(x)
    y = net.head(net.decode(feats))
    z = net.embed(feats)
    loss = (y - torch.rand_like(y)).pow(2).mean() + (z - torch.rand_like(z)).pow(2).mean()
    loss.backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("arch", ARCHS)
def test_deterministic_for_a_seed(arch):
    torch.manual_seed(123)
    a = build(arch, 2)
    torch.manual_seed(123)
    b = build(arch, 2)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(1, 1, 32, 32)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    torch.manual_seed(124)
    c = build(arch, 2)
    assert not torch.equal(c.head.weight, a.head.weight)


@pytest.mark.parametrize("arch", ARCHS)
def test_channels_last_and_bf16_autocast_cpu(arch):
    net = model(arch).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 1, 64, 64).to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = net(x)
            z = net.embed(net.encode(x))
    net.to(memory_format=torch.contiguous_format)
    assert y.shape == ref.shape == (1, 2, 64, 64) and z.shape == (1, net.latent_dim)
    assert torch.isfinite(y.float()).all()
    assert torch.allclose(y.float(), ref, atol=0.1 * ref.abs().max().item() + 1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_channels_last_bf16_train_step(arch):
    torch.manual_seed(0)
    net = build(arch, 2).cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.rand(4, 1, 128, 128, device="cuda").to(memory_format=torch.channels_last)
    target = torch.randint(0, 2, (4, 128, 128), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        feats = net.encode(x)
        y = net.head(net.decode(feats))
        z = net.embed(feats)
        loss = nn.functional.cross_entropy(y.float(), target) + z.float().pow(2).mean()
    loss.backward()
    opt.step()
    assert y.shape == (4, 2, 128, 128) and torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_n_params():
    lin = nn.Linear(3, 2)
    assert n_params(lin) == 8
    lin.bias.requires_grad_(False)
    assert n_params(lin) == 8 and n_params(lin, trainable_only=True) == 6


# ------------------------------------------------------------------------ demo widths and the head bias
@pytest.mark.parametrize("arch", ARCHS)
def test_narrow_width_keeps_names_and_contract(arch):
    full = set(model(arch).state_dict())
    torch.manual_seed(0)
    narrow = build(arch, 2, width=0.125)
    assert set(narrow.state_dict()) == full  # same layers and names: transfer works as at full width
    assert n_params(narrow) < n_params(model(arch)) / 20
    x = torch.rand(2, 1, 32, 32)
    assert narrow(x).shape == (2, 2, 32, 32)
    assert narrow.embed(narrow.encode(x)).shape == (2, narrow.latent_dim)
    with pytest.raises(ValueError, match="width"):
        build(arch, 2, width=0)


def test_width_one_is_the_papers_network():
    torch.manual_seed(0)
    a = build("hssl_net", 2, width=1.0)
    assert n_params(a) == EXPECTED["hssl_net"][0]
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in model("hssl_net").named_parameters()]


@pytest.mark.parametrize("arch", ARCHS)
def test_head_bias_is_the_log_class_prior(arch):
    torch.manual_seed(0)
    net = build(arch, 3, width=0.125)
    prior = [0.97, 0.02, 0.01]
    net.init_head_bias(prior)
    assert torch.allclose(net.head.bias.double(), torch.log(torch.tensor(prior, dtype=torch.float64)), atol=1e-6)
    # features near zero -> the network predicts the prior (softmax of the bias)
    assert torch.allclose(torch.softmax(net.head.bias.double(), 0), torch.tensor(prior, dtype=torch.float64))
    net.init_head_bias([5.0, 0.0, 5.0])  # counts are normalised; an absent class is clipped, not -inf
    assert torch.isfinite(net.head.bias).all()
    assert net.head.bias[0].item() == pytest.approx(math.log(0.5), abs=1e-6)
    with pytest.raises(ValueError, match="prior"):
        net.init_head_bias([0.5, 0.5])
