"""medssl: self-supervised pretraining for label-efficient medical image segmentation.

Reproduces HSSL (hierarchical SSL on aggregated multi-domain data) and SSMTL/SSMTL+ (self-supervised
multi-task learning on sequential slices). The package is importable and testable without Snakemake;
the workflow in ``workflow/`` only wires its command-line interface (``medssl.cli``) together.
"""

__version__ = "0.1.0"
