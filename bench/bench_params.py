"""Parameter counts of the registered architectures against the papers' numbers.

Usage: python bench/bench_params.py [--out-channels C]
"""

from __future__ import annotations

import argparse

import torch

from medssl.models import MODELS, PAPER_PARAMS, build, n_params


def rows(out_channels: int = 2) -> list[dict]:
    out = []
    for arch in MODELS:
        torch.manual_seed(0)
        net = build(arch, out_channels)
        parts = {p: sum(x.numel() for n, x in net.named_parameters() if n.startswith(p + "."))
                 for p in ("encoder", "neck", "decoder", "head")}
        ours, paper = n_params(net), PAPER_PARAMS[arch]
        out.append({"arch": arch, "ours": ours, "paper": paper, **parts,
                    "rel_diff": None if paper is None else (ours - paper) / paper})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-channels", type=int, default=2)
    args = ap.parse_args(argv)
    hdr = f"{'arch':<14}{'ours':>13}{'paper':>13}{'rel. diff':>11}{'encoder':>13}{'neck':>9}{'decoder':>13}{'head':>6}"
    print(f"parameter counts, out_channels={args.out_channels}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows(args.out_channels):
        paper = "-" if r["paper"] is None else f"{r['paper']:,}"
        rel = "-" if r["rel_diff"] is None else f"{r['rel_diff']:+.3%}"
        print(f"{r['arch']:<14}{r['ours']:>13,}{paper:>13}{rel:>11}{r['encoder']:>13,}{r['neck']:>9,}"
              f"{r['decoder']:>13,}{r['head']:>6,}")


if __name__ == "__main__":
    main()
