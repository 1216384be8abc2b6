"""Building a report target: a table target's builder is :func:`medssl.reports.tables.build_table`, a
figure's is the :mod:`medssl.reports.figures` builder of its kind; :func:`build` runs the one a target needs."""

from __future__ import annotations

from functools import partial
from typing import Callable

from medssl.reports import figures, tables
from medssl.reports.targets import outputs, target_info

FIGURE_BUILDERS: dict[str, Callable] = {  # target kind -> builder
    "tsne": figures.build_hssl_fig3b_tsne,
    "bars": figures.build_hssl_fig4_domains,
    "qualitative": figures.build_hssl_fig5_qualitative,
    "epochs": figures.build_ssmtl_fig7_epochs,
}


def builder(target: str) -> Callable:
    """``builder(config, inputs, *outputs, **options)`` of ``target``."""
    kind = target_info(target).kind
    return partial(tables.build_table, target) if kind == "table" else partial(FIGURE_BUILDERS[kind], target=target)


def build(target: str, config: dict, inputs, *out, **kwargs):
    """Build ``target``: ``inputs`` = results folder or list of files (Figure 3b: the features .npz);
    ``out`` = (csv, md, html) for tables, (png,) for figures; defaults: :func:`~medssl.reports.targets.outputs`."""
    outs = list(out) or outputs(config, target)
    return builder(target)(config, inputs, *outs, **kwargs)
