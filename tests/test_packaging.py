"""A non-editable install works without the repository: the schema and the paper values are package data.

The wheel is built from a copy of the repository, installed (``--no-deps``) into a fresh virtual environment,
and the copy's ``src/`` is deleted before the installed medssl loads the schema and the paper values and
validates ``config/config.yaml``, from a folder outside the repository with ``PYTHONPATH`` unset. Then the
workflow itself runs from that copy (its ``src/`` still absent): the demo's data stage for one dataset,
with the installed ``medssl`` on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# run by the installed medssl; argv: venv prefix, config path
CHECK = textwrap.dedent('''
    import sys
    from pathlib import Path

    import medssl
    from medssl import config as cfg
    from medssl.reports.paper_values import PAPER_VALUES_PATH, paper_table
    from medssl.reports.targets import check_reports
    from snakemake.utils import validate

    venv, config_path = Path(sys.argv[1]).resolve(), sys.argv[2]
    for path in (Path(medssl.__file__), Path(cfg.SCHEMA_PATH), Path(PAPER_VALUES_PATH)):
        assert path.resolve().is_relative_to(venv), f"{path} is not inside {venv}"
        assert path.is_file() and not path.is_symlink(), path
    assert cfg.load_schema()["properties"]["experiment"]
    assert paper_table("hssl", "table2").rows
    config = cfg.load_config(config_path)
    check_reports(config)
    validate(config, schema=str(cfg.SCHEMA_PATH))  # the workflow's check, on the same file
    print("installed medssl OK:", medssl.__file__)
''')


def _copy_repo(dest: Path) -> Path:
    """What a build reads (pyproject.toml, README.md, LICENSE, src/) and config/, where src/'s links point."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    for name in ("src", "config", "workflow", "envs"):
        shutil.copytree(REPO / name, dest / name, symlinks=True, ignore=skip)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    return dest


def test_wheel_installs_without_the_repository(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    repo = _copy_repo(tmp_path / "repo")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), "."], cwd=repo, env=env, check=True)
    (wheel,) = (tmp_path / "dist").glob("medssl-*.whl")
    shutil.rmtree(repo / "src")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], env=env, check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", "--no-index", str(wheel)],
                   cwd=tmp_path, env=env, check=True)
    # --system-site-packages gives the base interpreter's packages; when this test runs in a venv, torch and
    # the other dependencies live in its site-packages, so list them (after medssl's own) in a .pth file.
    # Plain paths in a .pth are appended to sys.path, their own .pth files (the editable medssl) not read.
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         env=env, check=True, capture_output=True, text=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    Path(out, "outer_env.pth").write_text("\n".join(sorted(ours)) + "\n")

    run = tmp_path / "elsewhere"
    run.mkdir()
    result = subprocess.run([str(python), "-c", CHECK, str(venv), str(repo / "config" / "config.yaml")],
                            cwd=run, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installed medssl OK" in result.stdout

    # The workflow from the copy without src/: phantoms -> slices -> split of one dataset, for real.
    path = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    target = "results/demo/splits/msd_spleen.json"
    result = subprocess.run([str(python), "-m", "snakemake", "--cores", "1", target], cwd=repo, env=path,
                            capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (repo / target).is_file() and not (repo / "src").exists()
    log = (repo / "results" / "demo" / "logs" / "slice" / "msd_spleen.log").read_text()
    assert "msd_spleen: case" in log and "slice finished in" in log


@pytest.mark.parametrize("name", ["config.schema.yaml", "paper_values.yaml"])
def test_package_data_is_the_config_file(name):
    """One source of truth: the package's file is a relative link to the repository's config file, and the
    library reads that content (the same bytes in an installed copy)."""
    from medssl import config as cfg
    from medssl.reports.paper_values import PAPER_VALUES_PATH

    packaged = {"config.schema.yaml": Path(cfg.SCHEMA_PATH), "paper_values.yaml": Path(PAPER_VALUES_PATH)}[name]
    in_config = REPO / "config" / ("schemas" if name == "config.schema.yaml" else "") / name
    assert packaged.read_bytes() == in_config.read_bytes()
    link = REPO / "src" / "medssl" / "package_data" / name
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == in_config.resolve()
