"""Export trained weights as plain state dicts other code loads without medssl (``medssl export``).

A medssl model file (``model.pt``/``epoch<E>.pt``: ``{"state_dict", **metadata}``, or a bare state dict) is
read with ``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code. The
export is a bare ``dict[str, Tensor]`` saved with :func:`torch.save`; load it with ``weights_only=True``.

Targets (``to``) and parts (``part``):

``torchvision`` (encoder only)
    Keys ``conv1.weight, bn1.*, layer1.* .. layer4.*`` that load with ``strict=True`` into torchvision's
    ResNet trunk of the architecture (``hssl_net`` -> ``resnet34``, ``resnet50_fcn`` -> ``resnet50``) built
    with a 1-channel ``conv1`` and no ``fc`` (:func:`torchvision_encoder` is that recipe)::

        net = torchvision.models.resnet34(weights=None)
        net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = torch.nn.Identity()
        net.load_state_dict(torch.load("encoder.pt", weights_only=True))  # strict=True

    ``net(x)`` for ``x`` of shape (B, 1, H, W) is then the globally pooled deepest feature (B, 512; ResNet-50:
    2048), and ``net.layer1 .. net.layer4`` give the pyramid medssl's encoder returns.
    torchvision's ResNets have fixed widths: a narrower model (the demo's ``model_width: 0.25``, recorded in
    the file as ``width``) is refused in one line that names the width and the two ways out below.
``monai`` (encoder only), at any width
    The same keys: MONAI's ``monai.networks.nets.ResNet`` names its modules as torchvision does, and takes
    its widths as arguments (:func:`monai_call` prints the constructor call that loads the file)::

        net = monai.networks.nets.ResNet(block="basic", layers=[3, 4, 6, 3], block_inplanes=[64, 128, 256, 512],
                                         spatial_dims=2, n_input_channels=1, conv1_t_stride=2,
                                         feed_forward=False, bias_downsample=False)

    (``block="bottleneck"`` for ``resnet50_fcn``; ``block_inplanes`` are 64·width ... 512·width).
    ``bias_downsample=False`` matches torchvision's bias-free shortcut convolutions, ``feed_forward=False``
    drops ``fc``. The export checks these keys against the MONAI network when MONAI is importable (it is not a
    medssl dependency), else against medssl's own encoder of that width.
``state_dict``
    medssl's own names, any architecture and width: ``part="all"`` is the whole network (``encoder.*``,
    ``neck.*``, ``decoder.*``, ``head.*``; ``medssl.models.load(model file)`` rebuilds it as trained, or
    ``medssl.models.build(arch, out_channels, width=...)``), ``part="encoder"`` the ``encoder.*`` tensors
    with that prefix removed (they load into ``model.encoder``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor, nn

__all__ = ["TARGETS", "PARTS", "TRUNKS", "MONAI_KWARGS", "ExportError", "read_model", "trunk_of",
           "export_state", "export_model", "torchvision_encoder", "monai_encoder", "monai_call", "recipe"]

log = logging.getLogger(__name__)

TARGETS = ("torchvision", "monai", "state_dict")
PARTS = ("encoder", "all")
#: medssl architecture -> the torchvision/MONAI ResNet its encoder is
TRUNKS = {"hssl_net": "resnet34", "resnet50_fcn": "resnet50"}
#: keyword arguments of ``monai.networks.nets.ResNet`` (beside block, layers and widths) giving the network the
#: export loads into
MONAI_KWARGS = {"spatial_dims": 2, "n_input_channels": 1, "conv1_t_stride": 2, "feed_forward": False,
                "bias_downsample": False}
#: trunk -> MONAI ResNet block and layers
MONAI_BLOCKS = {"resnet34": ("basic", [3, 4, 6, 3]), "resnet50": ("bottleneck", [3, 4, 6, 3])}
_ENCODER = "encoder."


class ExportError(ValueError):
    """The model file cannot be exported as asked; the message says why."""


def read_model(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """``(state_dict, metadata)`` of a medssl model file, a ``checkpoint.pt`` or a bare state dict, read
    with :func:`medssl.train.checkpoint.load_state_dict` (``torch.load(weights_only=True)``, on the CPU)."""
    from medssl.train.checkpoint import CheckpointError, load_state_dict

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"model file {path} not found")
    try:
        state, meta = load_state_dict(path)
    except CheckpointError as err:
        raise ExportError(str(err)) from None
    if isinstance(state, dict) and state and all(isinstance(v, Tensor) for v in state.values()):
        return dict(state), dict(meta)
    raise ExportError(f"{path}: holds no state dict (expected a medssl model.pt or a dict of tensors)")


def _encoder_state(state: dict[str, Tensor], path_hint: str = "") -> dict[str, Tensor]:
    enc = {k[len(_ENCODER):]: v for k, v in state.items() if k.startswith(_ENCODER)}
    if not enc:
        # A checkpoint.pt of pretraining holds the method: its network is under ``backbone.``.
        enc = {k[len("backbone.encoder."):]: v for k, v in state.items() if k.startswith("backbone.encoder.")}
    if not enc:
        raise ExportError(f"{path_hint or 'model'}: no 'encoder.*' tensors in its state dict")
    return enc


def trunk_of(state: dict[str, Tensor], meta: dict) -> str | None:
    """``"resnet34"``/``"resnet50"`` for the ResNet-trunk architectures, else None (from ``meta["arch"]``,
    or for a bare state dict from its keys: bottleneck blocks have ``conv3``)."""
    arch = meta.get("arch")
    if arch is not None:
        return TRUNKS.get(str(arch))
    keys = set(state)
    prefix = next((p for p in (_ENCODER, "backbone.encoder.", "") if f"{p}layer4.0.conv1.weight" in keys), None)
    if prefix is None or f"{prefix}conv1.weight" not in keys:
        return None
    return "resnet50" if f"{prefix}layer1.0.conv3.weight" in keys else "resnet34"


def torchvision_encoder(trunk: str) -> nn.Module:
    """torchvision's ``resnet34``/``resnet50`` (random init) with a 1-channel ``conv1`` and ``fc`` removed
    (``nn.Identity``): the module a ``torchvision`` export loads into with ``strict=True``."""
    from medssl._torchvision import resnet_module

    if trunk not in TRUNKS.values():
        raise ExportError(f"unknown ResNet trunk {trunk!r}; known: {', '.join(sorted(set(TRUNKS.values())))}")
    net = getattr(resnet_module(), trunk)(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


def _widths(width: float) -> list[int]:
    from medssl.models.resnet_encoder import scaled

    return [scaled(c, width) for c in (64, 128, 256, 512)]


def monai_kwargs(trunk: str, width: float = 1.0) -> dict:
    """The arguments of ``monai.networks.nets.ResNet`` for a ``trunk`` encoder ``width`` times as wide."""
    block, layers = MONAI_BLOCKS[trunk]
    return {"block": block, "layers": layers, "block_inplanes": _widths(width), **MONAI_KWARGS}


def monai_call(trunk: str, width: float = 1.0) -> str:
    """The constructor call, as Python, of the MONAI network a ``monai`` export loads into."""
    return "monai.networks.nets.ResNet(" + ", ".join(f"{k}={v!r}" for k, v in monai_kwargs(trunk, width).items()) + ")"


def monai_encoder(trunk: str, width: float = 1.0) -> nn.Module:
    """MONAI's 2D ResNet of ``trunk`` at ``width`` (:func:`monai_kwargs`; needs ``monai`` installed)."""
    from monai.networks import nets  # optional: not a medssl dependency

    return nets.ResNet(**monai_kwargs(trunk, width))


def recipe(to: str, part: str, trunk: str | None, width: float, out: str, meta: dict | None = None) -> str:
    """The Python lines that load an export ``out`` with ``strict=True`` (``meta``: the model file's metadata,
    for a ``state_dict`` export: the network it came from)."""
    load = f"torch.load({out!r}, weights_only=True)"
    if to == "monai":
        return f"import monai, torch\nnet = {monai_call(trunk, width)}\nnet.load_state_dict({load})"
    if to == "torchvision":
        return ("import torch\nfrom medssl.export import torchvision_encoder   # torchvision's "
                f"{trunk} with a 1-channel conv1, no fc\nnet = torchvision_encoder({trunk!r})\n"
                f"net.load_state_dict({load})")
    meta = meta or {}
    build = (f"medssl.models.build({meta.get('arch', 'ARCH')!r}, {int(meta.get('out_channels', 1))}, "
             f"width={width:g})")
    if part == "all":
        return f"import medssl.models, torch\nnet = {build}\nnet.load_state_dict({load})"
    return f"import medssl.models, torch\nnet = {build}.encoder\nnet.load_state_dict({load})"


def _check_loads(target: str, trunk: str, sd: dict[str, Tensor], width: float = 1.0) -> dict[str, Tensor]:
    """Load ``sd`` into the target network with ``strict=True``; return it in that network's key order."""
    if target == "torchvision":
        net = torchvision_encoder(trunk)
    else:
        try:
            net = monai_encoder(trunk, width)
        except ImportError:
            from medssl.models.resnet_encoder import ResNetEncoder

            log.info("monai is not installed: the export's keys were checked against medssl's %s at width %g, "
                     "which MONAI's ResNet(%s) names identically", trunk, width, monai_kwargs(trunk, width))
            net = ResNetEncoder(trunk, width=width)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise ExportError(f"the encoder does not match {target}'s {trunk}: {str(err).splitlines()[0]}") from None
    return {k: sd[k] for k in net.state_dict()}


def export_state(state: dict[str, Tensor], meta: dict, to: str, part: str = "encoder",
                 source: str = "model") -> dict[str, Tensor]:
    """The state dict of export target ``to`` (:data:`TARGETS`) and ``part`` (:data:`PARTS`); see the module
    docstring. The ``torchvision``/``monai`` exports are checked by loading them with ``strict=True``."""
    if to not in TARGETS:
        raise ExportError(f"unknown export target {to!r}; known: {', '.join(TARGETS)}")
    if part not in PARTS:
        raise ExportError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    if to == "state_dict":
        sd = _encoder_state(state, source) if part == "encoder" else dict(state)
        return {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    if part != "encoder":
        raise ExportError(f"--to {to} exports the encoder only (a {to} ResNet has no decoder); use --part "
                          f"encoder, or --to state_dict --part all for the whole network")
    trunk = trunk_of(state, meta)
    if trunk is None:
        raise ExportError(f"{source}: architecture {meta.get('arch', 'unknown')!r} has no {to} ResNet "
                          f"encoder (only {', '.join(f'{a} ({t})' for a, t in TRUNKS.items())}); use --to "
                          f"state_dict")
    width = float(meta.get("width", 1.0))  # files written before widths existed are full width
    if to == "torchvision" and width != 1.0:
        raise ExportError(f"{source}: its encoder is {width:g} times as wide as torchvision's {trunk} (trained "
                          f"with model_width {width:g}), and torchvision's ResNets have fixed widths: export it "
                          f"--to monai (MONAI's ResNet takes the widths) or --to state_dict (medssl.models.load "
                          f"rebuilds it)")
    sd = {k: v.detach().cpu().contiguous() for k, v in _encoder_state(state, source).items()}
    return _check_loads(to, trunk, sd, width)


def export_model(model: str | Path, out: str | Path, to: str, part: str = "encoder") -> Path:
    """Read ``model``, export it (:func:`export_state`) and write the plain state dict to ``out``
    (atomically). Returns ``out``."""
    from medssl.train.checkpoint import save

    state, meta = read_model(model)
    sd = export_state(state, meta, to, part, source=str(model))
    path = save(sd, out)
    trunk = trunk_of(state, meta)
    log.info("wrote %s: %d tensors (%s, part %s%s)", path, len(sd), to, part, f", {trunk}" if trunk else "")
    return path


def export_recipe(model: str | Path, out: str | Path, to: str, part: str = "encoder") -> str:
    """The lines that load the export ``out`` of ``model`` (printed by ``medssl export``)."""
    state, meta = read_model(model)
    return recipe(to, part, trunk_of(state, meta), float(meta.get("width", 1.0)), str(out), meta)
