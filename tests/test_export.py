"""medssl export: plain state dicts that load with strict=True into torchvision's (and MONAI's) ResNet."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
from torch import nn

from medssl import export
from medssl._torchvision import resnet_module
from medssl.models import build
from medssl.train.checkpoint import save_model

torch.set_num_threads(1)


def _trained_like(arch: str) -> nn.Module:
    """A medssl model with non-default BatchNorm statistics, so a lost buffer changes the outputs."""
    torch.manual_seed(0)
    model = build(arch, out_channels=2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _documented_torchvision(trunk: str) -> nn.Module:
    """The recipe of the README/module docstring, written out independently of medssl.export."""
    net = getattr(resnet_module(), trunk)(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


@pytest.mark.parametrize(("arch", "trunk", "width"), [("hssl_net", "resnet34", 512),
                                                       ("resnet50_fcn", "resnet50", 2048)])
def test_torchvision_export_matches_the_encoder(tmp_path, arch, trunk, width):
    model = _trained_like(arch)
    src = save_model(tmp_path / "model.pt", model.state_dict(), kind="finetune", arch=arch, out_channels=2)
    out = export.export_model(src, tmp_path / "encoder.pt", to="torchvision")

    net = _documented_torchvision(trunk)
    net.load_state_dict(torch.load(out, weights_only=True), strict=True)
    net.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        feats = model.encode(x)
        pooled = net(x)
        deepest = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
    assert pooled.shape == (2, width)
    torch.testing.assert_close(deepest, feats[-1])
    torch.testing.assert_close(pooled, feats[-1].mean(dim=(2, 3)))


def test_bare_state_dict_trunk_is_read_from_its_keys(tmp_path):
    model = _trained_like("resnet50_fcn")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    state, meta = export.read_model(tmp_path / "bare.pt")
    assert meta == {} and export.trunk_of(state, meta) == "resnet50"
    sd = export.export_state(state, meta, "torchvision")
    _documented_torchvision("resnet50").load_state_dict(sd, strict=True)


def test_state_dict_export_all_and_encoder(tmp_path):
    model = _trained_like("unet")
    src = save_model(tmp_path / "model.pt", model.state_dict(), arch="unet", out_channels=2)
    full = torch.load(export.export_model(src, tmp_path / "all.pt", "state_dict", "all"), weights_only=True)
    fresh = build("unet", out_channels=2)
    fresh.load_state_dict(full, strict=True)
    enc = torch.load(export.export_model(src, tmp_path / "enc.pt", "state_dict", "encoder"), weights_only=True)
    fresh.encoder.load_state_dict(enc, strict=True)
    assert not any(k.startswith("encoder.") for k in enc)


def test_unsupported_requests_fail_with_one_clear_line(tmp_path):
    unet = save_model(tmp_path / "unet.pt", build("unet", out_channels=2).state_dict(), arch="unet")
    with pytest.raises(export.ExportError, match="has no torchvision ResNet encoder"):
        export.export_model(unet, tmp_path / "x.pt", "torchvision")
    hssl = save_model(tmp_path / "hssl.pt", build("hssl_net", out_channels=2).state_dict(), arch="hssl_net")
    with pytest.raises(export.ExportError, match="encoder only"):
        export.export_model(hssl, tmp_path / "x.pt", "torchvision", part="all")
    with pytest.raises(export.ExportError, match="not found"):
        export.read_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a torch file")
    with pytest.raises(export.ExportError, match=r"junk\.pt: not a torch file"):  # a text file is not "unsafe"
        export.read_model(tmp_path / "junk.pt")
    assert not (tmp_path / "x.pt").exists()


class _Pickled:  # an arbitrary object: a weights-only load must refuse it
    pass


def test_refuses_files_that_need_unpickling_code(tmp_path):
    torch.save({"state_dict": {}, "payload": _Pickled()}, tmp_path / "evil.pt")
    with pytest.raises(export.ExportError, match="evil.pt: refused to load.*_Pickled"):
        export.read_model(tmp_path / "evil.pt")


def test_cli_export_needs_no_config(tmp_path):
    src = save_model(tmp_path / "model.pt", build("hssl_net", out_channels=2).state_dict(), arch="hssl_net")
    out = tmp_path / "monai.pt"
    proc = subprocess.run([sys.executable, "-m", "medssl.cli", "export", str(src), "--to", "monai", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    _documented_torchvision("resnet34").load_state_dict(torch.load(out, weights_only=True), strict=True)
    bad = subprocess.run([sys.executable, "-m", "medssl.cli", "export", str(src), "--to", "torchvision",
                          "--part", "all", str(tmp_path / "y.pt")], capture_output=True, text=True)
    assert bad.returncode == 1 and "medssl: error:" in bad.stderr and "encoder only" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_monai_export_loads_into_monai_resnet(tmp_path):
    """MONAI (a dev dependency, not a medssl one): the export loads into its ResNet and computes the encoder."""
    from monai.networks import nets

    model = _trained_like("hssl_net")
    sd = export.export_state(model.state_dict(), {"arch": "hssl_net"}, "monai")
    net = nets.ResNet(**export.monai_kwargs("resnet34")).eval()
    net.load_state_dict(sd, strict=True)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model.encode(x)[-1].mean(dim=(2, 3)))


def _quarter_width_model(tmp_path, arch="hssl_net", kind="pretrain"):
    """A model file as the demo writes one: every layer a quarter as wide, the width in its metadata."""
    torch.manual_seed(0)
    model = build(arch, out_channels=1, width=0.25).eval()
    path = save_model(tmp_path / "model.pt", model.state_dict(), kind=kind, arch=arch, out_channels=1, width=0.25)
    return model, path


@pytest.mark.parametrize(("arch", "to", "part"), [("hssl_net", "monai", "encoder"), ("resnet50_fcn", "monai", "encoder"),
                                                  ("hssl_net", "state_dict", "all"), ("unet", "state_dict", "all")])
def test_a_quarter_width_model_exports_and_loads_with_the_printed_recipe(tmp_path, arch, to, part):
    """Issue 25: the demo's quarter-width weights export to MONAI and to state_dict, and the lines `medssl
    export` prints load each file with strict=True (they are run here as printed)."""
    model, src = _quarter_width_model(tmp_path, arch)
    out = tmp_path / "out.pt"
    proc = subprocess.run([sys.executable, "-m", "medssl.cli", "export", str(src), str(out), "--to", to,
                           "--part", part], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    recipe = proc.stdout.split("\n", 1)[1]
    scope: dict = {}
    exec(recipe, scope)  # the printed recipe, as a user would paste it
    net = scope["net"].eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        if to == "monai":
            torch.testing.assert_close(net(x), model.encode(x)[-1].mean(dim=(2, 3)))
        else:
            torch.testing.assert_close(net(x), model(x))


def test_torchvision_at_another_width_is_one_line_with_the_way_out(tmp_path):
    _, src = _quarter_width_model(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "medssl.cli", "export", str(src), str(tmp_path / "x.pt"),
                           "--to", "torchvision"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "0.25 times as wide as torchvision's resnet34" in proc.stderr
    assert "--to monai" in proc.stderr and "medssl.models.load" in proc.stderr
    assert not (tmp_path / "x.pt").exists()


def test_models_load_rebuilds_any_model_file_as_trained(tmp_path):
    from medssl.models import load

    model, src = _quarter_width_model(tmp_path, "unet3plus", kind="finetune")
    net = load(src)
    assert not net.training
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x))
    torch.save({"encoder.conv1.weight": torch.zeros(1)}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="metadata lack arch, out_channels"):
        load(tmp_path / "bare.pt")
