"""CPU twins of the paths that only a GPU takes: compiled networks and data kept on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medssl.data.loaders import PoolDataset, SequenceDataset, SliceDataset, keep_on_device, to_device
from medssl.data.store import SliceStore
from medssl.models import build
from medssl.train import device as dev

from test_loaders import make_store


def _steps(compiled: bool, monkeypatch) -> list[float]:
    monkeypatch.setattr(dev, "COMPILE_BACKEND", "aot_eager")  # dynamo's capture, without a C++ build
    torch.manual_seed(0)
    net = build("hssl_net", 2, width=0.125)
    dev.compile_network(net, compiled)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(4, 1, 32, 32, generator=g), torch.randint(0, 2, (4, 32, 32), generator=g)
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_compiled_network_trains_as_the_eager_one(monkeypatch):
    eager, compiled = _steps(False, monkeypatch), _steps(True, monkeypatch)
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_compiling_keeps_the_state_dict_keys():
    net = build("hssl_net", 2, width=0.125)
    keys = list(net.state_dict())
    dev.compile_network(net, True)
    assert list(net.state_dict()) == keys


@pytest.fixture
def stores(tmp_path):
    return [make_store(tmp_path / f"s{i}", [6, 7], dataset=f"d{i}", seed=i) for i in range(2)]


def _datasets(stores):
    a, b = stores
    return [SliceDataset(a, labels=True), PoolDataset([SliceDataset(a, task=0), SequenceDataset(b, offset=1, pair=True,
                                                                                               task=1)])]


@pytest.mark.parametrize("which", [0, 1])
def test_batches_drawn_on_the_device_are_the_loader_batches(stores, which):
    """The same items give the same batch whether read from the memory-mapped stores or from the stores put
    on the device (here the CPU: tensors in memory, indexed the same way)."""
    items = [(i, (0, 1, 2)) for i in (5, 0, 9, 3, 3)]
    on_host = _datasets(stores)[which].__getitems__(items)
    resident = _datasets(stores)[which]
    to_device(resident, torch.device("cpu"))
    on_device = resident.__getitems__(items)
    assert on_host.keys() == on_device.keys()
    for k in on_host:
        assert torch.equal(on_host[k], on_device[k]), k


def test_data_stay_on_the_host_without_a_gpu_or_when_off(stores):
    ds = _datasets(stores)[1]
    assert not keep_on_device(ds, torch.device("cpu"), "auto", 1.0)
    assert not keep_on_device(ds, torch.device("cpu"), "off", 1.0)
    assert all(p.arrays.resident is None for p in ds.parts)
