#!/usr/bin/env bash
# Run by Snakemake inside the freshly created envs/medssl.yaml environment (its post-deploy convention:
# the env file's name with .post-deploy.sh). Snakemake runs a copy of this script from .snakemake/conda/,
# in the working directory of the `snakemake` command, so the workflow source is found from
# $MEDSSL_WORKFLOW_DIR (set by workflow/rules/common.smk to workflow.basedir), else the working directory.
# The editable install points at that source tree, so the environment follows code changes without being
# rebuilt; the pinned dependencies are already in place (--no-deps).
set -euo pipefail
src="${MEDSSL_WORKFLOW_DIR:-$PWD}"
if ! grep -qs '^name = "medssl"' "$src/pyproject.toml"; then
    echo "medssl post-deploy: no medssl source at $src (pyproject.toml); set MEDSSL_WORKFLOW_DIR to the" \
         "workflow's folder" >&2
    exit 1
fi
python -m pip install --no-deps -e "$src"
