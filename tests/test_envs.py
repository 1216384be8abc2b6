"""envs/medssl.yaml as Snakemake deploys it (--software-deployment-method conda), checked without conda."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
ENV = REPO / "envs" / "medssl.yaml"


def _pip_lines() -> list[str]:
    env = yaml.safe_load(ENV.read_text())
    pips = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1 and "pip" in env["dependencies"]
    return pips[0]


def test_env_pins_are_pyprojects():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert [str(Requirement(r)) for r in _pip_lines()] == [str(Requirement(r)) for r in project["dependencies"]]
    python = next(d for d in yaml.safe_load(ENV.read_text())["dependencies"] if str(d).startswith("python="))
    assert Requirement("medssl" + project["requires-python"]).specifier.contains(python.split("=", 1)[1] + ".0")


def test_env_has_no_path_that_breaks_once_copied():
    # Snakemake copies the file to .snakemake/conda/<hash>.yaml; conda resolves pip paths from there.
    for line in _pip_lines():
        assert not line.startswith(("-e", "-r", ".", "/", "file:")) and "://" not in line, line
        Requirement(line)  # a plain requirement, nothing pip would read as a path


def test_post_deploy_script_is_where_snakemake_looks():
    from snakemake.sourcecache import LocalSourceFile

    aux = LocalSourceFile(str(ENV)).replace_suffix([".yaml", ".yml"], ".post-deploy.sh")
    assert Path(aux.get_path_or_uri(secret_free=True)).is_file()


@pytest.fixture
def deployed(tmp_path):
    """The env's files copied as Snakemake does (.snakemake/conda/<hash>.*) and a `python` that records
    its arguments instead of installing."""
    conda = tmp_path / "work" / ".snakemake" / "conda"
    conda.mkdir(parents=True)
    shutil.copy(ENV, conda / "0123abcd.yaml")
    script = conda / "0123abcd.post-deploy.sh"
    shutil.copy(ENV.with_name("medssl.post-deploy.sh"), script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "python.args"}\n')
    (bin_dir / "python").chmod(0o755)
    return script, bin_dir, tmp_path


def _run(script: Path, bin_dir: Path, cwd: Path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "MEDSSL_WORKFLOW_DIR"}
    environ.update(PATH=f"{bin_dir}{os.pathsep}{environ['PATH']}", **env)
    interpreter = script.read_text().splitlines()[0][2:].split()  # Snakemake reads the shebang the same way
    return subprocess.run([*interpreter, str(script)], cwd=cwd, env=environ, capture_output=True, text=True)


def test_post_deploy_installs_the_workflow_source(deployed):
    script, bin_dir, tmp = deployed
    proc = _run(script, bin_dir, tmp / "work", MEDSSL_WORKFLOW_DIR=str(REPO))  # snakemake --directory work
    assert proc.returncode == 0, proc.stderr
    assert (tmp / "python.args").read_text().split() == ["-m", "pip", "install", "--no-deps", "-e", str(REPO)]
    proc = _run(script, bin_dir, REPO)  # plain `snakemake` in the workflow folder
    assert proc.returncode == 0, proc.stderr


def test_post_deploy_without_a_source_says_what_to_set(deployed):
    script, bin_dir, tmp = deployed
    (tmp / "python.args").unlink(missing_ok=True)
    proc = _run(script, bin_dir, tmp / "work")
    assert proc.returncode == 1 and "MEDSSL_WORKFLOW_DIR" in proc.stderr
    assert not (tmp / "python.args").exists()


def test_workflow_extra_pins_what_is_installed_and_dev_includes_it():
    from importlib.metadata import version

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    workflow = {Requirement(r).name: Requirement(r) for r in extras["workflow"]}
    assert set(workflow) == {"snakemake", "snakemake-executor-plugin-slurm"}
    for name, req in workflow.items():
        assert any(s.operator == "<" for s in req.specifier), f"{name}: no upper bound on the major version"
        assert req.specifier.contains(version(name)), f"{name} {version(name)} is outside {req.specifier}"
    assert "medssl[workflow]" in extras["dev"]
