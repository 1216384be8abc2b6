"""medssl.train.optim.Adam: torch's Adam update, without importing torch._dynamo in the job's process."""

import subprocess
import sys
from pathlib import Path

import torch

from medssl.train.optim import Adam


def _train(opt_cls, steps: int = 5, **kwargs) -> tuple[list[torch.Tensor], dict]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    opt = opt_cls(model.parameters(), lr=0.01, weight_decay=0.1, **kwargs)
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt.state_dict()


def test_adam_matches_torch_adam_exactly():
    ours, our_state = _train(Adam)
    ref, ref_state = _train(torch.optim.Adam)
    assert all(torch.equal(a, b) for a, b in zip(ours, ref))
    for key, st in ref_state["state"].items():
        assert all(torch.equal(st[k], our_state["state"][key][k]) for k in st)
    assert our_state["param_groups"] == ref_state["param_groups"]


def test_adam_matches_torch_adam_on_its_own_path():
    """The same comparison in a fresh process, where torch._dynamo is not loaded and Adam takes its own step
    (in this process another test may have loaded it, and Adam then defers to torch's step)."""
    code = ("import sys, torch\n"
            "import test_optim\n"
            "kernels = ({}, {'fused': True})\n"
            "ours = [test_optim._train(test_optim.Adam, **kw)[0] for kw in kernels]\n"
            "assert 'torch._dynamo' not in sys.modules\n"
            "refs = [test_optim._train(torch.optim.Adam, **kw)[0] for kw in kernels]\n"
            "for o, r in zip(ours, refs):\n"
            "    print(all(torch.equal(a, b) for a, b in zip(o, r)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)
    assert out.stdout.split() == ["True", "True"]  # the multi-tensor and the fused (build_optimizer's) kernels


def test_build_optimizer_is_fused_adam_and_matches_torch():
    """build_optimizer takes torch's fused Adam kernel (about 3x faster per step on the CPU at the demo's
    sizes): same update rule, close to the multi-tensor kernel, identical to torch's fused Adam."""
    from medssl.train.loop import build_optimizer

    def train(make):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
        opt = make(model.parameters())
        x, y = torch.randn(8, 4), torch.randn(8, 1)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        return opt, [p.detach().clone() for p in model.parameters()]

    opt, ours = train(lambda p: build_optimizer(p, 0.01, 0.1))
    assert isinstance(opt, Adam) and opt.defaults["fused"] is True
    _, fused = train(lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1, fused=True))
    _, multi = train(lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1))
    assert all(torch.equal(a, b) for a, b in zip(ours, fused))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, multi))


def test_adam_resumes_from_a_torch_adam_state_dict():
    params, state = _train(torch.optim.Adam, steps=2)
    p = torch.nn.Parameter(params[0].clone())
    opt = Adam([p], lr=0.01)
    opt.load_state_dict({"state": {0: state["state"][0]}, "param_groups": [{**state["param_groups"][0],
                                                                             "params": [0]}]})
    assert torch.equal(opt.state[p]["exp_avg"], state["state"][0]["exp_avg"])


def test_training_steps_do_not_import_torch_dynamo():
    """Before the fix, building torch.optim.Adam imported torch._dynamo: 1.5-4 s of CPU in every job."""
    code = ("import sys, torch\n"
            "from medssl.train.loop import build_optimizer\n"
            "from medssl.train.finetune import poly_lambda\n"
            "m = torch.nn.Linear(2, 1)\n"
            "opt = build_optimizer(m.parameters(), 0.1, 0.01)\n"
            "sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_lambda(3, 0.9))\n"
            "m(torch.ones(1, 2)).sum().backward(); opt.step(); sched.step(); opt.zero_grad()\n"
            "opt.load_state_dict(opt.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
