"""Reports: the papers' tables and figures from the evaluation metrics.

- :mod:`medssl.reports.targets` — target registry, ``required_metrics``/``required_files`` (for the Snakefile).
- :mod:`medssl.reports.builders` — ``build(target, config, inputs, *outputs)``: the builder of each target.
- :mod:`medssl.reports.tables` — table builders (CSV + Markdown).
- :mod:`medssl.reports.figures` — figure builders (PNG).
- :mod:`medssl.reports.features` — features for the t-SNE figure.
- :mod:`medssl.reports.paper_values` — the papers' numbers (``config/paper_values.yaml``, package data).
- :mod:`medssl.reports.stats` — mean ± sd and the paired per-patient test.

Command line: ``python -m medssl.reports --config C --target T [--inputs DIR|FILES...] [--outputs FILES...]
[--allow-missing]``; ``python -m medssl.reports --config C --list`` prints the configured targets.
"""

from medssl.reports.targets import (  # noqa: F401
    TARGETS, check_reports, configured_targets, outputs, required_files, required_metrics,
)
