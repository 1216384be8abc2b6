"""Building a report target: a table target's builder is :func:`medssl.reports.tables.build_table` (paper A's
Table 1: :func:`medssl.reports.datasets.build_hssl_table1`), a figure's is the :mod:`medssl.reports.figures`
builder of its kind; :func:`build` runs the one a target needs."""

from __future__ import annotations

from functools import partial
from typing import Callable

from medssl.reports import datasets, figures, tables
from medssl.reports.targets import outputs, target_info

TABLE_BUILDERS: dict[str, Callable] = {  # target kind -> builder(target, config, inputs, csv, md, html)
    "table": tables.build_table,
    "datasets": datasets.build_hssl_table1,
}
FIGURE_BUILDERS: dict[str, Callable] = {  # target kind -> builder
    "tsne": figures.build_hssl_fig3b_tsne,
    "bars": figures.build_hssl_fig4_domains,
    "qualitative": figures.build_hssl_fig5_qualitative,
    "epochs": figures.build_ssmtl_fig7_epochs,
}


def builder(target: str) -> Callable:
    """``builder(config, inputs, *outputs, **options)`` of ``target``."""
    kind = target_info(target).kind
    if kind in TABLE_BUILDERS:
        return partial(TABLE_BUILDERS[kind], target)
    return partial(FIGURE_BUILDERS[kind], target=target)


def build(target: str, config: dict, inputs, *out, **kwargs):
    """Build ``target``: ``inputs`` = results folder or list of files (Figure 3b: the features .npz);
    ``out`` = (csv, md, html) for tables, (png,) for figures; defaults: :func:`~medssl.reports.targets.outputs`."""
    outs = list(out) or outputs(config, target)
    return builder(target)(config, inputs, *outs, **kwargs)
