"""Building a report target: the builder of each table and figure (:mod:`medssl.reports.tables`,
:mod:`medssl.reports.figures`), and :func:`build`, which runs the one a target names."""

from __future__ import annotations

from functools import partial
from typing import Callable

from medssl.reports import figures, tables
from medssl.reports.targets import outputs, target_info

BUILDERS: dict[str, Callable] = {
    "hssl_table2": partial(tables.build_table, "hssl_table2"),
    "hssl_table3": partial(tables.build_table, "hssl_table3"),
    "hssl_table4": partial(tables.build_table, "hssl_table4"),
    "hssl_fig3b_tsne": figures.build_hssl_fig3b_tsne,
    "hssl_fig4_domains": figures.build_hssl_fig4_domains,
    "hssl_fig5_qualitative": figures.build_hssl_fig5_qualitative,
    "ssmtl_table2": partial(tables.build_table, "ssmtl_table2"),
    "ssmtl_table3": partial(tables.build_table, "ssmtl_table3"),
    "ssmtl_table4": partial(tables.build_table, "ssmtl_table4"),
    "ssmtl_table5": partial(tables.build_table, "ssmtl_table5"),
    "ssmtl_table6": partial(tables.build_table, "ssmtl_table6"),
    "ssmtl_fig7_epochs": figures.build_ssmtl_fig7_epochs,
}


def build(target: str, config: dict, inputs, *out, **kwargs):
    """Build ``target``: ``inputs`` = results folder or list of files (Figure 3b: the features .npz);
    ``out`` = (csv, md, html) for tables, (png,) for figures; defaults: :func:`~medssl.reports.targets.outputs`."""
    target_info(target)
    outs = list(out) or outputs(config, target)
    return BUILDERS[target](config, inputs, *outs, **kwargs)
